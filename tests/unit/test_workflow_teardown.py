"""`down` and `up` around a stale network endpoint, which a test cannot make Docker keep:
the Docker adapter is replaced by a fake that keeps one the way Docker 20.10 does."""

from __future__ import annotations

from typing import Any

import anyio

from dxflow import Conflict
from dxflow._core._compose import load_project
from dxflow._core._docker import Container, Network, Volume
from dxflow._core._workflows._orchestrator import Orchestrator, stop_grace
from dxflow._core._workflows._owners import Owners
from dxflow._core._workflows._teardown import Teardown
from dxflow.models import WorkflowEvent

NETWORK = "shop_default"
WEB = Container(
    "c1", "shop-web-1", {"com.docker.compose.project": "shop",
                          "com.docker.compose.service": "web"}, "running", "Up 1 second",
)  # fmt: skip


class StaleDocker:
    """Removes containers, but keeps the network's endpoint of `shop-web-1` until it is
    force-disconnected (`clears`), or for good."""

    def __init__(self, clears: bool) -> None:
        self.clears = clears
        self.stale = True
        self.calls: list[tuple[Any, ...]] = []

    async def stop(self, container: str, grace: int) -> None:
        self.calls.append(("stop", container))

    async def remove_container(self, container: str, volumes: bool = False) -> None:
        self.calls.append(("remove", container))

    async def remove_network(self, name: str) -> None:
        self.calls.append(("remove_network", name))
        if self.stale:
            raise Conflict(f"Docker: error while removing network: network {name} id 1 has "
                           "active endpoints")  # fmt: skip

    async def disconnect(self, endpoint: str, network: str, force: bool = False) -> None:
        self.calls.append(("disconnect", endpoint, network, force))
        if self.clears:
            self.stale = False

    async def inspect_network(self, name: str) -> Network:
        return Network("n1", name, {}, ())  # Docker lists no container: the endpoint is stale

    async def inspect_volume(self, name: str) -> Volume:
        return Volume(name, {})

    async def remove_volume(self, name: str) -> None:
        self.calls.append(("remove_volume", name))


def _down(docker: StaleDocker) -> list[WorkflowEvent]:
    project = load_project(
        "shop", {"services": {"web": {"image": "x"}}, "volumes": {"data": {}}}
    ).project
    events: list[WorkflowEvent] = []

    async def containers(name: str, everyone: bool) -> list[Container]:
        return [WEB]

    teardown = Teardown(docker, Owners("dxf-me"), containers, stop_grace)  # type: ignore[arg-type]
    teardown.network_wait = 0  # the fake never lets go by itself: no need to wait
    anyio.run(teardown.down, project, True, events.append, True)
    return events


def test_a_stale_endpoint_of_a_removed_container_is_dropped_and_down_succeeds() -> None:
    docker = StaleDocker(clears=True)
    events = _down(docker)
    assert ("disconnect", "shop-web-1", NETWORK, True) in docker.calls
    assert [e.detail for e in events if e.action == "network"][-1] == f"removed {NETWORK}"
    assert events[-1].action == "done" and events[-1].detail is None


def test_a_network_docker_keeps_is_left_named_and_the_rest_goes() -> None:
    docker = StaleDocker(clears=False)
    events = _down(docker)
    done = events[-1]
    assert done.action == "done" and done.detail is not None
    assert f"network {NETWORK} left in place" in done.detail
    assert "stale endpoint" in done.detail and "restarting dockerd" in done.detail
    assert ("remove", "c1") in docker.calls and ("remove_volume", "shop_data") in docker.calls


class EndpointInTheWay:
    """Starting a container fails once: Docker kept an endpoint of its name."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def start(self, container: str) -> None:
        self.calls.append(("start", container))
        if len(self.calls) == 1:
            raise Conflict(
                "Docker: endpoint with name shop-web-1 already exists in network shop_default"
            )

    async def disconnect(self, endpoint: str, network: str, force: bool = False) -> None:
        self.calls.append(("disconnect", endpoint, network, force))


def test_up_drops_a_stale_endpoint_in_the_way_of_a_container() -> None:
    docker = EndpointInTheWay()
    orchestrator = Orchestrator(docker)  # type: ignore[arg-type]
    anyio.run(orchestrator._start_clearing, "c1")
    assert docker.calls == [
        ("start", "c1"), ("disconnect", "shop-web-1", NETWORK, True), ("start", "c1"),
    ]  # fmt: skip
