"""Targets: what the user wrote, parsed into `Upstream`s, and the policy on where they go.

The policy (keys other than MASTER; MASTER may target anything):
- addresses on the engine's host only: loopback and private ranges (RFC 1918, fc00::/7).
  Link-local (169.254.0.0/16, fe80::/10: cloud metadata answers there) is refused;
  public addresses are refused unless the config's `proxy_public_targets` is true;
- a host name is resolved once, here, and every address it has must pass; the target
  then connects to the address checked (a name that later resolves elsewhere cannot
  smuggle a proxy to it);
- a unix socket only where a workflow's bind mount may go (the storage root or one of
  the config's `host_paths`, never elsewhere in the engine home, never a Docker socket:
  the one rule of `_workflows._policy.PolicyRoots.host_path_rule`; the path is resolved
  first, so a symlink cannot point the proxy elsewhere, and a hard link to a Docker
  socket is refused too). That is the check by path; each connect then opens the socket
  beneath the allowed folder checked here, following no link (`_unix.connect_unix`), so
  a socket swapped for a link later is refused too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..._exceptions import InvalidRequest, PermissionDenied
from .._workflows._policy import PolicyRoots
from ._contract import Upstream

__all__ = ["TargetPolicy", "parse_target"]

_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_FORMS = (
    '"host:port", "http://host:port[/base]", "https://host:port", "unix:/path.sock" '
    'or "bridge://AGENT/host:port"'
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
BridgeOpener = Callable[[str, str, int], Awaitable[socket.socket]]


def _split_host_port(text: str, target: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRequest(
            f"targets: {target!r} has no valid port; write {_FORMS}", field="targets"
        )
    return host.strip("[]"), int(port)


def parse_target(text: str, protocol: str) -> Upstream:
    """One target string as written (not yet checked against the policy)."""
    text = text.strip()
    if text.startswith("bridge://"):
        agent, slash, address = text.removeprefix("bridge://").partition("/")
        if not agent or not slash:
            raise InvalidRequest(
                f"targets: {text!r}: write bridge://AGENT/host:port (an address on the "
                "agent, e.g. bridge://gpu-1/127.0.0.1:8888)", field="targets",
            )  # fmt: skip
        host, port = _split_host_port(address, text)
        if protocol == "tcp":
            return Upstream(label=text, scheme="tcp", host=host, port=port, bridge=agent)
        return Upstream(label=text, scheme="http", host=host, port=port, bridge=agent)
    if text.startswith("unix:"):
        path = text.removeprefix("unix:").removeprefix("//")
        if not path.startswith("/"):
            raise InvalidRequest(
                f"targets: {text!r}: a unix socket target is an absolute path, "
                "like \"unix:/srv/app.sock\"", field="targets",
            )  # fmt: skip
        return Upstream(label=text, scheme="unix", socket_path=os.path.normpath(path))
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "tcp") or parts.query or parts.fragment:
            raise InvalidRequest(f"targets: {text!r} is not one of {_FORMS}", field="targets")
        if (scheme == "tcp") != (protocol == "tcp"):
            which = "tcp://host:port or host:port" if protocol == "tcp" else "http(s)://"
            raise InvalidRequest(
                f"targets: {text!r} does not fit a {protocol} proxy: write {which}",
                field="targets",
            )
        host, port = _split_host_port(parts.netloc, text)
        base = parts.path.rstrip("/") if scheme != "tcp" else ""
        return Upstream(label=text, scheme=scheme, host=host, port=port, base=base)  # type: ignore[arg-type]
    host, port = _split_host_port(text, text)
    return Upstream(label=text, scheme="tcp" if protocol == "tcp" else "http", host=host, port=port)


def _kind(address: Address) -> str:
    """loopback | private | link-local | unspecified | multicast | public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in _PRIVATE):
        return "private"
    return "public"


def _resolve(host: str, target: str) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequest(
            f"targets: {target!r}: the host {host!r} does not resolve ({exc.strerror or exc})",
            field="targets",
        ) from None
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0])) for info in infos))


