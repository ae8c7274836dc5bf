"""Which SMTP listeners to open, bound how, with which TLS context: shared by the main
process (front_processes = 0) and the SMTP front processes (guard.smtp.front)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl

from guard.config import ConfigError, Settings, parse_hostport
from guard.smtp.handler import GuardHandler
from guard.smtp.listenerconfig import ListenerConfig
from guard.smtp.received import ListenerKind
from guard.smtp.server import GuardSMTP
from guard.users import UserDirectory


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls.cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if settings.tls.min_version == "TLSv1.3"
                           else ssl.TLSVersion.TLSv1_2)
    ctx.load_cert_chain(settings.tls.cert_file, settings.tls.key_file or None)
    return ctx


def listener_plan(settings: Settings, loop_id: str = ""
                  ) -> list[tuple[ListenerConfig, str, int]]:
    """The configured listeners: (config, host, port) each. `loop_id`: this guard's mark
    in its Received: lines (guard.accept.pipeline.trace_header), for the mail loop check."""
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
            identity_header=s.trusted_identity_header.strip(),
            loop_marker=f"(guard {loop_id})".encode("ascii") if loop_id else b"",
            max_passes=s.max_passes)
        host, port = parse_hostport(listen)
        plan.append((cfg, host, port))
    return plan


def _is_local(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True when `ip` is an address of this machine (it can be bound to)."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((str(ip), 0))
        return True
    except OSError:
        return False


RESOLVE_SECONDS = 5.0  # the start-time loop check waits this long for DNS


async def _addresses(host: str, port: int
                     ) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    async with asyncio.timeout(RESOLVE_SECONDS):
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        out.add(ip)
    return out


async def upstream_loop(plan: list[tuple[ListenerConfig, str, int]], upstream_host: str,
                        upstream_port: int) -> str | None:
    """Which of our own listeners the upstream is (mail would come straight back), as
    "kind host:port"; None when it is none of them. A host that does not resolve now is
    not judged (delivery will say)."""
    same_port = [(cfg, h) for cfg, h, p in plan if p == upstream_port]
    if not same_port:
        return None
    try:
        targets = await _addresses(upstream_host, upstream_port)
    except (OSError, TimeoutError, ValueError):
        return None
    for cfg, host in same_port:
        where = f"{cfg.kind} listener {host}:{upstream_port}"
        if host in ("0.0.0.0", ""):  # every IPv4 address of this machine
            if any(ip.version == 4 and _is_local(ip) for ip in targets):
                return where
        elif host == "::":  # every address of this machine (dual stack)
            if any(_is_local(ip) for ip in targets):
                return where
        else:
            try:
                mine = await _addresses(host, upstream_port)
            except (OSError, TimeoutError, ValueError):
                continue
            if mine & targets:
                return where
    return None


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
