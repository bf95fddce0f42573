"""Who owns a container, network or volume on a shared Docker Engine.

Every container, network and volume an engine creates carries its id as the label
``io.dxflow.engine``. An engine manages only what it owns, unless the caller is MASTER
(then a project is its name, as Compose has it). Made before ownership labels:

- a container without the label but with dxflow's ``io.dxflow.workflow`` label of the
  project is its engine's (dxflow made it, for a workflow of that name stored here);
- a network or volume without the label is the engine's when it carries the project's
  Compose label and not ``com.docker.compose.version``, which docker compose always sets
  and dxflow never did; an external one never is (label it to share it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._exceptions import Conflict, PermissionDenied
from .._docker import Container
from ._spec import COMPOSE_VERSION_LABEL, ENGINE_LABEL, PROJECT_LABEL, WORKFLOW_LABEL

__all__ = ["Owners", "made_by"]


def made_by(labels: Mapping[str, str]) -> str:
    """Who made a resource, in words, from its labels."""
    if ENGINE_LABEL in labels:
        return f"dxflow engine {labels[ENGINE_LABEL]}"
    if COMPOSE_VERSION_LABEL in labels:
        return "docker compose"
    if WORKFLOW_LABEL in labels:
        return "a dxflow engine (before ownership labels)"
    return "another tool"


class Owners:
    """The ownership rules of one engine."""

    def __init__(self, engine_id: str) -> None:
        self.engine_id = engine_id

    def owner(self, labels: Mapping[str, str], stored: bool) -> str | None:
        """The owning engine's id of a container; None: another tool or engine unknown.

        `stored`: the container's project is a workflow of this engine.
        """
        if ENGINE_LABEL in labels:
            return labels[ENGINE_LABEL]
        if stored and WORKFLOW_LABEL in labels:
            return self.engine_id
        return None

    def owns(self, labels: Mapping[str, str], project: str) -> bool:
        """A container of `project` (a workflow of this engine) is this engine's."""
        owner = labels.get(ENGINE_LABEL)
        if owner is not None:
            return owner == self.engine_id
        return labels.get(WORKFLOW_LABEL) == project

    def owns_resource(self, labels: Mapping[str, str], project: str, external: bool) -> bool:
        """A network or volume `project` names is this engine's."""
        owner = labels.get(ENGINE_LABEL)
        if owner is not None:
            return owner == self.engine_id
        return (
            not external
            and labels.get(PROJECT_LABEL) == project
            and COMPOSE_VERSION_LABEL not in labels
        )

    def check_resource(
        self, everyone: bool, project: str, kind: str, key: str, spec: Any,
        labels: Mapping[str, str],
    ) -> None:  # fmt: skip
        """PermissionDenied unless the caller may use an existing network or volume
        (`labels`: the existing one's)."""
        if everyone or self.owns_resource(labels, project, spec.external):
            return
        raise PermissionDenied(
            f"{kind}s.{key}: the {kind} {spec.name!r} belongs to {made_by(labels)}, not this "
            f"engine; only a MASTER key may use it (an operator shares a {kind} by labelling "
            f"it {ENGINE_LABEL}={self.engine_id})",
            path=f"{kind}s.{key}",
        )

    def check_project(
        self, everyone: bool, project: str, found: list[Container]
    ) -> list[Container]:
        """The containers `up` may manage; Conflict when others' share the project name."""
        if everyone:
            return found
        foreign = [c for c in found if not self.owns(c.labels, project)]
        if foreign:
            labels = foreign[0].labels
            names = ", ".join(sorted(c.name for c in foreign)[:5])
            raise Conflict(
                f"the Compose project {project!r} on this Docker Engine has containers made "
                f"by {made_by(labels)} ({names}); this engine never touches them. Use another "
                "workflow name (it is the project name), or remove them with the tool that "
                "made them; a MASTER key may take the project over",
                workflow=project,
            )
        return found