@dataclass(frozen=True)
class TargetPolicy:
    """Where targets of keys other than MASTER may go (see the module)."""

    roots: PolicyRoots
    public: bool = False
    bridges: BridgeOpener | None = None
    """Opens a socket to `host:port` on an agent (the master's bridges)."""

    def check(self, upstream: Upstream, master: bool, may_bridge: bool = True) -> Upstream:
        """The upstream to connect to (a name replaced by the address checked), or a
        refusal naming the target and what would be allowed."""
        if upstream.bridge is not None:
            return self._check_bridge(upstream, master or may_bridge)
        if upstream.scheme == "unix":
            return self._check_socket(upstream, master)
        assert upstream.host is not None
        if master:  # anything goes: a name is resolved when connecting, as it changes
            return upstream
        addresses = _resolve(upstream.host, upstream.label)
        for address in addresses:
            self._check_address(address, upstream.label)
        first = str(addresses[0])
        if first == upstream.host:
            return upstream
        name = upstream.server_name or upstream.host  # https: verify the name, not the IP
        return Upstream(label=upstream.label, scheme=upstream.scheme, host=first,
                        port=upstream.port, base=upstream.base, server_name=name)  # fmt: skip

    def _check_address(self, address: Address, target: str) -> None:
        kind = _kind(address)
        if kind in ("loopback", "private") or (kind == "public" and self.public):
            return
        if kind == "public":
            raise PermissionDenied(
                f"targets: {target!r} is a public address ({address}); proxies of keys other "
                "than MASTER reach the engine's host only (loopback and private addresses), "
                "unless the engine's config sets proxy_public_targets = true",
                field="targets",
            )
        raise PermissionDenied(
            f"targets: {target!r} is a {kind} address ({address}), which proxies never "
            "reach (link-local is where cloud metadata answers); use a loopback or private "
            "address",
            field="targets",
        )

    def _check_bridge(self, upstream: Upstream, may_bridge: bool) -> Upstream:
        """An agent's address: the creator needs BRIDGE here, and the agent decides the
        rest when the stream opens (PROXY in what it allows; its own host's addresses)."""
        if not may_bridge:
            raise PermissionDenied(
                f"targets: {upstream.label!r} is on an agent: a proxy to it needs BRIDGE",
                field="targets",
            )
        if self.bridges is None:
            raise InvalidRequest(f"targets: {upstream.label!r}: this engine has no bridges")
        agent, host, port = upstream.bridge or "", upstream.host or "", upstream.port or 0
        opener = self.bridges

        async def open_socket() -> socket.socket:
            return await opener(agent, host, port)

        return dataclasses.replace(upstream, opener=open_socket)

    def _docker(self, real: str) -> bool:
        """A Docker socket by another name (a hard link): paths are `host_path_rule`'s."""
        for candidate in self.roots.sockets:
            with contextlib.suppress(OSError):
                if os.path.samefile(real, candidate):
                    return True
        return False

    def _check_socket(self, upstream: Upstream, master: bool) -> Upstream:
        assert upstream.socket_path is not None
        real = os.path.realpath(upstream.socket_path)
        if not master:
            why = self.roots.host_path_rule(upstream.socket_path, must_exist=False, contents=False)
            if why is None and self._docker(real):
                why = "is not allowed (it is a Docker socket)"
            if why is not None:
                raise PermissionDenied(
                    f"targets: {upstream.label!r} {why}: keys other than MASTER proxy only "
                    "to sockets inside the storage root or the config's host_paths, never "
                    "elsewhere in the engine home and never to a Docker socket",
                    field="targets",
                )
        # Beneath the narrowest allowed folder that holds it: each connect walks from
        # there (the folders above are the operator's, the ones below maybe a container's).
        roots = [self.roots.storage, *self.roots.host_paths]
        holding = [r for r in roots if real == r or real.startswith(r.rstrip("/") + "/")]
        return Upstream(label=upstream.label, scheme="unix", socket_path=real,
                        socket_root=max(holding, key=len) if holding else "/",
                        socket_denied=() if master else self.roots.sockets)  # fmt: skip
