"""The sockets of proxies with a port of their own, and the TLS they may terminate.

A socket is bound in `proxies.create` itself, so a port in use or a privileged port
fails the call and nothing is left behind; the listener task (`_service.py`) serves it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from ..._exceptions import Conflict, InvalidRequest, PermissionDenied

__all__ = ["bind", "display_host"]

BACKLOG = 1024


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return infos[0][0] if infos else socket.AF_INET


def bind(host: str, port: int, name: str) -> socket.socket:
    """A listening, non-blocking socket on `host:port` (0: a free port), or an error that
    says why and what to do."""
    try:
        family = _family(host)
    except OSError as exc:
        raise InvalidRequest(
            f"host: {host!r} is not an address of this machine ({exc.strerror or exc}); "
            'use "127.0.0.1" (the default), "0.0.0.0" or one of the host\'s addresses',
            field="host",
        ) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Rebinding right after a restart must not wait out TIME_WAIT; a port another
        # socket listens on is still refused (Linux).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, host, port, name) from None
    return sock


def _bind_error(exc: OSError, host: str, port: int, name: str) -> Exception:
    if exc.errno == errno.EADDRINUSE:
        return Conflict(
            f"port: {host}:{port} is in use by another program or proxy; give port=0 to "
            "pick a free one (CLI: --port 0), or another port", field="port", port=port,
        )  # fmt: skip
    if exc.errno == errno.EACCES:
        return PermissionDenied(
            f"port: {port} is a privileged port (below 1024) and the engine's user may not "
            "bind it; give port=0 or a port from 1024 up (or run the engine with "
            "CAP_NET_BIND_SERVICE)", field="port", port=port,
        )  # fmt: skip
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return InvalidRequest(
            f"host: {host!r} is not an address of this machine; use \"127.0.0.1\" (the "
            "default), \"0.0.0.0\" or one of the host's addresses", field="host",
        )  # fmt: skip
    return InvalidRequest(f"port: cannot listen on {host}:{port} for proxy {name!r}: "
                          f"{exc.strerror or exc}", field="port")  # fmt: skip


def display_host(host: str) -> str:
    """How a client names the listener's host (a wildcard: this machine's name)."""
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host
