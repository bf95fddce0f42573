"""What the swarm runtime refuses or reports as stuck: keys a non-MASTER key may not use
on a cluster, a manager too old for jobs, tasks no node can run (a missing image, a
placement nothing satisfies) and a failed one-shot job. Each message names the Compose
key, the nodes and the fix."""

from __future__ import annotations

import re

from ..._exceptions import WorkflowFailed
from ..._models import ComposeProject
from ._swarm_view import Snapshot, service_name

__all__ = ["binds", "failed_job", "older", "raise_failed_job", "raise_stuck", "volume_names"]

_MISSING_IMAGE = re.compile(r"No such image|pull access denied|manifest unknown|not found", re.I)
_NO_NODE = "no suitable node"


def binds(project: ComposeProject) -> list[str]:
    """A bind names a path on whichever node runs the task, where this engine's policy
    roots mean nothing (another node's engine home, its Docker socket): MASTER's only."""
    return [
        f"services.{name}.volumes[{index}]: a bind of {mount.source!r} on runtime swarm "
        "reaches that path on every node, which only a MASTER key may do; use a named "
        "volume, a secret or a config, or the object store"
        for name, service in sorted(project.services.items())
        for index, mount in enumerate(service.volumes)
        if mount.type == "bind"
    ]


def volume_names(project: ComposeProject) -> list[str]:
    """A named volume is made by each node under the stack's name on first use. One that
    names an existing volume (external, or another `name`) would mount whatever volume of
    that name the node running the task has, another engine's or workflow's: the manager
    cannot see a worker's volumes to check their owner, so only a MASTER key may."""
    used = {m.source for s in project.services.values() for m in s.volumes if m.type == "volume"}
    found = []
    for key, volume in sorted(project.volumes.items()):
        if key not in used:
            continue
        if volume.external:
            found.append(f"volumes.{key}.external: an external volume on runtime swarm")
        elif volume.name != f"{project.name}_{key}":
            found.append(f"volumes.{key}.name: {volume.name!r} on runtime swarm")
    return [
        f"{text} is whatever volume of that name the node running the task has, which only "
        "a MASTER key may reach; leave the volume unnamed (the stack names it)"
        for text in found
    ]


def older(version: str, than: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split(".") if p.isdigit())

    return parts(version) < parts(than)


def raise_stuck(project: ComposeProject, name: str, seen: Snapshot, registry: str = "") -> None:
    """A task rejected for a missing image, or pending with no node to take it.

    A node that lacks an image tries to pull it, logs a failed pull, and its task is
    rejected with Docker's "No such image: REF" (measured with a registry that lacks the
    image, whose own answer is "manifest unknown"); the other patterns cover Docker's
    other wordings of it."""
    ids = {s.id for s in seen.services.values() if service_name(s) == name}
    tasks = [t for t in seen.tasks if t.service_id in ids]
    rejected = [t for t in tasks if t.state == "rejected" and _MISSING_IMAGE.search(t.error or "")]
    on = [seen.nodes.get(t.node_id or "") for t in rejected]
    missing = sorted({node.hostname for node in on if node is not None})
    if missing:
        image = project.services[name].image
        where = (
            f"push it to a registry they pull from (the engine's `registry` is {registry})"
            if registry
            else "set `registry` in the engine config and push it there"
        )
        raise WorkflowFailed(
            f"services.{name}.image: {image!r} is not on node(s) {', '.join(missing)}, and "
            f"they cannot pull it ({rejected[-1].error}): {where}, or load it onto each "
            f"node (`docker save {image} | docker -H NODE load`)",
            service=name, nodes=missing,
        )  # fmt: skip
    pending = [t for t in tasks if t.state == "pending" and _NO_NODE in (t.error or "")]
    if pending:
        nodes = ", ".join(
            f"{n.hostname} ({n.state}, {n.availability}"
            + "".join(f", {k}={v}" for k, v in sorted(n.labels.items())) + ")"
            for n in seen.nodes.values()
        )  # fmt: skip
        raise WorkflowFailed(
            f"services.{name}.deploy.placement: no node can take its tasks "
            f"({pending[0].error}); the nodes: {nodes}. Change the constraints, or label a "
            "node to match (`docker node update --label-add KEY=VALUE NODE`)",
            service=name,
        )


def raise_failed_job(name: str, seen: Snapshot) -> None:
    ids = {s.id for s in seen.services.values() if service_name(s) == name}
    failed = [t for t in seen.tasks if t.service_id in ids and t.state == "failed"]
    if failed:
        raise failed_job(name, failed[-1].exit_code)


def failed_job(name: str, code: int | None) -> WorkflowFailed:
    return WorkflowFailed(
        f"services.{name}: the one-shot job failed (exit code {code}); what depends on it "
        "was not started. See logs(service) for why",
        service=name, exit_code=code,
    )  # fmt: skip
