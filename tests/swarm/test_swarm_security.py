"""What a non-MASTER key reaches through the swarm runtime, on the three-node test bed.

The attacker is a key with `DEFAULT_PERMISSIONS` and no policy of its own (the engine's
default, `baseline`), on an in-process engine whose Docker Engine is the bed's manager.
On one machine baseline lets it bind folders of the storage root, use its own networks
and volumes only, and never set the engine's labels (tests/security/); on a swarm:

- a bind names a path on every node (another node's engine home, its Docker socket), so
  any bind is refused, even of a storage folder (`_binds`);
- a named volume that names an existing volume (external, or another `name`) would
  mount whatever volume of that name the task's node has: refused (`_volume_names`);
- the policy runs before the runtime: privileged, host networks, extra capabilities and
  reserved labels are the same 403 as on one machine;
- another tool's or engine's stack of the same name is never touched: `up` is a 409, and
  status, logs, scale, exec and down see only this engine's services;
- a network that exists and is not this engine's (another stack's overlay) is a 403 at
  `up`, as on one machine;
- an external Swarm secret is refused by the loader, for every key;
- what the runtime makes (secrets, configs, services) carries this engine's id; a
  placement on the manager is allowed, and the task there is as confined as on one
  machine (no privilege, capability, bind or host namespace).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from dxflow import (
    DEFAULT_PERMISSIONS,
    Conflict,
    Engine,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow._transports._local import LocalTransport
from tests.docker.images import BUSYBOX_IMAGE
from tests.testbed.netns import wait_until
from tests.testbed.swarm import SwarmBed

pytestmark = pytest.mark.timeout(180)

IMAGE = BUSYBOX_IMAGE
STACK = "com.docker.stack.namespace"
ENGINE = "io.dxflow.engine"
ON_MANAGER = {"constraints": ["node.role == manager"]}


@pytest.fixture
def core(swarm: SwarmBed, tmp_path: Path) -> Iterator[EngineCore]:
    engine_core = EngineCore(load_config(tmp_path / "home", docker_host=swarm.manager.url))
    yield engine_core
    engine_core.close()


@pytest.fixture
def attacker(core: EngineCore, tmp_path: Path) -> Iterator[Engine]:
    """A key with the default permissions and the engine's default policy (baseline)."""
    pair = generate_key_pair(tmp_path / "keys" / "newcomer.pem", "ed25519")
    private = load_private_key(pair.private)
    core.keys.add("newcomer", private.public, DEFAULT_PERMISSIONS)
    with Engine(transport=LocalTransport(core, private, owns_core=False)) as engine:
        yield engine


@pytest.fixture
def master(core: EngineCore) -> Iterator[Engine]:
    with Engine(transport=LocalTransport(core, None, owns_core=False)) as engine:
        yield engine


def sleeper(**keys: Any) -> dict[str, Any]:
    return {"image": IMAGE, "command": ["sleep", "3600"], "stop_grace_period": "1s",
            "deploy": {"endpoint_mode": "dnsrr"}, **keys}  # fmt: skip


def compose_of(**keys: Any) -> dict[str, Any]:
    return {"services": {"s": sleeper(**keys)}}


def stored(engine: Engine) -> list[str]:
    return [w.name for w in engine.workflows.list()]


# -- binds and named volumes ----------------------------------------------------------------


def test_a_bind_is_refused_on_swarm_even_of_a_storage_folder(
    attacker: Engine, core: EngineCore, swarm: SwarmBed
) -> None:
    folder = core.config.storage_root / "shared"
    folder.mkdir(parents=True)
    compose = compose_of(volumes=[f"{folder}:/data"])
    on_one_machine = attacker.workflows.create("bound", compose, runtime="docker")
    on_one_machine.remove()  # baseline allows it on one machine
    with pytest.raises(InvalidRequest, match=r"services\.s\.volumes\[0\]") as refused:
        attacker.workflows.create("bound", compose, runtime="swarm")
    assert "only a MASTER key" in refused.value.message
    assert "bound" not in stored(attacker)
    assert not swarm.client().services()


