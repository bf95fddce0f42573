"""The Swarm test bed (tests/testbed/swarm.py) as pytest fixtures.

- `swarm_bed` (session): a started 3-node `SwarmBed` with the busybox test image loaded
  on every node; stopped (everything removed) at the session's end. Skipped only when
  `dockerd` or `nsenter` is missing; a machine without root fails (`testbed_ready`).
- `swarm` (per test): the same bed, clean: no partition, every node Ready, and after the
  test no service (so no stack), task, container, secret, config or non-default network
  left on any node.
- `swarm_registry_bed` (session, started only when a test asks for it): a second bed,
  `SwarmBed(registry=True)` on its own fabric: a registry on node1 (`bed.registry`) and
  nodes that pull from it; the busybox test image only on the manager (builds run
  there). Skipped when /usr/bin/docker-registry is missing (scripts/setup.sh --dev).
- `swarm_registry` (per test): that bed, clean as `swarm`, and with no image but the
  busybox test image on any node (so a test sees what its nodes pulled).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.docker.images import BUSYBOX_IMAGE
from tests.testbed.fixtures import testbed_ready
from tests.testbed.netns import wait_until
from tests.testbed.swarm import REGISTRY_BINARY, SwarmBed, has_registry

__all__ = ["swarm", "swarm_bed", "swarm_registry", "swarm_registry_bed", "testbed_ready"]

DEFAULT_NETWORKS = {"ingress", "bridge", "host", "none", "docker_gwbridge"}


def _need_tools() -> None:
    missing = [tool for tool in ("dockerd", "nsenter", "unshare") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the Swarm test bed needs {', '.join(missing)} (apt-get install docker.io)")


@pytest.fixture(scope="session")
def swarm_bed(testbed_ready: None, docker_ready: None) -> Iterator[SwarmBed]:
    _need_tools()
    bed = SwarmBed()
    try:
        bed.start(3)
        bed.load_image(BUSYBOX_IMAGE)
        yield bed
    finally:
        bed.stop()


@pytest.fixture
def swarm(swarm_bed: SwarmBed) -> Iterator[SwarmBed]:
    make_clean(swarm_bed)
    yield swarm_bed
    make_clean(swarm_bed)


@pytest.fixture(scope="session")
def swarm_registry_bed(testbed_ready: None, docker_ready: None) -> Iterator[SwarmBed]:
    _need_tools()
    if not has_registry():
        pytest.skip(f"the registry tests need {REGISTRY_BINARY} (apt-get install docker-registry)")
    bed = SwarmBed(subnet="10.213.9", registry=True)  # a fabric of its own
    try:
        bed.start(3)
        bed.load_image(BUSYBOX_IMAGE, nodes=[bed.manager])
        yield bed
    finally:
        bed.stop()


@pytest.fixture
def swarm_registry(swarm_registry_bed: SwarmBed) -> Iterator[SwarmBed]:
    bed = swarm_registry_bed
    make_clean(bed)
    remove_images(bed, keep={BUSYBOX_IMAGE})
    yield bed
    make_clean(bed)
    remove_images(bed, keep={BUSYBOX_IMAGE})


def make_clean(bed: SwarmBed, timeout: float = 30) -> None:
    """Heal every partition, wait for every node Ready, remove what a test made."""
    bed.heal()
    bed.wait_ready(timeout=timeout)
    api = bed.client(bed.manager)
    for service in api.services():
        with contextlib.suppress(Exception):  # gone already: removed by a stack's removal
            api.remove_service(service["ID"])
    # Removing the containers at once, not waiting for each agent to stop its tasks,
    # saves about 1.5 s; the manager still takes ~3 s to drop the tasks from its list.
    for node in bed.nodes:
        _remove_containers(bed.client(node))
    # A finished job's task (done or failed) outlives its removed service in Docker 20.10
    # (never reaped): it runs nothing and holds nothing, so it is not waited for.
    wait_until(lambda: not _live_tasks(api), timeout, 0.1, "the swarm's tasks are gone")
    for secret in api.secrets():
        api.remove_secret(secret["ID"])
    for config in api.configs():
        api.remove_config(config["ID"])
    for node in bed.nodes:
        _remove_networks(bed.client(node))
    # A network goes on each node only once the manager's removal reached it.
    wait_until(lambda: all(not _own_networks(bed.client(n)) for n in bed.nodes),
               timeout, 0.1, "the networks are gone on every node")  # fmt: skip


def remove_images(bed: SwarmBed, keep: set[str]) -> None:
    """Remove every image of every node but those tagged with a name in `keep` (no
    container runs then: `make_clean` first)."""
    for node in bed.nodes:
        api = bed.client(node)
        for image in api.images():
            if keep & set(image.get("RepoTags") or []):
                continue
            with contextlib.suppress(Exception):  # a parent of another: gone with it
                api.remove_image(image["Id"], force=True)


def _live_tasks(api: Any) -> list[Any]:
    ended = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
    return [t for t in api.tasks() if t["Status"]["State"] not in ended]


def _remove_containers(api: Any) -> None:
    """Every container of a node: tasks' and the plain ones a test ran on it."""
    for container in api.containers(all=True, quiet=True):
        with contextlib.suppress(Exception):  # removed meanwhile by its agent
            api.remove_container(container["Id"], force=True, v=True)


def _own_networks(api: Any) -> list[dict[str, Any]]:
    return [n for n in api.networks() if n["Name"] not in DEFAULT_NETWORKS]


def _remove_networks(api: Any) -> None:
    for network in _own_networks(api):
        with contextlib.suppress(Exception):  # a worker's copy of a swarm network: not its
            api.remove_network(network["Id"])
