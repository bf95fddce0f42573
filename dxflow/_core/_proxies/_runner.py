"""The background work of each proxy, as jobs of the core's lifecycle.

- `proxy.{name}`: the listener of a proxy with a port of its own (a task). A restored
  proxy binds its port here, when the lifecycle starts: a port now taken leaves the
  proxy in state "error" with the reason, and the engine serves the others.
- `proxy.{name}.resolve`: a workflow service's containers, every RESOLVE_EVERY seconds
  and at once when the pool runs out of healthy targets (a container was recreated).
- `proxy.{name}.health`: the active health checks, every `health.interval` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from functools import partial

from ..._exceptions import ApiError
from .._lifecycle import Lifecycle
from ._contract import RegistryLike
from ._health import check_pool
from ._listen import bind
from ._live import LiveProxy
from ._workloads import RESOLVE_EVERY, Workloads

__all__ = ["Runner"]

log = logging.getLogger("dxflow.engine")

RESOLVE_AT_MOST = 1.0
"""Seconds between two resolutions a failing pool asks for (a flood of failures asks once)."""

TlsFor = Callable[[LiveProxy], ssl.SSLContext | None]


class Runner:
    def __init__(
        self, lifecycle: Lifecycle, workloads: Workloads, proxies: dict[str, LiveProxy],
        registry: RegistryLike, tls_for: TlsFor,
    ) -> None:  # fmt: skip
        self._lifecycle = lifecycle
        self._workloads = workloads
        self._proxies = proxies
        self._registry = registry
        self._tls_for = tls_for

    # -- registering ----------------------------------------------------------------------

    def start(self, live: LiveProxy) -> None:
        if live.spec.port is not None:
            self._lifecycle.task(f"proxy.{live.name}", partial(self._serve, live))
        self._jobs(live)

    def restart(self, live: LiveProxy) -> None:
        """Try its listener again (its port was taken)."""
        job = f"proxy.{live.name}"
        self._lifecycle.discard(job)
        self._lifecycle.task(job, partial(self._serve, live))

    def _jobs(self, live: LiveProxy) -> None:
        spec = live.spec
        if spec.workflow is not None:
            job = f"proxy.{live.name}.resolve"
            self._lifecycle.every(job, RESOLVE_EVERY, partial(self._resolve, live))
            live.pool.exhausted = partial(self._ask, job, live)
        else:
            live.pool.exhausted = None
        if spec.health is not None:
            checks = partial(check_pool, live)
            self._lifecycle.every(f"proxy.{live.name}.health", spec.health.interval, checks)

    def changed(self, live: LiveProxy, workload: bool) -> None:
        """The spec changed: the checks and the resolution follow it (now)."""
        for suffix in ("resolve", "health"):
            self._lifecycle.discard(f"proxy.{live.name}.{suffix}")
        if workload and live.spec.workflow is not None:
            live.pool.replace([])  # the old service's containers are no target any more
        self._jobs(live)

    def stop(self, live: LiveProxy) -> None:
        """Stop its jobs; the listener closes its socket and ends its connections."""
        live.removed = True
        live.end_all()
        for job in (f"proxy.{live.name}", f"proxy.{live.name}.resolve",
                    f"proxy.{live.name}.health"):  # fmt: skip
            self._lifecycle.discard(job)
        self.release(live)

    @staticmethod
    def release(live: LiveProxy) -> None:
        """Close a socket no listener serves (one that serves is closed by its task)."""
        if live.sock is not None and not live.serving:
            live.sock.close()
            live.sock = None

    def _ask(self, job: str, live: LiveProxy) -> None:
        now = time.monotonic()
        if now - live.resolved_at >= RESOLVE_AT_MOST:
            live.resolved_at = now
            with contextlib.suppress(KeyError):  # removed meanwhile
                self._lifecycle.trigger(job)

    # -- the work -------------------------------------------------------------------------

    async def _resolve(self, live: LiveProxy) -> None:
        spec = live.spec
        if spec.workflow is None or spec.service is None or spec.service_port is None:
            return
        upstreams = await self._workloads.resolve(
            spec.workflow, spec.service, spec.service_port, spec.protocol
        )
        live.resolved_at = time.monotonic()
        if live.spec is spec:  # not changed meanwhile
            live.pool.replace(upstreams)

    async def _serve(self, live: LiveProxy) -> None:
        if self._proxies.get(live.name) is not live or live.port is None:
            return  # removed before its task started
        if live.sock is None or live.sock.fileno() == -1:
            try:
                live.sock = bind(live.spec.host, live.port, live.name)
            except ApiError as exc:
                if live.error != f"cannot listen: {exc}":  # once, not at every retry
                    log.warning("proxy %s does not serve: %s", live.name, exc)
                live.error = f"cannot listen: {exc}"
                return
        try:
            context = live.ssl_context or self._tls_for(live)
        except ApiError as exc:
            live.error = f"cannot load its TLS certificate: {exc}"
            live.sock.close()
            live.sock = None
            return
        live.ssl_context, live.error, live.serving = context, None, True
        sock = live.sock
        try:
            if live.protocol == "tcp":
                from ._tcp import serve_tcp

                await serve_tcp(sock, live, self._registry, context)
            else:
                from ._http import serve_http  # type: ignore[import-not-found, import-untyped, unused-ignore]

                await serve_http(sock, live, self._registry, context)
        finally:
            live.serving = False
            sock.close()
            if live.sock is sock:
                live.sock = None
