# guard: slim, non-root. Build: docker build -t guard .  Run: see deploy/ and README.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    GUARD_CONFIG=/etc/guard/guard.toml \
    GUARD_SMTP_LISTEN=0.0.0.0:587 \
    GUARD_WEB_LISTEN=0.0.0.0:8025 \
    GUARD_DATABASE_URL=sqlite:////var/lib/guard/guard.db \
    GUARD_LOG_FORMAT=json

WORKDIR /src
COPY pyproject.toml README.md ./
COPY guard ./guard
COPY policies /usr/share/guard/policies
RUN pip install --no-compile '.[fast]' && rm -rf /src \
 && useradd --system --home-dir /var/lib/guard --create-home --uid 10025 guard \
 && mkdir -p /etc/guard && touch /etc/guard/guard.toml && chown -R guard /var/lib/guard

USER guard
WORKDIR /var/lib/guard
# 587 submission (STARTTLS + AUTH), 465 implicit TLS (if enabled), 2525 trusted
# listener (if enabled), 8025 web: review pages, /metrics, /healthz
EXPOSE 587 465 2525 8025
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os,sys,urllib.request; h=os.environ['GUARD_WEB_LISTEN'].replace('0.0.0.0','127.0.0.1'); sys.exit(0 if urllib.request.urlopen(f'http://{h}/healthz', timeout=4).status == 200 else 1)"
# `guard serve` needs a policy: mount yours and set GUARD_POLICY (or policy.path in
# guard.toml); the shipped example is in /usr/share/guard/policies to start from.
ENTRYPOINT ["guard"]
CMD ["serve"]
