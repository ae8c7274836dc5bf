"""Settings: one TOML file, every key overridable by a GUARD_* environment variable.

The documented defaults live here and in docs/configuration.md; `guard config show`
prints the effective values (secrets masked).

Longer than 400 lines for one job: the settings model with its documented defaults,
loading it, and reading and showing the values it holds (host:port, the upstream and
database URLs, masking secrets). Each section's fields are few; splitting the model
would scatter the defaults that docs/configuration.md mirrors, and the value readers
sit at the bottom of the rooms, where every other room (the secret included) can use
them without the store or the network.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    pass


# Where the example policy comes with guard: the checkout, or a distribution package.
SHIPPED_POLICY_DIRS = (Path(__file__).resolve().parent.parent / "policies",
                       Path("/usr/share/guard/policies"))


def shipped_policy() -> Path | None:
    """The example policy that comes with guard (what `guard dev` runs), if installed.
    Here, not beside the wiring: `guard dev` looks for it before the metrics are set up
    for several processes, which importing the wiring would pre-empt."""
    for d in SHIPPED_POLICY_DIRS:
        if (d / "policy.yaml").exists():
            return d
    return None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SmtpSettings(_Section):
    # The main listener. "submission": STARTTLS before AUTH, AUTH before MAIL (port 587).
    # "trusted": no AUTH, only from trusted_networks (behind the office MTA).
    listen: str = "127.0.0.1:2525"
    mode: Literal["submission", "trusted"] = "submission"
    # Optional extra listeners ("" = off): implicit TLS with AUTH (465), and a trusted one.
    smtps_listen: str = ""
    trusted_listen: str = ""
    trusted_networks: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    hostname: str = "guard.localdomain"
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 1000
    max_connections: int = 1000
    timeout: float = 300.0
    auth_failures_per_connection: int = 3
    # Failed AUTH per client address (IPv6: per /64), over all connections and all SMTP
    # front processes: this many failures within auth_failure_window seconds block the
    # address for auth_block_seconds (454 4.7.0, even for the right password). 0 = off.
    auth_failures_per_address: int = Field(default=10, ge=0)
    auth_failure_window: float = Field(default=600.0, gt=0)
    auth_block_seconds: float = Field(default=600.0, gt=0)
    # Whose addresses a message may carry. enforce: MAIL FROM and every From:/Sender:
    # mailbox must be an address or alias of the sender (550 5.7.1 otherwise);
    # envelope: MAIL FROM only; off: no check. sender_identity is for the AUTH
    # listeners (submission, smtps), trusted_sender_identity for the trusted ones, where
    # trusted_identity_header names the user: a header the office MTA sets (e.g.
    # X-Authenticated-User) or "Received" for Postfix's "(Authenticated sender: NAME)".
    sender_identity: Literal["enforce", "envelope", "off"] = "enforce"
    trusted_sender_identity: Literal["enforce", "envelope", "off"] = "off"
    trusted_identity_header: str = ""
    # Bare CR or LF in DATA is how SMTP smuggling starts; refuse it (Sendmail, chasquid).
    bare_newline: Literal["reject"] = "reject"
    max_hops: int = 50
    # A message that already carries this many of this guard's own Received: lines is
    # refused (554 5.4.6 mail loop). 2 lets a message pass twice (an auto-forward back
    # through the guard); a relay loop stops at the third pass.
    max_passes: int = Field(default=2, ge=1)
    users_file: str = "users.yaml"
    # SMTP sessions (protocol, TLS, AUTH, DATA) run in this many child processes, which
    # hand each message to the main process for inspection and the commit: a second core
    # for the per-command Python work. 0 = in the main process. (`guard serve`/`dev`.)
    front_processes: int = Field(default=1, ge=0, le=64)

    @field_validator("trusted_networks")
    @classmethod
    def _check_networks(cls, v: list[str]) -> list[str]:
        for net in v:
            ipaddress.ip_network(net, strict=False)
        return v


class TlsSettings(_Section):
    cert_file: str = ""
    key_file: str = ""
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"


class UpstreamSettings(_Section):
    # smtp://host:port (plain; only for a loopback or explicitly trusted upstream),
    # smtp+starttls://host:587 (STARTTLS required, certificates checked), smtps://host:465.
    url: str = "smtp+starttls://127.0.0.1:587"
    username: str = ""
    password: str = ""
    ca_file: str = ""  # extra CA bundle for a private upstream
    connect_timeout: float = 30.0
    command_timeout: float = 60.0
    # RFC 5321 4.5.3.2.6: wait 10 minutes for the reply to the final dot.
    data_timeout: float = 600.0
    local_hostname: str = ""  # EHLO name; defaults to smtp.hostname

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parse_upstream_url(v)
        return v


class DeliverySettings(_Section):
    concurrency: int = 20
    batch: int = 100
    poll_interval: float = 1.0
    # A claim's lease: renewed every third of it while the message is being sent (the
    # 10-minute final-dot wait included); another instance takes over a message whose
    # lease ran out, so a dead instance's mail goes out again after about this long.
    lease_seconds: float = Field(default=30.0, ge=1.0)
    # Postfix defaults: minimal_backoff_time 300s, maximal_backoff_time 4000s,
    # maximal_queue_lifetime 5d.
    min_backoff: float = 300.0
    max_backoff: float = 4000.0
    max_lifetime: float = 5 * 86400.0
    # Turn would-be bounces into deferrals (Postfix soft_bounce) while testing a setup.
    soft_bounce: bool = False
    # message bytes of finished mail are kept this long (for `guard policy replay`)
    retention_days: float = 7.0


class RetentionSettings(_Section):
    # Audit rows and the rows of finished messages (what reports read) are kept this
    # long, then purged; the bytes go sooner (delivery.retention_days).
    audit_days: float = Field(default=365.0, gt=0)


class DatabaseSettings(_Section):
    url: str = "sqlite:///guard.db"
    auto_upgrade: bool = True
    batch_max: int = 64  # most operations committed together by the writer
    # Deadlines of `guard serve` (seconds), so that a database that does not answer
    # gives 451 4.3.0 and a 503 from /healthz instead of hanging every session.
    # Connecting to PostgreSQL and taking a pooled connection:
    connect_timeout: float = Field(default=5.0, gt=0)
    # Each statement and COMMIT; on SQLite the wait for another process's write lock:
    statement_timeout: float = Field(default=15.0, gt=0)
    # A received message that is not committed by then is answered 451 4.3.0 (if its
    # commit still finishes later, that copy is withdrawn: the client sends it again):
    commit_timeout: float = Field(default=30.0, gt=0)
    # The password for the user in `url`, kept apart from it (GUARD_DATABASE_PASSWORD_FILE:
    # a secret mounted as a file); "" = in the URL or none.
    password: str = ""

    @model_validator(mode="after")
    def _password_into_url(self) -> DatabaseSettings:
        if not self.password:
            return self
        m = _DATABASE_URL.match(self.url)
        if m is None or m.group("username") is None or self.url.startswith("sqlite"):
            raise ValueError("database.password needs a user in a PostgreSQL database.url "
                             "(postgresql://guard@db.example/guard)")
        if m.group("password") is not None:
            raise ValueError("database.url has a password and database.password is set: "
                             "keep one")
        at = m.end("username")
        self.url = f"{self.url[:at]}:{quote(self.password, safe='')}{self.url[at:]}"
        return self


def check_base_url(v: str) -> str:
    """An address people open the pages at: http(s)://host[:port][/path], never the
    0.0.0.0 a server listens on. The trailing "/" is dropped (links append "/review/…")."""
    if not v:
        return v
    example = "e.g. https://guard.example.co.jp"
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"not a URL ({example})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"an http:// or https:// URL with a host ({example})")
    if parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"no query, fragment or user in a base URL ({example})")
    try:
        unspecified = ipaddress.ip_address(parts.hostname).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified:
        raise ValueError(f"{parts.hostname} is where a server listens, not an address "
                         f"people can open ({example})")
    return v.rstrip("/")


class WebSettings(_Section):
    listen: str = "127.0.0.1:8025"
    # How people reach the pages (review links in notices). `guard serve` refuses to
    # start without it; `guard dev` uses http://<listen>.
    base_url: str = ""

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, v: str) -> str:
        return check_base_url(v)


class MetricsSettings(_Section):
    """Prometheus's /metrics (docs/metrics.md). The web listener serves people, so there
    /metrics is served only with a token or while web.listen is a loopback address."""

    # "" = /metrics on the web listener; host:port = there only (for Prometheus)
    listen: str = ""
    # "" = none; else requests need "Authorization: Bearer <token>" (401 without); the
    # /reports/ pages on the web listener are guarded by the same token
    token: str = ""


class PolicySettings(_Section):
    # file or folder; `guard serve` refuses to start without one (`guard dev` uses the
    # shipped example)
    path: str = ""
    reload_interval: float = 2.0


class ReviewSettings(_Section):
    """Holds that people resolve: notices, review pages, link tokens."""

    # How people reach the review pages; "" = web.base_url (`guard dev`: http://<web.listen>).
    base_url: str = ""
    # Upper bound on a link's life; a link never outlives the hold it belongs to.
    token_lifetime_hours: float = 72.0
    # Link tokens are signed with a key derived from the secret and this id. To rotate:
    # set a new key_id and move the old one to previous_key_ids; remove it after
    # token_lifetime_hours (links signed with it are refused from then on).
    key_id: str = "k1"
    previous_key_ids: list[str] = Field(default_factory=list)
    # Notice and page language when neither the user nor the policy says: ja | en | both.
    default_language: Literal["ja", "en", "both"] = "both"
    # Time zone of the times in notices and pages, shown with its label ("JST"): an IANA
    # name ("Asia/Tokyo"); "" = the machine's own zone (TZ, else /etc/localtime).
    timezone: str = ""
    # How often the timers look for due holds (they also wake at the next due time).
    tick_seconds: float = 15.0
    # Envelope sender of notices ("" = the null sender <>, so a notice never bounces).
    notice_from: str = ""
    # From: header of notices ("" = noreply@<the policy's first internal domain>, or
    # noreply@<smtp.hostname> when the policy names none).
    notice_from_header: str = ""
    # Approvers of last resort: asked when a rule names no approver other than the
    # sender, and when escalation has no backup approver.
    admin_addresses: list[str] = Field(default_factory=list)
    # Escalation to backup approvers when the verdict does not say after how long.
    default_escalate_after_minutes: float = 60.0

    @field_validator("previous_key_ids", "admin_addresses", mode="before")
    @classmethod
    def _split_env_list(cls, v: Any) -> Any:
        # GUARD_REVIEW__ADMIN_ADDRESSES="a@x,b@x" arrives as one string
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, v: str) -> str:
        return check_base_url(v)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, v: str) -> str:
        if v:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (an IANA name such as "
                                 "Asia/Tokyo, or \"\" for the machine's)") from None
        return v

    @field_validator("notice_from_header")
    @classmethod
    def _check_notice_from(cls, v: str) -> str:
        if v and ("@" not in v or not v.isascii() or any(c in v for c in " <>,;\"\r\n")):
            raise ValueError(f"notice_from_header {v!r}: one plain address, e.g. "
                             "noreply@example.co.jp")
        return v

    @field_validator("key_id", "previous_key_ids")
    @classmethod
    def _check_key_ids(cls, v: Any) -> Any:
        for kid in [v] if isinstance(v, str) else v:
            if not (1 <= len(kid) <= 16 and all(c.isascii() and (c.isalnum() or c in "_-")
                                                 for c in kid)):
                raise ValueError(f"key id {kid!r}: 1-16 characters of A-Z a-z 0-9 _ -")
        return v


class AlertSettings(_Section):
    """When alert mail goes out. Who gets it is the policy's `alerts:` section."""

    # How often the dispatcher reads the audit trail (it also wakes when a message is
    # held or refused).
    tick_seconds: float = Field(default=5.0, gt=0)
    # An audit id missing behind the ones read (a write of another instance that had
    # its id but had not committed yet) is looked for this long, then taken to be one
    # rolled back: longer than any write of the guard lasts.
    gap_wait_seconds: float = Field(default=600.0, gt=0)
    # Severe events are gathered this long after the first one, so a burst is one mail.
    gather_seconds: float = Field(default=15.0, ge=0)
    # At most one alert mail per this many seconds to the same recipients; what happens
    # meanwhile goes into the next one, counted.
    min_interval_seconds: float = Field(default=300.0, ge=0)
    # The daily digest of the less severe events: at this hour (0-23) of review.timezone.
    digest_hour: int = Field(default=8, ge=0, le=23)
    # An alert's link opens that message's incident report without a login for this
    # many days (guard/viewlink.py): a forwarded alert forwards the view, so not long.
    link_days: float = Field(default=14.0, gt=0, le=90)


