"""The workflow corpus that can run on Swarm runs under both runtimes with the same outcome.

Each case of `CORPUS` is one Compose document. It is run on the `docker` runtime (the
machine's main Docker Engine) and on the `swarm` runtime (the three-node test bed), and
what came out is put in a runtime-neutral form (`Outcome`): per service its state, the
exit code of a one-shot and the number of running replicas; the log lines and exec
output the case selects; whether each dependency gate held (the dependent was created
only after its dependency was healthy or done); and how `up` failed, if it did. The two
outcomes must be equal, and equal to what the case expects (so that two runtimes broken
the same way do not pass).

Swarm-only keys are given where Swarm needs them and the docker runtime ignores them:
`endpoint_mode: dnsrr` (this kernel has no IPVS) and, for a service the test `exec`s
into, a placement on the manager (exec reaches the tasks of the engine's own node).
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

import dxflow
from dxflow import ApiError, InvalidRequest, WorkflowFailed
from dxflow._models import WorkflowEvent
from tests.conftest import remove_project
from tests.docker.images import BUSYBOX_IMAGE
from tests.testbed.swarm import SwarmBed

pytestmark = pytest.mark.timeout(300)

IMAGE = BUSYBOX_IMAGE
RUNTIMES = ("docker", "swarm")
ON_MANAGER = {"constraints": ["node.role == manager"]}
"""Where `exec` reaches a swarm task; the docker runtime ignores it (a cluster key)."""


def service(
    command: str, replicas: int = 1, exec_here: bool = False, **keys: Any
) -> dict[str, Any]:
    deploy: dict[str, Any] = {"replicas": replicas, "endpoint_mode": "dnsrr"}
    if exec_here:
        deploy["placement"] = ON_MANAGER
    # sh as pid 1 ignores SIGTERM: a short grace period keeps every `down` quick.
    return {"image": IMAGE, "command": ["sh", "-c", command], "deploy": deploy,
            "stop_grace_period": "1s", **keys}  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    compose: dict[str, Any]
    expected: dict[str, Any]
    """The outcome both runtimes must reach (see `outcome`)."""
    env: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    """service -> a pattern: the lines of its logs that match it, counted."""
    execs: dict[str, list[str]] = field(default_factory=dict)
    gates: list[tuple[str, str, str]] = field(default_factory=list)
    """(dependency, the event its gate gives, dependent)."""
    again: bool = False
    """Bring it down (volumes kept) and up again before looking."""


# -- the corpus ---------------------------------------------------------------------------

_SERVER = "mkdir /w; echo served-by-name > /w/page; httpd -f -p 8080 -h /w"
_CLIENT = (
    "while true; do wget -q -O - http://server:8080/page && break; sleep 0.5; done; sleep 3600"
)

_DB = "sleep 3; mkdir /w; echo ready > /w/state; httpd -f -p 8080 -h /w"  # healthy after ~3 s
_DB_CHECK = ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/state"]
# A few quick tries (DNS of a task just started elsewhere), well under db's 3 s: a gate
# that did not hold prints not-ready.
_WEB = (
    "for i in 1 2 3; do wget -q -O - http://db:8080/state && break; sleep 0.3; done"
    " || echo not-ready; sleep 3600"
)

_COUNT_RUNS = (
    "echo run >> /data/runs; n=0; while read -r l; do n=$$((n+1)); done < /data/runs;"
    " echo runs=$$n; sleep 3600"
)

CORPUS = [
    Case(
        "network",
        {
            "services": {
                "server": service(_SERVER),
                "client": service(_CLIENT, depends_on=["server"]),
            }
        },
        logs={"client": r"served"},
        expected={
            "services": {"server": ("running", None, 1), "client": ("running", None, 1)},
            "logs": {"client": {"served-by-name": 1}},
        },
    ),
    Case(
        "environment",
        {
            "services": {
                "app": service(
                    'echo "$$GREETING, $$TARGET / $$SHOUT / ${IN_COMMAND}"; sleep 3600',
                    exec_here=True,
                    environment={
                        "GREETING": "${GREETING}",
                        "TARGET": "${TARGET:-world}",
                        "SHOUT": "${GREETING}!",
                        "FIXED": "as written",
                    },
                )
            }
        },
        env={"GREETING": "hi", "IN_COMMAND": "cmd"},
        logs={"app": r"/"},
        execs={"app": ["sh", "-c", "echo $GREETING $TARGET $SHOUT $FIXED"]},
        expected={
            "services": {"app": ("running", None, 1)},
            "logs": {"app": {"hi, world / hi! / cmd": 1}},
            "exec": {"app": (0, "hi world hi! as written")},
        },
    ),
    Case(
        "secret-and-config",
        {
            "services": {
                "app": service(
                    'echo "secret=$$(cat /run/secrets/token) config=$$(cat /site.conf)";'
                    " sleep 3600",
                    exec_here=True,
                    secrets=["token"],
                    configs=[{"source": "site", "target": "/site.conf"}],
                )
            },
            "secrets": {"token": {"environment": "TOKEN"}},
            "configs": {"site": {"content": "listen ${PORT}"}},
        },
        env={"TOKEN": "s3cret", "PORT": "8080"},
        logs={"app": r"secret="},
        execs={"app": ["cat", "/run/secrets/token"]},
        expected={
            "services": {"app": ("running", None, 1)},
            "logs": {"app": {"secret=s3cret config=listen 8080": 1}},
            "exec": {"app": (0, "s3cret")},
        },
    ),
    Case(
        "healthcheck-gate",
        {
            "services": {
                "db": service(
                    _DB, healthcheck={"test": _DB_CHECK, "interval": "500ms", "retries": 60}
                ),
                "web": service(_WEB, depends_on={"db": {"condition": "service_healthy"}}),
            }
        },
        logs={"web": r"ready"},
        gates=[("db", "healthy", "web")],
        expected={
            "services": {"db": ("running", None, 1), "web": ("running", None, 1)},
            "logs": {"web": {"ready": 1}},
            "gates": {"db->web": True},
        },
    ),
    Case(
        "job-gate",
        {
            "services": {
                "migrate": {
                    "image": IMAGE,
                    "command": ["sh", "-c", "sleep 1; echo migrated"],
                    "restart": "no",
                },
                "app": service(
                    "echo app started; sleep 3600",
                    depends_on={"migrate": {"condition": "service_completed_successfully"}},
                ),
            }
        },
        logs={"migrate": r"migrated", "app": r"started"},
        gates=[("migrate", "exited", "app")],
        expected={
            "services": {"migrate": ("exited", 0, 0), "app": ("running", None, 1)},
            "logs": {"migrate": {"migrated": 1}, "app": {"app started": 1}},
            "gates": {"migrate->app": True},
        },
    ),
    Case(
        "failed-job",
        {
            "services": {
                "migrate": {
                    "image": IMAGE,
                    "command": ["sh", "-c", "echo failing; exit 3"],
                    "restart": "no",
                },
                "app": service(
                    "sleep 3600",
                    depends_on={"migrate": {"condition": "service_completed_successfully"}},
                ),
            }
        },
        expected={
            "up": ("WorkflowFailed", 3),
            # A failed `up` removes what it made (keep_on_failure=False), on both.
            "services": {"migrate": ("missing", None, 0), "app": ("missing", None, 0)},
        },
    ),
    Case(
        "replicas",
        {"services": {"web": service("echo replica up; sleep 3600", replicas=3)}},
        logs={"web": r"replica"},
        expected={
            "services": {"web": ("running", None, 3)},
            "logs": {"web": {"replica up": 3}},
        },
    ),
    Case(
        "named-volume",
        {
            "services": {"keeper": service(_COUNT_RUNS, exec_here=True, volumes=["data:/data"])},
            "volumes": {"data": {}},
        },
        again=True,
        logs={"keeper": r"runs="},
        execs={"keeper": ["cat", "/data/runs"]},
        expected={
            "services": {"keeper": ("running", None, 1)},
            "logs": {"keeper": {"runs=2": 1}},  # the volume outlived the first containers
            "exec": {"keeper": (0, "run\nrun")},
        },
    ),
]


# -- the outcome --------------------------------------------------------------------------


def outcome(
    wf: Any, case: Case, events: list[WorkflowEvent], failure: ApiError | None
) -> dict[str, Any]:
    """What a run came to, in terms both runtimes share."""
    status = wf.status()
    found: dict[str, Any] = {
        "services": {
            s.name: (s.state, s.exit_code if _one_shot(case, s.name) else None, _running(s))
            for s in status.services
        }
    }
    if failure is not None:
        found["up"] = (type(failure).__name__, failure.details.get("exit_code"))
    if case.logs:
        found["logs"] = {
            name: dict(Counter(
                line.line.strip() for line in wf.logs(service=name)
                if re.search(pattern, line.line)
            ))
            for name, pattern in case.logs.items()
        }  # fmt: skip
    if case.execs:
        found["exec"] = {}
        for name, cmd in case.execs.items():
            result = wf.exec(name, cmd)
            found["exec"][name] = (result.exit_code, result.output.strip())
    if case.gates:
        order: list[tuple[str, str | None]] = [(e.action, e.service) for e in events]
        found["gates"] = {
            f"{dependency}->{dependent}": _before(order, (gate, dependency), dependent)
            for dependency, gate, dependent in case.gates
        }
    return found


def _one_shot(case: Case, name: str) -> bool:
    return bool(case.compose["services"][name].get("restart") == "no")


def _running(service: Any) -> int:
    """The running replicas: the swarm runtime counts tasks, the docker one containers."""
    if service.running is not None:
        return int(service.running)
    return sum(1 for c in service.containers if c.state == "running")


def _before(order: list[tuple[str, str | None]], gate: tuple[str, str], dependent: str) -> bool:
    """The gate's event came, and came before the dependent was first created."""
    created = [
        i for i, (action, name) in enumerate(order) if (action, name) == ("creating", dependent)
    ]
    return gate in order and bool(created) and order.index(gate) < created[0]


