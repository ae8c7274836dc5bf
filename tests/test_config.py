"""Settings: file + GUARD_* environment, validated; the shipped sample stays true."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from guard.config import (
    ConfigError,
    Settings,
    describe_database,
    load_settings,
    parse_database_url,
    parse_hostport,
    parse_upstream_url,
    sqlite_path,
)

ROOT = Path(__file__).resolve().parent.parent


def test_environment_overrides_the_file(tmp_path: Path):
    cfg = tmp_path / "guard.toml"
    cfg.write_text('[upstream]\nurl = "smtps://mail.example.net:465"\n'
                   '[delivery]\nmin_backoff = 60.0\n')
    s = load_settings(cfg, env={
        "GUARD_UPSTREAM": "smtp://127.0.0.1:2526",
        "GUARD_TRUSTED_NETWORKS": "10.0.0.0/8, 192.0.2.0/24",
        "GUARD_DATABASE_URL": "postgresql://guard@db/guard",
        "GUARD_DELIVERY__MAX_BACKOFF": "1234",
        "GUARD_SMTP_MODE": "trusted",
    })
    assert s.upstream.url == "smtp://127.0.0.1:2526"
    assert s.smtp.trusted_networks == ["10.0.0.0/8", "192.0.2.0/24"]
    assert s.database.url == "postgresql://guard@db/guard"
    assert s.delivery.min_backoff == 60.0 and s.delivery.max_backoff == 1234.0
    assert s.smtp.mode == "trusted"


def test_defaults_match_the_issue():
    s = load_settings(env={})
    assert s.database.url == "sqlite:///guard.db"
    assert (s.delivery.min_backoff, s.delivery.max_backoff) == (300.0, 4000.0)
    assert s.delivery.max_lifetime == 5 * 86400
    assert s.upstream.data_timeout == 600.0
    assert s.upstream.url.startswith("smtp+starttls://")


@pytest.mark.parametrize("env,needle", [
    ({"GUARD_SMTP_MODE": "open"}, "mode"),
    ({"GUARD_UPSTREAM": "http://mail.example.net"}, "scheme"),
    ({"GUARD_TRUSTED_NETWORKS": "10.0.0.0/33"}, "trusted_networks"),
    ({"GUARD_DELIVERY__MIN_BACKOFF": "soon"}, "min_backoff"),
    ({"GUARD_SMTP__NO_SUCH_KEY": "1"}, "no_such_key"),
])
def test_bad_settings_are_refused_with_the_key_named(env: dict[str, str], needle: str):
    with pytest.raises(ConfigError) as e:
        load_settings(env=env)
    assert needle in str(e.value)


def test_bad_toml_names_the_file(tmp_path: Path):
    cfg = tmp_path / "guard.toml"
    cfg.write_text("[smtp\nlisten = 1\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, env={})
    assert str(cfg) in str(e.value)


def test_shipped_sample_config_is_valid_and_documents_the_defaults():
    path = ROOT / "deploy" / "guard.toml"
    s = load_settings(path, env={})
    defaults = Settings()
    doc = tomllib.loads(path.read_text())
    # every value in the sample equals the default, except the few that a production
    # deployment must set differently from `guard dev`
    different = {("smtp", "listen"), ("tls", "cert_file"), ("tls", "key_file"),
                 ("upstream", "url"), ("web", "base_url"), ("policy", "path")}
    for section, values in doc.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if (section, key) in different:
                continue
            assert getattr(getattr(defaults, section), key) == value, (section, key)
    assert s.smtp.listen == "0.0.0.0:587"
    for key, value in doc.items():  # the top-level keys
        if not isinstance(value, dict):
            assert getattr(defaults, key) == value, key


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out |= _keys(sub, f"{name}.")
        else:
            out.add(prefix + name)
    return out


def _toml_keys(doc: dict[str, object], prefix: str = "") -> set[str]:
    out = set()
    for name, value in doc.items():
        if isinstance(value, dict):
            out |= _toml_keys(value, f"{name}.")
        else:
            out.add(prefix + name)
    return out


def test_shipped_sample_config_lists_every_setting():
    """deploy/guard.toml names every setting there is (and nothing else)."""
    doc = tomllib.loads((ROOT / "deploy" / "guard.toml").read_text())
    settings, sample = _keys(Settings), _toml_keys(doc)
    assert settings - sample == set(), "settings missing from deploy/guard.toml"
    assert sample - settings == set(), "keys in deploy/guard.toml that are no settings"


def test_shipped_sample_config_does_not_relay_to_itself():
    s = load_settings(ROOT / "deploy" / "guard.toml", env={})
    listen_port = parse_hostport(s.smtp.listen)[1]
    _, host, port, _, _ = parse_upstream_url(s.upstream.url)
    assert not (host in ("127.0.0.1", "localhost", "::1", "0.0.0.0") and port == listen_port)
    assert s.policy.path  # `guard serve` needs one


def test_errors_are_one_line_and_never_show_a_password():
    with pytest.raises(ConfigError) as e:
        load_settings(env={"GUARD_UPSTREAM": "http://relay:hunter2secret@mx.example.net",
                           "GUARD_SMTP_MODE": "open"})
    text = str(e.value)
    assert "\n" not in text
    assert "upstream.url" in text and "smtp.mode" in text
    assert "hunter2secret" not in text


def test_upstream_and_listen_parsing():
    assert parse_upstream_url("smtp+starttls://u:p%40ss@mx.example.net") == (
        "starttls", "mx.example.net", 587, "u", "p@ss")
    assert parse_upstream_url("smtps://mx.example.net")[2] == 465
    assert parse_upstream_url("smtp://127.0.0.1:2526")[:3] == ("plain", "127.0.0.1", 2526)
    assert parse_hostport("[::1]:2525") == ("::1", 2525)
    assert parse_hostport(":587") == ("0.0.0.0", 587)
    with pytest.raises(ConfigError):
        parse_hostport("host:port")


DATABASE_URLS = [
    "sqlite:///guard.db", "sqlite:////var/lib/guard/guard.db", "sqlite://",
    "sqlite:///:memory:", "sqlite+aiosqlite:///rel/a%20b.db?timeout=3",
    "postgresql://postgres@127.0.0.1:5432/test", "postgres://guard@db/guard",
    "postgresql+asyncpg://u:p%40ss@h/db?sslmode=require&a=b&a=c",
    "postgresql://u:secret@[::1]:5432/d", "postgresql://u:@h/d", "postgresql:///d",
]


@pytest.mark.parametrize("url", DATABASE_URLS)
def test_database_urls_read_as_the_store_reads_them(url: str):
    """The secret's home and the messages that name a database read the URL without the
    store's SQL library: the same parts, the same shown form, the password hidden."""
    from sqlalchemy.engine import make_url

    ours, theirs = parse_database_url(url), make_url(url)
    assert (ours.drivername, ours.username, ours.password, ours.host, ours.port,
            ours.database) == (theirs.drivername, theirs.username, theirs.password,
                               theirs.host, theirs.port, theirs.database)
    assert describe_database(url) == theirs.render_as_string(hide_password=True)
    assert "secret" not in describe_database(url)
    expected = (None if not theirs.drivername.startswith("sqlite") or not theirs.database
                or theirs.database == ":memory:" else Path(theirs.database))
    assert sqlite_path(url) == expected


def test_a_database_url_that_is_not_one_is_a_config_error():
    with pytest.raises(ConfigError, match="not a URL"):
        parse_database_url("guard.db")
    with pytest.raises(ConfigError, match="bad port"):
        parse_database_url("postgresql://u:pw@h:x/d")
    assert describe_database("guard.db") == "guard.db"

