"""Placement: which agent a workflow goes to, and why every other one did not.

A pure choice over the agents' views (status, labels, the host facts of their last
heartbeat) and how many workflows each was given, so it is tested without a fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..._exceptions import Conflict
from ..._models import BridgeInfo, PlacementRequest

__all__ = ["choose"]

_GIB = 1 << 30


def _refusal(info: BridgeInfo, request: PlacementRequest) -> str | None:
    """Why `info` cannot take the workflow, or None."""
    if info.status != "connected":
        return f"{info.status}"
    if info.drained:
        return "drained"
    missing = [f"{k}={v}" for k, v in request.labels.items() if info.labels.get(k) != v]
    if missing:
        return f"no label {', '.join(missing)}"
    facts = info.facts
    if request.cpus is not None and (facts.cpus or 0) < request.cpus:
        return f"{facts.cpus or 0} CPUs < {request.cpus:g}"
    free = facts.memory_available if facts.memory_available is not None else facts.memory
    if request.memory is not None and (free or 0) < request.memory:
        return f"{(free or 0) / _GIB:.1f} GiB free < {request.memory / _GIB:.1f} GiB"
    if request.gpus and facts.gpus < request.gpus:
        return f"{facts.gpus} GPUs < {request.gpus}"
    return None


def _load(info: BridgeInfo) -> float:
    return (info.facts.load or 0.0) / max(info.facts.cpus or 1, 1)


def choose(
    infos: Sequence[BridgeInfo], request: PlacementRequest, placed: Mapping[str, int]
) -> tuple[str, dict[str, str]]:
    """The agent chosen, and why each other one was not (Conflict when none fits)."""
    refused: dict[str, str] = {}
    fit: list[BridgeInfo] = []
    for info in infos:
        why = _refusal(info, request)
        if why is None:
            fit.append(info)
        else:
            refused[info.name] = why
    if not fit:
        reasons = "; ".join(f"{name}: {why}" for name, why in refused.items()) or "no agents"
        raise Conflict(
            f"no agent can take the workflow {request.workflow!r} ({reasons}); relax the "
            "placement, undrain or add an agent",
            refused=refused,
        )

    def key(info: BridgeInfo) -> tuple[float, float, str]:
        count = float(placed.get(info.name, 0))
        if request.strategy == "spread":
            return (count, _load(info), info.name)
        if request.strategy == "pack":
            return (-count, _load(info), info.name)
        return (_load(info), count, info.name)

    chosen = min(fit, key=key)
    refused.update({i.name: f"not chosen ({request.strategy})" for i in fit if i is not chosen})
    return chosen.name, refused