def settled(
    look: Callable[[], dict[str, Any]], expected: dict[str, Any], within: float = 60
) -> dict[str, Any]:
    """The outcome once it is what is expected, or the last one seen after `within` s
    (logs and replicas come a moment after `up`, on either runtime)."""
    deadline = time.monotonic() + within
    while True:
        found = look()
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def run(engine: Any, project: str, case: Case, runtime: str) -> dict[str, Any]:
    wf = engine.workflows.create(project, case.compose, env=case.env, runtime=runtime)
    assert wf.info.runtime == runtime
    events: list[WorkflowEvent] = []
    failure: ApiError | None = None
    try:
        wf.up(timeout=120, progress=events.append)
        if case.again:
            wf.down()
            events.clear()
            wf.up(timeout=120, progress=events.append)
    except WorkflowFailed as exc:
        failure = exc
    return settled(lambda: outcome(wf, case, events, failure), case.expected)


# -- engines ------------------------------------------------------------------------------

_numbers = iter(range(10_000))


@pytest.fixture
def project() -> str:
    return f"dxc{os.getpid()}-{next(_numbers)}"


@pytest.fixture
def engines(
    swarm: SwarmBed, docker_client: docker.DockerClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, project: str,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """runtime -> an in-process (MASTER) engine: "docker" on the machine's main Docker
    Engine, "swarm" on the bed's manager. Every workflow left is brought down and removed
    on both, and whatever the project left on the main engine after that goes too."""
    monkeypatch.delenv("DXFLOW_DOCKER_HOST", raising=False)
    on_docker = dxflow.Engine(home=tmp_path / "docker")
    monkeypatch.setenv("DXFLOW_DOCKER_HOST", swarm.manager.url)
    on_swarm = dxflow.Engine(home=tmp_path / "swarm")
    opened = {"docker": on_docker, "swarm": on_swarm}
    try:
        yield opened
    finally:
        for engine in opened.values():
            for wf in engine.workflows.list():
                wf.down(volumes=True)
                wf.remove()
            engine.close()
        remove_project(docker_client, project)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_a_workflow_has_the_same_outcome_under_both_runtimes(
    engines: dict[str, Any], project: str, case: Case
) -> None:
    outcomes = {runtime: run(engines[runtime], project, case, runtime) for runtime in RUNTIMES}
    assert outcomes["swarm"] == outcomes["docker"]
    assert outcomes["docker"] == case.expected


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "privileged": ({"privileged": True}, r"services\.web\.privileged"),
    "host-network": ({"network_mode": "host"}, r"services\.web\.network_mode"),
    "devices": ({"devices": ["/dev/null:/dev/null"]}, r"services\.web\.devices"),
}


