# guard: `guard serve` as a non-root user, its data on a volume. docs/deployment.md.
#
#   docker build -t guard .
#   podman build --format docker -t guard .   # docker format: podman keeps HEALTHCHECK
#                                               # only there (OCI images have none)
#   docker run -d --name guard -v guard-data:/var/lib/guard \
#     -e GUARD_BASE_URL=https://guard.example.co.jp -e GUARD_UPSTREAM=smtp+starttls://mail:587 \
#     -e GUARD_POLICY=/etc/guard/policy -v ./policy:/etc/guard/policy:ro \
#     -e GUARD_TLS_CERT=… -e GUARD_TLS_KEY=… -p 587:587 -p 8025:8025 guard
#
# BASE: any Debian 12 (bookworm) image with Python 3.11 and its venv module; the default
# is the official one. The build and the run stages use the same BASE, so the venv
# built in the first works in the second, and no compiler or build tool is left behind.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/guard
WORKDIR /src
# The dependencies first, from pyproject.toml alone (a stand-in package): this layer is
# cached until they change, so a code change rebuilds in seconds. Binary wheels only: a
# dependency that would need a compiler fails here rather than bringing one in.
COPY pyproject.toml ./
RUN mkdir guard && touch guard/__init__.py README.md \
 && /opt/guard/bin/pip install -q --only-binary=:all: '.[fast]' \
 && rm -rf guard README.md
COPY README.md ./
COPY guard ./guard
RUN /opt/guard/bin/pip install -q --no-deps --force-reinstall . \
 && /opt/guard/bin/pip uninstall -q -y pip setuptools

FROM ${BASE}
# A fixed uid/gid (10025), written directly so that any Debian base works (a minimal one
# has no useradd); the same numbers own the volume on the host.
RUN echo 'guard:x:10025:10025:guard:/var/lib/guard:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'guard:x:10025:' >> /etc/group \
 && mkdir -p /var/lib/guard /etc/guard \
 && chown 10025:10025 /var/lib/guard && chmod 0750 /var/lib/guard \
 && printf '%s\n' '# the image'"'"'s defaults; mount your own guard.toml over this file' \
      '[database]' 'url = "sqlite:////var/lib/guard/guard.db"' > /etc/guard/guard.toml
COPY --from=build /opt/guard /opt/guard
COPY policies /usr/share/guard/policies

# The volume holds everything the guard keeps: the SQLite database, the secret beside
# it (generated on first start: back it up with the database, docs/deployment.md) and
# the users file. With PostgreSQL (GUARD_DATABASE_URL[_FILE]) and GUARD_SECRET_FILE the
# container keeps no state of its own.
# Not set here, on purpose: GUARD_BASE_URL (required: `guard serve` refuses to start
# without it), GUARD_POLICY, GUARD_UPSTREAM, the TLS files. Secrets come from files:
# GUARD_DATABASE_URL_FILE, GUARD_DATABASE_PASSWORD_FILE, GUARD_UPSTREAM_PASSWORD_FILE,
# GUARD_SECRET_FILE (compose `secrets:`, Kubernetes Secret volumes). The database URL's
# default is in /etc/guard/guard.toml, not in GUARD_DATABASE_URL: a variable here would
# clash with GUARD_DATABASE_URL_FILE (a value and its file both set are refused).
ENV PATH=/opt/guard/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    GUARD_CONFIG=/etc/guard/guard.toml \
    GUARD_SMTP_LISTEN=0.0.0.0:587 \
    GUARD_WEB_LISTEN=0.0.0.0:8025 \
    GUARD_USERS_FILE=/var/lib/guard/users.yaml \
    GUARD_LOG_FORMAT=json
VOLUME ["/var/lib/guard"]
USER 10025:10025
WORKDIR /var/lib/guard
# 587 submission (STARTTLS + AUTH), 465 implicit TLS (if enabled), 2525 trusted
# listener (if enabled), 8025 web: review pages, /metrics, /healthz, /readyz, /livez
EXPOSE 587 465 2525 8025
# `guard health` asks /healthz on the web listener (wherever GUARD_WEB_LISTEN or
# guard.toml puts it): exit 0 healthy, 1 with the problems named. guard handles SIGTERM
# itself as PID 1 (it stops listening, finishes what it started and exits), and reaps
# its own worker processes: no init is needed (`--init` does no harm).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["guard", "health"]
ENTRYPOINT ["guard"]
CMD ["serve"]