@pytest.mark.parametrize(
    ("volume", "path"),
    [({"external": True, "name": "theirs"}, "volumes.v.external"),
     ({"name": "theirs"}, "volumes.v.name")],
    ids=["external", "named"],
)  # fmt: skip
def test_a_volume_naming_an_existing_one_is_refused_on_swarm_unless_master(
    attacker: Engine, master: Engine, volume: dict[str, Any], path: str
) -> None:
    compose = {"services": {"s": sleeper(volumes=["v:/data"])}, "volumes": {"v": volume}}
    with pytest.raises(InvalidRequest, match=path.replace(".", r"\.")):
        attacker.workflows.create("vols", compose, runtime="swarm")
    assert "vols" not in stored(attacker)
    own = {"services": {"s": sleeper(volumes=["v:/data"])}, "volumes": {"v": {}}}
    attacker.workflows.create("vols", own, runtime="swarm").remove()  # the stack's own: fine
    master.workflows.create("vols", compose, runtime="swarm").remove()  # MASTER may


# -- the policy runs before the runtime -----------------------------------------------------

POLICY = {
    "privileged": (compose_of(privileged=True), "services.s.privileged"),
    "host-network-mode": (compose_of(network_mode="host"), "services.s.network_mode"),
    "host-network": (
        {"services": {"s": sleeper(networks=["hostnet"])},
         "networks": {"hostnet": {"external": True, "name": "host"}}},
        "networks.hostnet.name",
    ),
    "cap-add": (compose_of(cap_add=["SYS_ADMIN"]), "services.s.cap_add[0]"),
    "labels": (compose_of(labels={ENGINE: "other"}), "services.s.labels.io.dxflow.engine"),
    "deploy-labels": (
        {"services": {"s": {**sleeper(), "deploy": {"endpoint_mode": "dnsrr",
                                                    "labels": {"io.dxflow.workflow": "x"}}}}},
        "services.s.deploy.labels.io.dxflow.workflow",
    ),
}  # fmt: skip


@pytest.mark.parametrize("attack", list(POLICY))
def test_the_policy_refuses_before_the_swarm_runtime_sees_it(
    attacker: Engine, swarm: SwarmBed, attack: str
) -> None:
    compose, path = POLICY[attack]
    with pytest.raises(PermissionDenied) as refused:
        attacker.workflows.create("attack", compose, runtime="swarm")
    assert path in refused.value.message and "(policy baseline)" in refused.value.message
    assert "attack" not in stored(attacker)
    assert not swarm.client().services()


@pytest.mark.parametrize("kind", ["secrets", "configs"])
def test_an_external_swarm_secret_or_config_is_refused_by_the_loader(
    attacker: Engine, master: Engine, swarm: SwarmBed, kind: str
) -> None:
    api = swarm.client()
    make = api.create_secret if kind == "secrets" else api.create_config
    make("other_token", b"their secret", labels={STACK: "other"})
    compose = {"services": {"s": sleeper(**{kind: ["token"]})},
               kind: {"token": {"external": True, "name": "other_token"}}}  # fmt: skip
    for engine in (attacker, master):
        with pytest.raises(InvalidRequest, match=rf"{kind}\.token\.external"):
            engine.workflows.create("steal", compose, runtime="swarm")
    assert "steal" not in stored(master)
    assert not api.services()


# -- another stack on the same swarm ----------------------------------------------------------


