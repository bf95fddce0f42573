"""The same Compose workflow on a Docker Swarm: gates, a one-shot job, replicas over the
nodes, scale without restarts, logs, down.

    DXFLOW_DOCKER_HOST=unix:///path/to/manager.sock python examples/swarm.py [IMAGE]

The engine's Docker Engine must be a swarm manager (`docker swarm init`); IMAGE (default
busybox) must be on every node or in a registry they pull from. The services use
`endpoint_mode: dnsrr`, which works on kernels without IPVS too. See docs/swarm.md.
"""

from __future__ import annotations

import sys

import dxflow
from dxflow.models import WorkflowStatus

IMAGE = sys.argv[1] if len(sys.argv) > 1 else "busybox"


def compose(image: str) -> dict[str, object]:
    ready = {"test": ["CMD-SHELL", "test -f /ready"], "interval": "500ms", "retries": 60}
    return {
        "services": {
            "db": {
                "image": image,
                "command": ["sh", "-c", "sleep 1; echo > /ready; sleep 3600"],
                "healthcheck": ready,
                "deploy": {"endpoint_mode": "dnsrr"},
            },
            "migrate": {  # a one-shot: Swarm runs it as a job, once, after db is healthy
                "image": image,
                "command": ["echo", "schema migrated"],
                "restart": "no",
                "depends_on": {"db": {"condition": "service_healthy"}},
            },
            "worker": {  # started only once the migration finished with exit code 0
                "image": image,
                "command": ["sh", "-c", "echo worker started; sleep 3600"],
                "mem_limit": "64m",
                "deploy": {"replicas": 3, "endpoint_mode": "dnsrr"},
                "depends_on": {"migrate": {"condition": "service_completed_successfully"}},
            },
        }
    }


def show(status: WorkflowStatus) -> None:
    for service in status.services:
        print(f"{service.name}: {service.state}, {service.running}/{service.desired} running")
        for task in service.tasks:
            print(f"  slot {task.slot} on {task.node}: {task.state}")


def running(status: WorkflowStatus, name: str) -> set[str]:
    return {t.id for s in status.services if s.name == name for t in s.tasks
            if t.state == "running"}  # fmt: skip


def main() -> None:
    with dxflow.Engine() as engine:
        wf = engine.workflows.create("swarm-demo", compose(IMAGE), runtime="swarm", replace=True)
        try:
            wf.up(progress=lambda e: print(f"  {e.action} {e.service or ''}"))
            show(wf.status())
            kept = running(wf.status(), "worker")
            now = running(wf.scale("worker", 6), "worker")
            print(f"scaled worker to 6: the {len(kept & now)} tasks of before still run")
            for line in wf.logs(service="migrate"):
                print(f"migrate said: {line.line}")
        finally:
            wf.down()
            wf.remove()
        print("down: services, networks, secrets and configs removed")


if __name__ == "__main__":
    main()
