"""The Swarm test bed itself: nodes, scheduling, overlay networking, partitions."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import pytest
from docker import types

from tests.docker.images import BUSYBOX_IMAGE
from tests.testbed.netns import wait_until
from tests.testbed.swarm import SwarmBed, SwarmNode, has_ipvs

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TERMINAL = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}


def create_service(
    bed: SwarmBed,
    name: str,
    command: Sequence[str],
    *,
    replicas: int = 1,
    on: SwarmNode | None = None,
    networks: Sequence[str] = (),
    restart: Literal["none", "on-failure", "any"] = "any",
    endpoint_mode: str = "dnsrr",
) -> str:
    """A busybox service made with a full TaskTemplate (as the engine would fill it in:
    a later scale then restarts nothing); its id."""
    spec = types.ContainerSpec(
        BUSYBOX_IMAGE,
        command=list(command),
        stop_grace_period=1_000_000_000,  # ns: `sleep` ignores SIGTERM
        dns_config=types.DNSConfig(),
    )
    constraints = [f"node.id == {on.node_id}"] if on is not None else []
    template = types.TaskTemplate(
        spec,
        resources=types.Resources(),
        restart_policy=types.RestartPolicy(condition=restart, delay=500_000_000),
        placement=types.Placement(constraints=constraints),
        networks=[types.NetworkAttachmentConfig(network) for network in networks],
    )
    made = bed.client().create_service(
        template,
        name=name,
        mode=types.ServiceMode("replicated", replicas=replicas),
        endpoint_spec=types.EndpointSpec(mode=endpoint_mode),
    )
    return str(made["ID"])


def tasks(bed: SwarmBed, service: str) -> list[dict[str, Any]]:
    return list(bed.client().tasks(filters={"service": service}))


def wait_running(bed: SwarmBed, service: str, count: int, timeout: float = 30) -> list[Any]:
    def running() -> list[Any] | None:
        now = [t for t in tasks(bed, service) if t["Status"]["State"] == "running"]
        return now if len(now) == count else None

    try:
        found: list[Any] = wait_until(running, timeout, 0.1, f"{count} tasks of {service} run")
    except AssertionError as exc:
        states = [(t["Status"]["State"], t["Status"].get("Err")) for t in tasks(bed, service)]
        raise AssertionError(f"{exc}; tasks: {states}") from None
    return found


def test_three_nodes_ready_with_distinct_ids(swarm: SwarmBed) -> None:
    assert len(swarm.nodes) == 3
    assert swarm.node_states() == {"node1": "ready", "node2": "ready", "node3": "ready"}
    assert len({node.node_id for node in swarm.nodes}) == 3
    described = {n["ID"]: n for n in swarm.client().nodes()}
    for node in swarm.nodes:
        own = swarm.client(node).info()["Swarm"]
        assert own["NodeID"] == node.node_id
        assert own["LocalNodeState"] == "active"
        assert described[node.node_id]["Description"]["Hostname"] == node.name
        assert described[node.node_id]["Status"]["Addr"] == node.address
    roles = [described[node.node_id]["Spec"]["Role"] for node in swarm.nodes]
    assert roles == ["manager", "worker", "worker"]
    assert set(swarm.join_tokens) == {"Worker", "Manager"}
    for node in swarm.nodes:  # the image was loaded everywhere
        assert swarm.client(node).images(name=BUSYBOX_IMAGE)


def test_replicated_dnsrr_service_spreads_over_all_nodes(swarm: SwarmBed) -> None:
    create_service(swarm, "sleepers", ["sleep", "3600"], replicas=6)
    running = wait_running(swarm, "sleepers", 6)
    per_node = Counter(task["NodeID"] for task in running)
    assert set(per_node) == {node.node_id for node in swarm.nodes}, per_node
    for node in swarm.nodes:  # each node's own engine runs its share
        label = "com.docker.swarm.service.name=sleepers"
        containers = swarm.client(node).containers(filters={"label": label})
        assert len(containers) == per_node[node.node_id]


def test_overlay_dnsrr_name_resolves_and_answers_across_nodes(swarm: SwarmBed) -> None:
    node2, node3 = swarm.nodes[1], swarm.nodes[2]
    network = swarm.client().create_network("dxt-overlay", driver="overlay", attachable=True)
    create_service(swarm, "web", ["httpd", "-f", "-p", "80", "-h", "/www"],
                   on=node3, networks=[network["Id"]])  # fmt: skip
    wait_running(swarm, "web", 1)
    # The name reaches node2 by gossip: the probe retries for a while, then proves
    # resolution, ICMP and TCP (HTTP) from node2's task to node3's.
    probe = (
        "i=0; until busybox nslookup web; do i=$((i+1)); [ $i -ge 40 ] && exit 3; sleep 0.25;"
        " done; busybox ping -c 2 -W 2 web && wget -q -O - http://web/"
    )
    create_service(swarm, "probe", ["sh", "-c", probe], on=node2,
                   networks=[network["Id"]], restart="none")  # fmt: skip

    def finished() -> dict[str, Any] | None:
        done = [t for t in tasks(swarm, "probe") if t["Status"]["State"] in TERMINAL]
        return done[0] if done else None

    task = wait_until(finished, 45, 0.2, "the probe task on node2 finished")
    label = "com.docker.swarm.service.name=probe"
    container = swarm.client(node2).containers(all=True, filters={"label": label})[0]
    output = swarm.client(node2).logs(container["Id"]).decode(errors="replace")
    assert task["Status"]["State"] == "complete", (task["Status"], output)
    web_ip = wait_running(swarm, "web", 1)[0]["NetworksAttachments"][0]["Addresses"][0]
    assert web_ip.split("/")[0] in output  # nslookup answered with node3's task
    assert "hello from dxflow" in output


@pytest.mark.skipif(not has_ipvs(), reason="no IPVS in this kernel: no Swarm virtual IPs")
def test_vip_service_name_answers(swarm: SwarmBed) -> None:
    network = swarm.client().create_network("dxt-vip", driver="overlay", attachable=True)
    create_service(swarm, "webvip", ["httpd", "-f", "-p", "80", "-h", "/www"],
                   on=swarm.nodes[2], networks=[network["Id"]], endpoint_mode="vip")  # fmt: skip
    wait_running(swarm, "webvip", 1)
    create_service(swarm, "probevip", ["sh", "-c", "sleep 2; wget -q -O - http://webvip/"],
                   on=swarm.nodes[1], networks=[network["Id"]], restart="none")  # fmt: skip
    task = wait_until(
        lambda: [t for t in tasks(swarm, "probevip") if t["Status"]["State"] in TERMINAL],
        45, 0.2, "the VIP probe finished",
    )[0]  # fmt: skip
    assert task["Status"]["State"] == "complete", task["Status"]


def test_partitioned_worker_goes_down_and_comes_back(swarm: SwarmBed) -> None:
    node3 = swarm.nodes[2]
    began = time.monotonic()
    swarm.partition(node3)
    swarm.wait_state("down", [node3], timeout=40)
    down_after = time.monotonic() - began
    assert swarm.node_states()["node2"] == "ready"
    assert swarm.client(node3).ping()  # cut off, not dead: its dockerd still answers
    began = time.monotonic()
    swarm.heal(node3)
    swarm.wait_ready([node3], timeout=40)
    print(f"node3 down after {down_after:.1f} s; ready {time.monotonic() - began:.1f} s after heal")