class InspectSettings(_Section):
    # false: relay only, no inspection and no policy (measuring the relay's own cost;
    # never what a deployment wants)
    enabled: bool = True
    # extraction worker processes (parse, attachments, personal data); 0 = one per core
    workers: int = 0
    per_attachment_timeout: float = 20.0
    per_message_timeout: float = 60.0
    memory_limit_mb: int = 1536


class LogSettings(_Section):
    level: str = "INFO"
    format: Literal["json", "text"] = "text"


class Settings(_Section):
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    inspect: InspectSettings = Field(default_factory=InspectSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    # Secret for HMACs (list digests, link tokens). "" = generated once into secret_file.
    secret: str = ""
    # "" = guard.secret beside the SQLite database file (PostgreSQL: set secret or
    # secret_file). A relative path is taken from the config file's directory.
    secret_file: str = ""
    instance_id: str = ""  # defaults to hostname:pid


# Environment names that containers and test scripts rely on, plus one per
# commonly changed key. Anything else: GUARD_<SECTION>__<KEY>, e.g. GUARD_DELIVERY__MIN_BACKOFF.
ENV_NAMES: dict[str, tuple[str, str]] = {
    "GUARD_SMTP_LISTEN": ("smtp", "listen"),
    "GUARD_SMTP_MODE": ("smtp", "mode"),
    "GUARD_SMTPS_LISTEN": ("smtp", "smtps_listen"),
    "GUARD_TRUSTED_LISTEN": ("smtp", "trusted_listen"),
    "GUARD_TRUSTED_NETWORKS": ("smtp", "trusted_networks"),
    "GUARD_HOSTNAME": ("smtp", "hostname"),
    "GUARD_USERS_FILE": ("smtp", "users_file"),
    "GUARD_TLS_CERT": ("tls", "cert_file"),
    "GUARD_TLS_KEY": ("tls", "key_file"),
    "GUARD_UPSTREAM": ("upstream", "url"),
    "GUARD_UPSTREAM_USERNAME": ("upstream", "username"),
    "GUARD_UPSTREAM_PASSWORD": ("upstream", "password"),
    "GUARD_UPSTREAM_CA_FILE": ("upstream", "ca_file"),
    "GUARD_DATABASE_URL": ("database", "url"),
    "GUARD_DATABASE_PASSWORD": ("database", "password"),
    "GUARD_POLICY": ("policy", "path"),
    "GUARD_WEB_LISTEN": ("web", "listen"),
    "GUARD_BASE_URL": ("web", "base_url"),
    "GUARD_METRICS_LISTEN": ("metrics", "listen"),
    "GUARD_METRICS_TOKEN": ("metrics", "token"),
    "GUARD_LOG_LEVEL": ("log", "level"),
    "GUARD_LOG_FORMAT": ("log", "format"),
    "GUARD_SECRET": ("", "secret"),
    "GUARD_SECRET_FILE": ("", "secret_file"),
    "GUARD_INSTANCE_ID": ("", "instance_id"),
}
_LIST_KEYS = {("smtp", "trusted_networks")}

# The settings that are secrets or may hold one (a password inside a URL). Each can be
# given as a file instead of a value: GUARD_<NAME>_FILE (or GUARD_<SECTION>__<KEY>_FILE)
# names a file whose contents, trailing newline dropped, are the value — Docker and
# Kubernetes secrets, systemd credentials. `guard config show` masks them all. The
# HMAC secret's file form is the older `secret_file` (GUARD_SECRET_FILE): it may also be
# created by the guard, and its hex is read as bytes (guard/secret.py).
SECRET_SETTINGS: frozenset[tuple[str, str]] = frozenset({
    ("", "secret"),
    ("database", "url"),
    ("database", "password"),
    ("upstream", "url"),
    ("upstream", "password"),
    ("metrics", "token"),  # /metrics on the web listener
})
FILE_SUFFIX = "_FILE"


def _set(data: dict[str, Any], section: str, key: str, value: Any) -> None:
    target = data.setdefault(section, {}) if section else data
    target[key] = value


def _env_target(name: str) -> tuple[str, str] | None:
    """The (section, key) a GUARD_* variable sets, or None."""
    if name in ENV_NAMES:
        return ENV_NAMES[name]
    if "__" in name:
        section, _, key = name[len("GUARD_"):].lower().partition("__")
        return section, key
    return None


def _secret_file_target(name: str) -> tuple[str, str] | None:
    """The secret setting that GUARD_<NAME>_FILE gives as a file, or None."""
    if not name.endswith(FILE_SUFFIX) or name in ENV_NAMES:
        return None
    target = _env_target(name[:-len(FILE_SUFFIX)])
    return target if target in SECRET_SETTINGS else None


def _read_secret_file(name: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: {path} is not UTF-8 text") from e
    value = text.rstrip("\r\n")
    if not value:
        raise ConfigError(f"{name}: {path} is empty")
    return value


def load_settings(path: str | os.PathLike[str] | None = None,
                  env: dict[str, str] | None = None) -> Settings:
    """Read the config file (if any), then apply GUARD_* environment overrides, secrets
    from GUARD_*_FILE files among them."""
    env = dict(os.environ if env is None else env)
    data: dict[str, Any] = {}
    path = path or env.get("GUARD_CONFIG") or None
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"{p}: config file not found") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: {e}") from e
    set_by: dict[tuple[str, str], str] = {}  # a secret's value and its file: refused
    for name, value in sorted(env.items()):
        if not name.startswith("GUARD_") or name == "GUARD_CONFIG":
            continue
        target = _secret_file_target(name)
        if target is not None:
            value = _read_secret_file(name, value)
        else:
            target = _env_target(name)
            if target is None:
                continue
        if target in SECRET_SETTINGS:
            if target in set_by:
                raise ConfigError(f"{set_by[target]} and {name} are both set: keep one")
            set_by[target] = name
        section, key = target
        parsed: Any = value
        if target in _LIST_KEYS:
            parsed = [v.strip() for v in value.split(",") if v.strip()]
        _set(data, section, key, parsed)
    secret_file = data.get("secret_file")
    if path and isinstance(secret_file, str) and secret_file and not os.path.isabs(secret_file):
        # one secret whatever directory a command runs in (guard/secret.py)
        data["secret_file"] = str(Path(path).absolute().parent / secret_file)
    try:
        return Settings.model_validate(data)
    except ValidationError as e:  # one line that names each wrong key
        raise ConfigError("invalid configuration: " + "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
            + (f" (got {_shown(err['loc'], err['input'])!r})" if err["type"] != "missing"
               and not isinstance(err["input"], dict) else "")
            for err in e.errors())) from e