@pytest.mark.parametrize("key", list(REFUSED))
def test_a_key_swarm_refuses_is_accepted_by_docker_and_refused_by_swarm_at_create(
    engines: dict[str, Any], project: str, key: str
) -> None:
    extra, path = REFUSED[key]
    compose = {"services": {"web": {**service("sleep 3600"), **extra}}}
    accepted = engines["docker"].workflows.create(project, compose, runtime="docker")
    assert accepted.info.runtime == "docker"
    with pytest.raises(InvalidRequest, match=path) as refused:
        engines["swarm"].workflows.create(project, compose, runtime="swarm")
    assert "runtime swarm" in str(refused.value)
    assert project not in [w.name for w in engines["swarm"].workflows.list()]


_SWARM_KEEPS_VOLUMES = (
    "runtime swarm: down(volumes=True) leaves the named volumes on the nodes (SwarmRuntime."
    "down ignores `volumes`); a Swarm volume is node-local, made by whichever node ran a "
    "task, and the manager's API cannot list or remove a worker's volumes"
)


@pytest.mark.parametrize(
    "runtime",
    ["docker", pytest.param("swarm", marks=pytest.mark.xfail(reason=_SWARM_KEEPS_VOLUMES,
                                                             strict=True))],
)  # fmt: skip
def test_down_with_volumes_starts_the_named_volume_afresh(
    engines: dict[str, Any], project: str, runtime: str
) -> None:
    case = next(c for c in CORPUS if c.name == "named-volume")
    wf = engines[runtime].workflows.create(project, case.compose, runtime=runtime)
    wf.up(timeout=120)
    wf.down(volumes=True)
    wf.up(timeout=120)
    expected = {**case.expected, "logs": {"keeper": {"runs=1": 1}}, "exec": {"keeper": (0, "run")}}
    assert settled(lambda: outcome(wf, case, [], None), expected, within=20) == expected
