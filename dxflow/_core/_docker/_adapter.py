"""The one adapter to the Docker Engine: typed methods over docker-py's low-level API.

Only this package imports `docker`. Every method takes plain arguments and answers
with the records of `_types`; Docker's errors arrive as dxflow's (`NotFound`,
`Conflict`, `InvalidRequest`, `DockerUnavailable` when the daemon cannot be reached).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import anyio

from ..._exceptions import DockerUnavailable, InvalidRequest, NotFound
from ..._models import DockerInfo
from ._client import DockerConnection
from ._logs import open_log
from ._swarm import SwarmApi
from ._types import (
    Container,
    DockerEvent,
    ExecCommand,
    ExecOutcome,
    HealthProbe,
    LogChunk,
    LogSource,
    Network,
    Processes,
    ResourceUsage,
    Volume,
)

__all__ = ["DockerAdapter"]

# What the docker CLI reads besides DOCKER_HOST: a context would point it elsewhere.
_CLI_SETTINGS = ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS")
# The classic builder paints a step's stderr red (ESC[91m ... ESC[0m): text, not colours.
_SGR = re.compile(r"\x1b\[[0-9;]*m")


class _BuildLines:
    """The lines of a build's JSON progress stream; its error as InvalidRequest."""

    def __init__(self, raw: Iterator[Mapping[str, Any]]) -> None:
        self._raw = raw

    def __iter__(self) -> Iterator[str]:
        for chunk in self._raw:
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = str(detail.get("message") or chunk.get("error") or "unknown error")
                raise InvalidRequest(f"Docker build failed: {message.strip()}")
            text = _SGR.sub("", str(chunk.get("stream") or chunk.get("status") or ""))
            for line in text.splitlines():
                if line.strip():
                    yield line.rstrip()

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


