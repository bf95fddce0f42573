"""The Swarm half of the adapter: nodes, services, tasks, secrets and configs.

Services are created and updated from a whole Engine API ServiceSpec (posted as it is,
not through docker-py's typed helpers): a spec with every default spelled out is what
lets a later update that changes only the replica count leave every task alone (the
SDK's `Service.scale` rolls every task, because the engine fills in defaults on the
first update). Answers are the small records below, never Docker's raw dictionaries.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._client import DockerConnection

__all__ = ["SwarmApi", "SwarmNode", "SwarmService", "SwarmState", "SwarmTask"]


@dataclass(frozen=True)
class SwarmState:
    """This Docker Engine's place in a swarm."""

    node_id: str
    state: str
    """inactive, pending, active, error, locked"""
    manager: bool
    """It is a manager that answers for the cluster (`ControlAvailable`)."""
    api_version: str


@dataclass(frozen=True)
class SwarmNode:
    id: str
    hostname: str
    address: str
    state: str
    """ready, down, unknown, disconnected"""
    availability: str
    role: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> SwarmNode:
        spec, status = raw.get("Spec") or {}, raw.get("Status") or {}
        return cls(
            id=raw["ID"],
            hostname=(raw.get("Description") or {}).get("Hostname") or raw["ID"][:12],
            address=status.get("Addr") or "",
            state=status.get("State") or "unknown",
            availability=spec.get("Availability") or "active",
            role=spec.get("Role") or "worker",
            labels=spec.get("Labels") or {},
        )


@dataclass(frozen=True)
class SwarmService:
    id: str
    name: str
    version: int
    spec: Mapping[str, Any]
    labels: Mapping[str, str]

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> SwarmService:
        spec = raw.get("Spec") or {}
        return cls(
            id=raw["ID"],
            name=spec.get("Name") or raw["ID"],
            version=int((raw.get("Version") or {}).get("Index") or 0),
            spec=spec,
            labels=spec.get("Labels") or {},
        )


@dataclass(frozen=True)
class SwarmTask:
    id: str
    service_id: str
    slot: int | None
    node_id: str | None
    state: str
    desired_state: str
    error: str | None
    message: str | None
    exit_code: int | None
    container: str | None
    updated_at: datetime | None
    created_at: datetime | None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> SwarmTask:
        status = raw.get("Status") or {}
        container = status.get("ContainerStatus") or {}
        return cls(
            id=raw["ID"],
            service_id=raw.get("ServiceID") or "",
            slot=raw.get("Slot"),
            node_id=raw.get("NodeID") or None,
            state=status.get("State") or "unknown",
            desired_state=raw.get("DesiredState") or "unknown",
            error=status.get("Err") or None,
            message=status.get("Message") or None,
            exit_code=container.get("ExitCode") if "ExitCode" in container else None,
            container=container.get("ContainerID") or None,
            updated_at=_time(raw.get("UpdatedAt")),
            created_at=_time(raw.get("CreatedAt")),
        )


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    # Docker writes nanoseconds; Python reads microseconds.
    head, _, rest = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00")


class SwarmApi:
    """Swarm calls on one Docker Engine connection (a manager, for the cluster's view)."""

    def __init__(self, connection: DockerConnection) -> None:
        self._conn = connection

    async def state(self) -> SwarmState:
        def read(client: Any) -> SwarmState:
            info, version = client.api.info(), client.api.version()
            swarm = info.get("Swarm") or {}
            return SwarmState(
                node_id=swarm.get("NodeID") or "",
                state=swarm.get("LocalNodeState") or "inactive",
                manager=bool(swarm.get("ControlAvailable")),
                api_version=str(version.get("ApiVersion") or "0"),
            )

        return await self._conn._run(read)

    async def nodes(self) -> list[SwarmNode]:
        rows = await self._conn._run(lambda c: c.api.nodes())
        return [SwarmNode.from_api(row) for row in rows]

    async def services(self, labels: Sequence[str]) -> list[SwarmService]:
        filters = {"label": list(labels)}
        rows = await self._conn._run(lambda c: c.api.services(filters=filters))
        return [SwarmService.from_api(row) for row in rows]

    async def create_service(self, spec: Mapping[str, Any]) -> str:
        def create(client: Any) -> str:
            api = client.api
            answer = api._result(api._post_json(api._url("/services/create"), data=spec), True)
            return str(answer["ID"])

        return await self._conn._run(create)

    async def update_service(self, service: str, version: int, spec: Mapping[str, Any]) -> None:
        def update(client: Any) -> None:
            api = client.api
            url = api._url("/services/{0}/update", service)
            api._raise_for_status(api._post_json(url, data=spec, params={"version": version}))

        await self._conn._run(update)

    async def remove_service(self, service: str) -> None:
        await self._conn._run(lambda c: c.api.remove_service(service))

    async def tasks(self, filters: Mapping[str, Any]) -> list[SwarmTask]:
        rows = await self._conn._run(lambda c: c.api.tasks(filters=dict(filters)))
        return [SwarmTask.from_api(row) for row in rows]

    async def secrets(self, labels: Sequence[str]) -> list[tuple[str, str]]:
        """(id, name) of the secrets carrying every one of `labels`."""
        rows = await self._conn._run(lambda c: c.api.secrets(filters={"label": list(labels)}))
        return [(row["ID"], row["Spec"]["Name"]) for row in rows]

    async def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        answer = await self._conn._run(lambda c: c.api.create_secret(name, data, dict(labels)))
        return str(answer["ID"])

    async def remove_secret(self, secret: str) -> None:
        await self._conn._run(lambda c: c.api.remove_secret(secret))

    async def configs(self, labels: Sequence[str]) -> list[tuple[str, str]]:
        rows = await self._conn._run(lambda c: c.api.configs(filters={"label": list(labels)}))
        return [(row["ID"], row["Spec"]["Name"]) for row in rows]

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        def create(client: Any) -> str:
            # docker-py encodes `data` only when it is str; bytes go as base64 ourselves
            api = client.api
            body = {"Name": name, "Labels": dict(labels), "Data": base64.b64encode(data).decode()}
            answer = api._result(api._post_json(api._url("/configs/create"), data=body), True)
            return str(answer["ID"])

        return await self._conn._run(create)

    async def remove_config(self, config: str) -> None:
        await self._conn._run(lambda c: c.api.remove_config(config))

    def service_logs(
        self, services: Sequence[str], follow: bool, tail: int | None, since: float
    ) -> AsyncIterator[bytes]:
        """Raw lines (`<RFC 3339 time> <text>`, with the task's details before them) of
        every one of `services`, merged as they come."""

        def opener(service: str) -> Any:
            def open_logs(client: Any) -> Any:
                return client.api.service_logs(
                    service, details=True, follow=follow, stdout=True, stderr=True,
                    since=int(since), timestamps=True, tail="all" if tail is None else tail,
                )  # fmt: skip

            return open_logs

        return self._conn._stream([opener(s) for s in services])

    async def push(self, image: str) -> list[str]:
        """Push `image` (a `registry/name:tag` reference); the errors Docker reported."""

        def push(client: Any) -> list[str]:
            errors = []
            for chunk in client.api.push(image, stream=True, decode=True):
                if "error" in chunk:
                    errors.append(str(chunk["error"]))
            return errors

        return await self._conn._run(push)

    async def tag(self, image: str, reference: str) -> None:
        await self._conn._run(lambda c: c.api.tag(image, reference))
