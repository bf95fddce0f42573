"""The agent's side of a bridge: it dials its master and serves the streams it opens.

Joined once (`dxflow boot up --join TOKEN` writes `<home>/bridge.json`, 0600), the
agent dials whenever its engine runs: one WebSocket to the master, re-dialled with
exponential backoff and full jitter whenever it breaks. Losing the master changes
nothing on the agent: its workflows, shells and proxies never hear of it.

What the master may do here is the agent's choice (`allow`): the master's key is
registered on the agent as `bridge-master` with exactly those permissions, and each
forwarded call runs as `bridge-master/<caller>` with what both allow (see `delegate`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import json
import logging
import os
import random
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._config import Config, Home, atomic_write
from ..._exceptions import ConfigError, PermissionDenied
from ..._keypairs import PrivateKey, load_private_key, parse_public_key
from ..._permissions import Permission
from ..._version import __version__
from .._context import Identity
from .._key_registry import KeyRegistry
from ._frames import MAX_DATA, PROTOCOL
from ._handshake import Signer, tls_context
from ._link import Link, LinkError, Stream, splice
from ._names import (
    CALLER_HEADER,
    CALLER_PERMISSIONS_HEADER,
    LINK_PATH,
    MASTER_ON_AGENT,
    link_message,
)
from ._socket import dial

__all__ = ["MASTER_ON_AGENT", "AgentSettings", "BridgeAgent", "host_facts", "narrow"]

log = logging.getLogger("dxflow.bridges")

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
STABLE = 10.0
READ_LIMIT = 4 * MAX_DATA
"""The read buffer of a stream's local connection: asyncio's default (64 KiB, reading
paused past twice that) would cut a bulk answer into frames of a half or less of
MAX_DATA, each with its own costs along the link."""
"""A link that lasted this long was healthy: the next dial starts the backoff afresh."""


@dataclass
class AgentSettings:
    """`<home>/bridge.json`: where the master is and who it is (pinned)."""

    url: str
    name: str
    allow: list[str]
    fingerprint: str = ""
    """The master's identity; empty until the first link pins it (a `--key` join)."""
    master_public_key: str = ""
    key: str | None = None
    """The agent's key on the master (None: its own engine key, `keys/master.pem`)."""
    verify: bool | str = True

    @staticmethod
    def path(home: Home) -> Path:
        return home.root / "bridge.json"

    @classmethod
    def load(cls, home: Home) -> AgentSettings | None:
        try:
            data = json.loads(cls.path(home).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{cls.path(home)} is unreadable ({exc}); join again") from None
        return cls(**data)

    def save(self, home: Home) -> None:
        data = json.dumps(dataclasses.asdict(self), indent=2).encode()
        atomic_write(self.path(home), data, mode=0o600)

    @property
    def permissions(self) -> Permission:
        return Permission.parse(self.allow)

    def private_key(self, home: Home) -> PrivateKey:
        return load_private_key(self.key or home.master_key)

    def check_master(self, public_pem: str, name: str, nonce: str, signature: str) -> str:
        """The master's fingerprint, once it proved it is the pinned identity."""
        public = parse_public_key(public_pem)
        if self.fingerprint and public.fingerprint != self.fingerprint:
            raise PermissionDenied(
                f"the master at {self.url} presents identity {public.fingerprint}, but this "
                f"agent pinned {self.fingerprint}: refusing it. If the master's key really "
                "changed, join again with a new token"
            )
        if not public.verify(link_message(name, nonce), base64.b64decode(signature)):
            raise PermissionDenied(f"the master at {self.url} failed to prove its identity")
        return public.fingerprint


def narrow(allowed: Permission, caller: Permission) -> Permission:
    """What a forwarded call may do: what the agent allows AND what the caller holds."""
    if Permission.MASTER in caller:
        granted = allowed
    elif Permission.MASTER in allowed:
        granted = caller
    else:
        granted = allowed & caller
    if Permission.READ_ONLY in (allowed | caller):
        granted |= Permission.READ_ONLY
    return granted


def host_facts() -> dict[str, Any]:
    """CPUs, memory, GPUs and load of this host, for placement and `bridge list`."""
    facts: dict[str, Any] = {"cpus": os.cpu_count(), "hostname": socket.gethostname(),
                             "version": __version__}  # fmt: skip
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in meminfo[:3]}
        facts["memory"], facts["memory_available"] = (
            fields.get("MemTotal"),
            fields.get("MemAvailable"),
        )
    except (OSError, ValueError, IndexError):
        pass
    facts["gpus"] = sum(1 for p in Path("/dev").glob("nvidia[0-9]*"))
    facts["load"] = round(os.getloadavg()[0], 2)
    return facts