class DockerAdapter(DockerConnection):
    @functools.cached_property
    def swarm(self) -> SwarmApi:
        """Swarm calls (nodes, services, tasks) on the same connection."""
        return SwarmApi(self)

    # -- the daemon -----------------------------------------------------------------------

    async def info(self) -> DockerInfo:
        try:
            with anyio.fail_after(5):
                version = await self._run(lambda c: c.version())
        except DockerUnavailable as exc:
            return DockerInfo(available=False, error=exc.message)
        except TimeoutError:
            return DockerInfo(available=False, error="Docker Engine did not answer within 5 s")
        return DockerInfo(
            available=True, version=version.get("Version"), api_version=version.get("ApiVersion")
        )

    # -- containers -----------------------------------------------------------------------

    async def containers(self, labels: Sequence[str]) -> list[Container]:
        """Every container (running or not) carrying all of `labels` (`key` or `key=value`)."""
        filters = {"label": list(labels)}
        rows = await self._run(lambda c: c.api.containers(all=True, filters=filters))
        return [Container.from_row(row) for row in rows]

    async def create_container(self, name: str, config: Mapping[str, Any]) -> str:
        """Create a container from an Engine API config; its id."""
        created = await self._run(lambda c: c.api.create_container_from_config(config, name))
        return str(created["Id"])

    async def start(self, container: str) -> None:
        await self._run(lambda c: c.api.start(container))

    async def stop(self, container: str, grace: int) -> None:
        await self._run(lambda c: c.api.stop(container, timeout=grace))

    async def restart(self, container: str, grace: int) -> None:
        await self._run(lambda c: c.api.restart(container, timeout=grace))

    async def pause(self, container: str) -> None:
        await self._run(lambda c: c.api.pause(container))

    async def unpause(self, container: str) -> None:
        await self._run(lambda c: c.api.unpause(container))

    async def kill(self, container: str, signal: str) -> None:
        await self._run(lambda c: c.api.kill(container, signal=signal))

    async def remove_container(self, container: str, volumes: bool = False) -> None:
        """Remove a container, running or not (and its anonymous volumes with `volumes`)."""
        await self._run(lambda c: c.api.remove_container(container, force=True, v=volumes))

    async def health_log(self, container: str) -> list[HealthProbe]:
        """The last runs of a container's health check (Docker keeps five), oldest first."""
        attrs = await self._run(lambda c: c.api.inspect_container(container))
        health = (attrs.get("State") or {}).get("Health") or {}
        return [HealthProbe.from_log(entry) for entry in health.get("Log") or []]

    async def top(self, container: str) -> Processes:
        """The processes running in a container (`docker top`)."""
        return Processes.from_top(await self._run(lambda c: c.api.top(container)))

    async def stats(self, container: str) -> ResourceUsage:
        """One sample (Docker measures CPU over about a second)."""
        raw = await self._run(lambda c: c.api.stats(container, stream=False))
        return ResourceUsage.from_stats(raw)

    async def exec(
        self,
        container: str,
        cmd: Sequence[str],
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecOutcome:
        """Run `cmd` in a running container to its end: its exit code and output."""

        def run(client: Any) -> ExecOutcome:
            created = client.api.exec_create(
                container, list(cmd), user=user or "", workdir=workdir,
                environment=dict(env) if env else None,
            )  # fmt: skip
            output = client.api.exec_start(created["Id"])
            code = client.api.exec_inspect(created["Id"])["ExitCode"]
            return ExecOutcome(exit_code=code, output=output)

        return await self._run(run)

    def exec_command(
        self,
        container: str,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        env_file: str | None = None,
        workdir: str | None = None,
    ) -> ExecCommand:
        """`docker exec -it` of `command` for a PTY, aimed at this adapter's daemon.

        The CLI would otherwise follow its own environment or context and could open a
        shell on another daemon than the workflow's. `env_file` is read by the CLI (a
        /dev/fd path keeps values out of argv).
        """
        cli = shutil.which("docker")
        if cli is None:
            raise InvalidRequest("a shell in a container needs the docker CLI on the engine")
        argv = [cli, "exec", "-it", *(f"--env={k}={v}" for k, v in (env or {}).items())]
        if env_file:
            argv.append(f"--env-file={env_file}")
        if workdir:
            argv.append(f"--workdir={workdir}")
        environment = {k: v for k, v in os.environ.items() if k not in _CLI_SETTINGS}
        if not self._base_url:  # Docker's environment: docker-py read its TLS settings too
            environment.update({k: os.environ[k] for k in _CLI_SETTINGS[1:] if k in os.environ})
        environment["DOCKER_HOST"] = self.host
        return ExecCommand(argv=[*argv, container, *command], env=environment)

    def logs(
        self,
        sources: Sequence[LogSource],
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
    ) -> AsyncGenerator[LogChunk]:
        """The lines of `sources` (stdout and stderr of each in the order written), with
        Docker's timestamps; the sources' lines merged as they come."""

        def opener(source: LogSource) -> Any:
            return lambda client: open_log(client, source, follow, tail, since)

        return self._stream([opener(source) for source in sources])

    # -- events ---------------------------------------------------------------------------

    async def events(self, labels: Sequence[str], since: float) -> AsyncIterator[DockerEvent]:
        """Container events from `since` (seconds since the epoch) on, as they happen."""
        filters = {"label": list(labels), "type": ["container"]}

        def open_events(client: Any) -> Any:
            return client.api.events(filters=filters, decode=True, since=_stamp(since))

        async for raw in self._stream([open_events]):
            yield DockerEvent.from_raw(raw)

    async def recorded_events(
        self, labels: Sequence[str], since: float, until: float
    ) -> list[DockerEvent]:
        """Container events Docker has recorded between `since` and `until`."""
        filters = {"label": list(labels), "type": ["container"]}
        raws = await self._run(
            lambda c: list(
                c.api.events(filters=filters, decode=True, since=_stamp(since), until=_stamp(until))
            )
        )
        return [DockerEvent.from_raw(raw) for raw in raws]

    # -- images ---------------------------------------------------------------------------

    async def has_image(self, image: str) -> bool:
        try:
            await self._run(lambda c: c.api.inspect_image(image))
        except NotFound:
            return False
        return True

    def build(
        self,
        context: str,
        tag: str,
        dockerfile: str | None = None,
        args: Mapping[str, str | None] | None = None,
        target: str | None = None,
    ) -> AsyncGenerator[str]:
        """Build `context` as `tag`, yielding the build's output line by line; a failed
        step leaves no container behind either.

        InvalidRequest when the build fails (after the failing step's output); OSError or
        TypeError when the context cannot be read (docker-py reads it on this side).
        """

        def open_build(client: Any) -> _BuildLines:
            return _BuildLines(
                client.api.build(
                    path=context, dockerfile=dockerfile, buildargs=dict(args) if args else None,
                    target=target, tag=tag, rm=True, forcerm=True, decode=True,
                )
            )  # fmt: skip

        return self._stream([open_build])

    # -- networks -------------------------------------------------------------------------

    async def network(self, name: str) -> Network | None:
        """The network named exactly `name` (Docker's filter matches substrings)."""
        rows = await self._run(lambda c: c.api.networks(names=[name]))
        found = [row for row in rows if row.get("Name") == name]
        return Network.from_attrs(found[0]) if found else None

    async def inspect_network(self, name: str) -> Network:
        """The network with its attached containers; NotFound when there is none."""
        return Network.from_attrs(await self._run(lambda c: c.api.inspect_network(name)))

    async def create_network(
        self,
        name: str,
        labels: Mapping[str, str],
        driver: str | None = None,
        options: Mapping[str, str] | None = None,
        internal: bool = False,
        attachable: bool = False,
    ) -> None:
        await self._run(
            lambda c: c.api.create_network(
                name, driver=driver or "bridge", options=dict(options) if options else None,
                internal=internal, attachable=attachable, labels=dict(labels),
            )
        )  # fmt: skip

    async def remove_network(self, name: str) -> None:
        await self._run(lambda c: c.api.remove_network(name))

    async def connect(self, container: str, network: str, aliases: Sequence[str] = ()) -> None:
        await self._run(
            lambda c: c.api.connect_container_to_network(
                container, network, aliases=list(aliases) or None
            )
        )

    async def disconnect(self, endpoint: str, network: str, force: bool = False) -> None:
        """Detach a container, or with `force` an endpoint Docker kept of a removed one."""
        await self._run(lambda c: c.api.disconnect_container_from_network(endpoint, network, force))

    # -- volumes --------------------------------------------------------------------------

    async def volume(self, name: str) -> Volume | None:
        """The volume named exactly `name`."""
        answer = await self._run(lambda c: c.api.volumes(filters={"name": name}))
        found = [row for row in (answer or {}).get("Volumes") or [] if row.get("Name") == name]
        return Volume.from_attrs(found[0]) if found else None

    async def inspect_volume(self, name: str) -> Volume:
        return Volume.from_attrs(await self._run(lambda c: c.api.inspect_volume(name)))

    async def create_volume(
        self,
        name: str,
        labels: Mapping[str, str],
        driver: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> None:
        await self._run(
            lambda c: c.api.create_volume(
                name, driver=driver or "local", driver_opts=dict(options) if options else None,
                labels=dict(labels),
            )
        )  # fmt: skip

    async def remove_volume(self, name: str) -> None:
        await self._run(lambda c: c.api.remove_volume(name, force=True))


def _stamp(seconds: float) -> str:
    """Docker's `since`/`until` with sub-second precision (docker-py would truncate)."""
    return f"{seconds:.9f}"