def _foreign_stack(api: Any) -> dict[str, Any]:
    """A stack `other` made through the Docker API, as `docker stack deploy` would."""
    task = docker.types.TaskTemplate(
        container_spec=docker.types.ContainerSpec(
            IMAGE, ["sh", "-c", "echo their-data; sleep 3600"], stop_grace_period=1_000_000_000
        ),
        placement=docker.types.Placement(constraints=ON_MANAGER["constraints"]),
    )
    ident = api.create_service(
        task, name="other_s", labels={STACK: "other"},
        endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
    )["ID"]  # fmt: skip

    def up() -> bool:
        return any(t["Status"]["State"] == "running" for t in api.tasks({"service": ident}))

    wait_until(up, 60, 0.2, "the foreign service runs")
    return dict(api.inspect_service(ident))


def test_another_stack_of_the_same_name_is_never_touched(attacker: Engine, swarm: SwarmBed) -> None:
    api = swarm.client()
    before = _foreign_stack(api)
    wf = attacker.workflows.create("other", compose_of(), runtime="swarm")
    with pytest.raises(Conflict, match="another tool or engine"):
        wf.up(timeout=60)
    status = {s.name: s for s in wf.status().services}
    assert status["s"].state == "missing" and not status["s"].tasks
    assert not [line for line in wf.logs() if "their-data" in line.line]
    with pytest.raises(Conflict, match="not up"):
        wf.scale("s", 0)
    with pytest.raises((Conflict, NotFound)):
        wf.exec("s", ["cat", "/etc/hostname"])
    wf.down()
    wf.remove()
    after = api.inspect_service(before["ID"])
    assert after["Version"] == before["Version"] and after["Spec"] == before["Spec"]
    running = [t for t in api.tasks({"service": before["ID"]}) if t["Status"]["State"] == "running"]
    assert len(running) == 1


def test_another_stacks_network_is_refused_at_up(attacker: Engine, swarm: SwarmBed) -> None:
    api = swarm.client()
    api.create_network("other_default", driver="overlay", attachable=True,
                       labels={STACK: "other"})  # fmt: skip
    compose = {"services": {"s": sleeper(networks=["theirs"])},
               "networks": {"theirs": {"external": True, "name": "other_default"}}}  # fmt: skip
    wf = attacker.workflows.create("joiner", compose, runtime="swarm")
    with pytest.raises(PermissionDenied, match=r"networks\.theirs"):
        wf.up(timeout=60)
    assert not api.services()
    wf.down()
    assert any(n["Name"] == "other_default" for n in api.networks())


# -- what the runtime makes, and where -----------------------------------------------------


def test_a_placement_on_the_manager_runs_as_confined_and_owned(
    attacker: Engine, core: EngineCore, swarm: SwarmBed
) -> None:
    compose = {
        "services": {"s": {**sleeper(secrets=["token"], configs=["site"]),
                           "deploy": {"endpoint_mode": "dnsrr", "placement": ON_MANAGER}}},
        "secrets": {"token": {"environment": "TOKEN"}},
        "configs": {"site": {"content": "listen 80"}},
    }  # fmt: skip
    wf = attacker.workflows.create("pinned", compose, env={"TOKEN": "mine"}, runtime="swarm")
    try:
        wf.up(timeout=120)
        task = next(t for t in wf.status().services[0].tasks if t.state == "running")
        assert task.node == swarm.manager.name
        assert wf.exec("s", ["cat", "/run/secrets/token"]).output == "mine"
        api = swarm.client()
        made = [*api.services(), *api.secrets(), *api.configs()]
        assert len(made) == 3
        assert all(m["Spec"]["Labels"][ENGINE] == core.engine_id for m in made)
        assert all(m["Spec"]["Labels"][STACK] == "pinned" for m in made)
        host = api.inspect_container(task.container)["HostConfig"]
        assert not host["Privileged"] and not host["CapAdd"] and not host["Binds"]
        assert host["NetworkMode"] != "host" and host["PidMode"] == ""
        assert {m["Type"] for m in host.get("Mounts") or []} <= {"volume", "tmpfs"}
    finally:
        with contextlib.suppress(Exception):
            wf.down()
    assert not api.secrets() and not api.configs()