def require_base_url(settings: Settings) -> None:
    """`guard serve` builds review links on the address people open, which only the
    operator knows: never a guess from the listen address (0.0.0.0 in a container)."""
    if not (settings.web.base_url or settings.review.base_url):
        raise ConfigError("web.base_url (GUARD_BASE_URL) is not set: the address people "
                          "open the review pages at, e.g. https://guard.example.co.jp")


# --- secrets: never printed (`guard config show`, error messages) ------------------------

MASK = "********"


def is_secret_key(name: str) -> bool:
    """Keys whose values are secrets: the HMAC secret, passwords, tokens."""
    n = name.lower()
    return n in ("secret", "password", "token") or n.endswith(("_secret", "_password", "_token"))


def mask_url(url: str) -> str:
    """A URL with the password in its user info replaced by the mask."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:{MASK}@{hostinfo}").geturl()


def masked(value: Any, key: str = "") -> Any:
    """A settings dump (nested dicts) with every secret masked."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if isinstance(value, str):
        if is_secret_key(key):
            return MASK if value else ""
        if "://" in value:
            return mask_url(value)
    return value


def _shown(loc: tuple[Any, ...], value: Any) -> Any:
    return masked(value, str(loc[-1]) if loc else "")


def parse_hostport(value: str, default_port: int = 0) -> tuple[str, int]:
    """'127.0.0.1:2525' / '[::1]:25' / ':587' → (host, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = value.rpartition(":")
        if not _:
            host, port = value, ""
    try:
        return host or "0.0.0.0", int(port) if port else default_port
    except ValueError as e:
        raise ConfigError(f"bad host:port {value!r}") from e


UpstreamSecurity = Literal["plain", "starttls", "tls"]


def parse_upstream_url(url: str) -> tuple[UpstreamSecurity, str, int, str, str]:
    """→ (security, host, port, username, password). Unknown schemes are refused."""
    parts = urlsplit(url)
    schemes: dict[str, tuple[UpstreamSecurity, int]] = {
        "smtp": ("plain", 25),
        "smtp+starttls": ("starttls", 587),
        "smtps": ("tls", 465),
    }
    if parts.scheme not in schemes:
        raise ValueError(f"upstream {mask_url(url)!r}: scheme must be smtp://, "
                         "smtp+starttls:// or smtps://")
    security, default_port = schemes[parts.scheme]
    if not parts.hostname:
        raise ValueError(f"upstream {mask_url(url)!r}: no host")
    return (security, parts.hostname, parts.port or default_port,
            unquote(parts.username or ""), unquote(parts.password or ""))


# --- database URLs: read here without the SQL library, so that the secret's home and
# the messages that name a database need nothing from the store -------------------------

# The URL form of the store's SQL library (`dialect+driver://user:password@host:port/
# database?query`), parsed the same way (tests/test_config.py compares the two).
_DATABASE_URL = re.compile(r"""
    (?P<name>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """, re.X)


@dataclass(frozen=True)
class DatabaseURL:
    drivername: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: tuple[tuple[str, str], ...]

    def shown(self) -> str:
        """The URL with the password hidden: what logs and error messages say."""
        s = self.drivername + "://"
        if self.username is not None:
            s += quote(self.username, safe=" +")
            if self.password is not None:
                s += ":***"
            s += "@"
        if self.host is not None:
            s += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            s += f":{self.port}"
        if self.database is not None:
            s += "/" + quote(self.database, safe=" +/")
        if self.query:
            s += "?" + "&".join(f"{quote_plus(k)}={quote_plus(v)}"
                                for k, v in sorted(self.query, key=lambda kv: kv[0]))
        return s


def parse_database_url(url: str) -> DatabaseURL:
    m = _DATABASE_URL.match(url)
    if m is None:
        raise ConfigError(f"database url {mask_url(url)!r}: not a URL such as "
                          "sqlite:///guard.db or postgresql://user@host/guard")
    g = m.groupdict()
    try:
        port = int(g["port"]) if g["port"] else None
    except ValueError:
        raise ConfigError(f"database url {mask_url(url)!r}: bad port {g['port']!r}") from None

    def part(name: str) -> str | None:
        return None if g[name] is None else unquote(g[name])

    return DatabaseURL(g["name"], part("username"), part("password"),
                       g["ipv4host"] or g["ipv6host"], port, part("database"),
                       tuple(parse_qsl(g["query"])) if g["query"] is not None else ())


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for PostgreSQL or an in-memory database)."""
    u = parse_database_url(url)
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def describe_database(url: str) -> str:
    """A database URL as logs and messages show it (password hidden)."""
    try:
        return parse_database_url(url).shown()
    except ConfigError:
        return mask_url(url)