def _private(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return address.is_loopback or address.is_private


class BridgeAgent:
    def __init__(self, config: Config, keys: KeyRegistry, engine_id: str) -> None:
        self._config, self._keys, self.engine_id = config, keys, engine_id
        self.connected = False
        self.local: str | tuple[str, int] = str(config.home.socket)
        """Where forwarded calls go: this engine's unix socket (tests: a TCP listener)."""
        self.reload()

    def reload(self) -> None:
        """Read `bridge.json` again (a join while the engine exists)."""
        self.settings = AgentSettings.load(self._config.home)
        if self.settings is not None and self.settings.master_public_key:
            self._register_master(self.settings)

    def _register_master(self, settings: AgentSettings) -> None:
        """The master's key, registered here with exactly what `allow` grants."""
        public = parse_public_key(settings.master_public_key)
        wanted = settings.permissions
        record = self._keys.get(MASTER_ON_AGENT)
        if record is not None and (record.public.fingerprint, record.permissions) == (
            public.fingerprint, wanted,
        ):  # fmt: skip
            return
        if record is not None:
            self._keys.drop(MASTER_ON_AGENT)
        self._keys.add(MASTER_ON_AGENT, public, wanted)

    def delegate(self, identity: Identity, caller: str, permissions: str) -> Identity:
        """The identity of a call the master forwards for `caller` (its identity on the
        master, with `permissions` there). Only the pinned master may claim callers."""
        settings = self.settings
        if (
            settings is None
            or identity.name != MASTER_ON_AGENT
            or identity.fingerprint != settings.fingerprint
        ):
            raise PermissionDenied(
                f"only this engine's bridge master may forward calls ({CALLER_HEADER})"
            )
        if not caller or len(caller) > 200 or not caller.isprintable():
            raise PermissionDenied(f"{CALLER_HEADER}: not an identity name")
        try:
            held = Permission.parse(permissions)
        except ValueError as exc:
            raise PermissionDenied(f"{CALLER_PERMISSIONS_HEADER}: {exc}") from None
        return dataclasses.replace(
            identity, name=f"{identity.name}/{caller}", permissions=narrow(identity.permissions,
                                                                           held),
        )  # fmt: skip

    # -- the link -----------------------------------------------------------------------

    async def run(self) -> None:
        """Dial, serve, and dial again for as long as the engine runs."""
        delay = BACKOFF_FIRST
        while self.settings is not None:
            started = time.monotonic()
            try:
                await self._dial(self.settings)
            except (OSError, LinkError, PermissionDenied, TimeoutError, Exception) as exc:
                log.warning("bridge to %s: %s", self.settings.url, exc)
            finally:
                self.connected = False
            if time.monotonic() - started > STABLE:
                delay = BACKOFF_FIRST
            await asyncio.sleep(random.uniform(0, delay))  # full jitter
            delay = min(delay * 2, BACKOFF_MAX)

    async def _dial(self, settings: AgentSettings) -> None:
        import httpx

        key = settings.private_key(self._config.home)
        secure = settings.url.startswith("https")
        verify = tls_context(settings.verify) if secure else True
        async with httpx.AsyncClient(base_url=settings.url, verify=verify, timeout=15) as client:
            headers = await Signer(client, key).headers()
        uri = settings.url.replace("http", "ws", 1).rstrip("/") + LINK_PATH
        carrier = await dial(uri, headers, ssl_context=tls_context(settings.verify) if secure
                             else None, timeout=15)  # fmt: skip
        try:
            nonce = secrets.token_urlsafe(24)
            await carrier.send(json.dumps(self._hello(settings, nonce)).encode())
            async with asyncio.timeout(15):
                _, raw = await carrier.receive()  # the answer, or an error frame (text)
            answer = json.loads(raw)
            if answer.get("type") == "error":
                raise PermissionDenied(f"the master refused the link: {answer.get('message')}")
            if answer.get("protocol", 1) != PROTOCOL:
                raise LinkError(
                    f"the master speaks link protocol {answer.get('protocol')},"
                    f" this agent {PROTOCOL}: run the same dxflow version on both"
                )
            fingerprint = settings.check_master(
                answer["public_key"], answer["name"], nonce, answer["signature"]
            )
            if not settings.fingerprint:  # a --key join: pinned at the first link
                settings.fingerprint, settings.master_public_key = fingerprint, answer["public_key"]
                settings.save(self._config.home)
                self._register_master(settings)
            link = Link(carrier, side="agent", on_open=self._on_open,
                        interval=float(answer.get("interval", 5.0)), facts=host_facts)  # fmt: skip
            self.connected = True
            log.info("bridge: linked to %s as %r", settings.url, answer["name"])
            await link.run()
        finally:
            await carrier.close()

    def _hello(self, settings: AgentSettings, nonce: str) -> dict[str, Any]:
        return {"name": settings.name, "engine_id": self.engine_id, "allow": settings.allow,
                "version": __version__, "protocol": PROTOCOL, "nonce": nonce,
                "facts": host_facts()}  # fmt: skip

    async def _on_open(self, stream: Stream, target: dict[str, Any]) -> None:
        """A stream the master opened: to this engine's API, or (PROXY) a local port."""
        kind = target.get("to")
        if kind == "engine":
            if isinstance(self.local, str):
                reader, writer = await asyncio.open_unix_connection(self.local, limit=READ_LIMIT)
            else:
                reader, writer = await asyncio.open_connection(*self.local, limit=READ_LIMIT)
        elif kind == "tcp":
            assert self.settings is not None
            if Permission.PROXY not in self.settings.permissions:
                raise PermissionError("this agent does not allow PROXY to the master")
            host, port = str(target.get("host")), int(target.get("port", 0))
            if not _private(host):
                raise PermissionError(f"{host} is not an address of this host or its network")
            reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        else:
            raise ValueError(f"unknown stream target {kind!r}")
        await stream.accept()
        await splice(stream, reader, writer)
