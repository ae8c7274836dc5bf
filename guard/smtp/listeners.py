"""Which SMTP listeners to open, bound how, with which TLS context: shared by the main
process (front_processes = 0) and the SMTP front processes (guard.smtp.front)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl

from guard.config import ConfigError, Settings, parse_hostport
from guard.smtp.server import GuardHandler, GuardSMTP, ListenerConfig, ListenerKind
from guard.smtp.users import UserDirectory


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls.cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if settings.tls.min_version == "TLSv1.3"
                           else ssl.TLSVersion.TLSv1_2)
    ctx.load_cert_chain(settings.tls.cert_file, settings.tls.key_file or None)
    return ctx


def listener_plan(settings: Settings) -> list[tuple[ListenerConfig, str, int]]:
    """The configured listeners: (config, host, port) each."""
    s = settings.smtp
    if s.trusted_sender_identity != "off" and not s.trusted_identity_header.strip():
        raise ConfigError("smtp.trusted_sender_identity needs smtp.trusted_identity_header: "
                          "the header in which the office MTA names the user (e.g. "
                          "X-Authenticated-User, or Received for Postfix's "
                          "smtpd_sasl_authenticated_header)")
    kinds: list[tuple[ListenerKind, str]] = [(s.mode, s.listen)]
    if s.smtps_listen:
        kinds.append(("smtps", s.smtps_listen))
    if s.trusted_listen:
        kinds.append(("trusted", s.trusted_listen))
    networks = tuple(ipaddress.ip_network(n, strict=False) for n in s.trusted_networks)
    plan = []
    for kind, listen in kinds:
        if kind in ("submission", "smtps") and not settings.tls.cert_file:
            raise ConfigError(f"the {kind} listener needs tls.cert_file and tls.key_file "
                              "(GUARD_TLS_CERT / GUARD_TLS_KEY): AUTH is never offered "
                              "without TLS")
        cfg = ListenerConfig(
            kind=kind, hostname=s.hostname, max_message_size=s.max_message_size,
            max_recipients=s.max_recipients, max_connections=s.max_connections,
            timeout=s.timeout, auth_failures=s.auth_failures_per_connection,
            max_hops=s.max_hops, trusted_networks=networks,
            sender_identity=(s.trusted_sender_identity if kind == "trusted"
                             else s.sender_identity),
            identity_header=s.trusted_identity_header.strip())
        host, port = parse_hostport(listen)
        plan.append((cfg, host, port))
    return plan


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (SO_REUSEPORT, so a restarted guard can bind at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024, reuse_port=True)


async def serve_listener(handler: GuardHandler, cfg: ListenerConfig, sock: socket.socket,
                         users: UserDirectory, tls: ssl.SSLContext | None
                         ) -> asyncio.base_events.Server:
    def factory() -> GuardSMTP:
        return GuardSMTP(handler, cfg, users, tls)

    return await asyncio.get_running_loop().create_server(
        factory, sock=sock, ssl=tls if cfg.kind == "smtps" else None)
