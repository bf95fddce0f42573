"""``deploy`` with its aliases folded in: ``scale``, ``mem_limit``, ``cpus`` and ``gpus``.

The keys only a cluster honours (``mode``, ``placement``, ``update_config``,
``rollback_config``, ``restart_policy``, ``endpoint_mode``, ``labels``) are read and
checked here too, so a document is refused at `create` whichever runtime runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..._models._compose import (
    Deploy,
    DeployPlacement,
    DeviceRequest,
    Limits,
    PlacementPreference,
    Reservations,
    RestartPolicy,
    UpdateConfig,
)
from ._errors import child, invalid, item
from ._values import (
    as_bytes,
    as_duration,
    as_float,
    as_int,
    as_str,
    as_str_list,
    as_str_map,
    expect,
    expect_list,
    expect_mapping,
    optional,
)

__all__ = ["normalize_deploy"]

T = TypeVar("T")


def _count(value: Any, path: str) -> int | str:
    if isinstance(value, str) and value.strip() == "all":
        return "all"
    return as_int(value, path, minimum=1)


def _device(raw: dict[str, Any], path: str, *, gpu: bool) -> DeviceRequest:
    fields: dict[str, Any] = {
        "driver": optional(raw, "driver", path, as_str),
        "count": optional(raw, "count", path, _count),
        "device_ids": optional(raw, "device_ids", path, as_str_list) or [],
        "capabilities": optional(raw, "capabilities", path, as_str_list) or [],
        "options": optional(raw, "options", path, as_str_map) or {},
    }
    if fields["count"] is not None and fields["device_ids"]:
        raise invalid(path, "`count` and `device_ids` cannot be combined")
    if not fields["capabilities"]:
        if not gpu:
            raise invalid(path, "missing `capabilities` (e.g. [gpu])")
        fields["capabilities"] = ["gpu"]
    if fields["count"] is None and not fields["device_ids"]:
        fields["count"] = "all"  # the spec: no count and no ids reserves every matching device
    return DeviceRequest(**fields)


def _devices(value: Any, path: str, *, gpu: bool) -> list[DeviceRequest]:
    devices = []
    for index, entry in enumerate(expect_list(value, path)):
        where = item(path, index)
        expect(entry, where, ("mapping",))
        devices.append(_device(entry, where, gpu=gpu))
    return devices


def _gpus(value: Any, path: str) -> list[DeviceRequest]:
    """``gpus: all``, ``gpus: 2`` or a list of device requests (capabilities default [gpu])."""
    if isinstance(value, list):
        return _devices(value, path, gpu=True)
    return [DeviceRequest(count=_count(value, path), capabilities=["gpu"])]


def _fold(current: T | None, alias: T | None, path: str, canonical: str) -> T | None:
    """The value of a key and its alias, which must agree when both are set."""
    if alias is None:
        return current
    if current is not None and current != alias:
        raise invalid(path, f"conflicts with {canonical} ({alias!r} vs {current!r})")
    return alias


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def normalize_deploy(service: dict[str, Any], path: str) -> Deploy:
    """The service's replicas, limits and reservations, wherever the document put them."""
    deploy = _section(service, "deploy")
    where = child(path, "deploy")
    resources = _section(deploy, "resources")
    res_path = child(where, "resources")
    limits, reservations = _section(resources, "limits"), _section(resources, "reservations")
    lim_path, res_path = child(res_path, "limits"), child(res_path, "reservations")

    replicas = optional(deploy, "replicas", where, as_int)
    scale = optional(service, "scale", path, as_int)
    replicas = _fold(replicas, scale, child(path, "scale"), "deploy.replicas")
    memory = optional(limits, "memory", lim_path, as_bytes)
    memory = _fold(
        memory,
        optional(service, "mem_limit", path, as_bytes),
        child(path, "mem_limit"),
        "deploy.resources.limits.memory",
    )
    cpus = optional(limits, "cpus", lim_path, as_float)
    cpus = _fold(
        cpus,
        optional(service, "cpus", path, as_float),
        child(path, "cpus"),
        "deploy.resources.limits.cpus",
    )
    devices = optional(reservations, "devices", res_path, lambda v, p: _devices(v, p, gpu=False))
    gpus = optional(service, "gpus", path, _gpus)
    swarm = _swarm_keys(deploy, where)
    _check_mode(swarm, deploy, service, path)
    return Deploy(
        **swarm,
        replicas=1 if replicas is None else replicas,
        limits=Limits(cpus=cpus, memory=memory, pids=optional(limits, "pids", lim_path, as_int)),
        reservations=Reservations(
            cpus=optional(reservations, "cpus", res_path, as_float),
            memory=optional(reservations, "memory", res_path, as_bytes),
            devices=[*(devices or []), *(gpus or [])],
        ),
    )


_MODES = ("replicated", "global", "replicated-job", "global-job")
_FAILURE_ACTIONS = ("continue", "rollback", "pause")
_ROLLBACK_ACTIONS = ("continue", "pause")
_ORDERS = ("stop-first", "start-first")
_CONDITIONS = ("none", "on-failure", "any")
_ENDPOINT_MODES = ("vip", "dnsrr")


def _choice(allowed: tuple[str, ...]) -> Callable[[Any, str], str]:
    def read(value: Any, path: str) -> str:
        text = as_str(value, path).strip()
        if text not in allowed:
            raise invalid(path, f"unknown value {text!r} (supported: {', '.join(allowed)})")
        return text

    return read


def _ratio(value: Any, path: str) -> float:
    ratio = as_float(value, path)
    if ratio > 1:
        raise invalid(path, f"must be between 0 and 1, got {value!r}")
    return ratio


def _preference(value: Any, path: str) -> PlacementPreference:
    raw = expect_mapping(value, path)
    if "spread" not in raw:
        raise invalid(path, "missing `spread` (a node attribute, e.g. node.labels.zone)")
    return PlacementPreference(spread=as_str(raw["spread"], child(path, "spread")))


def _placement(value: Any, path: str) -> DeployPlacement:
    raw = expect_mapping(value, path)
    preferences = optional(raw, "preferences", path, expect_list) or []
    where = child(path, "preferences")
    return DeployPlacement(
        constraints=optional(raw, "constraints", path, as_str_list) or [],
        preferences=[_preference(p, item(where, i)) for i, p in enumerate(preferences)],
        max_replicas_per_node=optional(raw, "max_replicas_per_node", path, as_int),
    )


def _update(actions: tuple[str, ...]) -> Callable[[Any, str], UpdateConfig]:
    """The reader of ``update_config`` (or, with fewer failure actions, ``rollback_config``)."""

    def read(value: Any, path: str) -> UpdateConfig:
        raw = expect_mapping(value, path)
        fields: dict[str, Any] = {
            "parallelism": optional(raw, "parallelism", path, as_int),
            "delay": optional(raw, "delay", path, as_duration),
            "failure_action": optional(raw, "failure_action", path, _choice(actions)),
            "monitor": optional(raw, "monitor", path, as_duration),
            "max_failure_ratio": optional(raw, "max_failure_ratio", path, _ratio),
            "order": optional(raw, "order", path, _choice(_ORDERS)),
        }
        return UpdateConfig(**{k: v for k, v in fields.items() if v is not None})

    return read


def _restart_policy(value: Any, path: str) -> RestartPolicy:
    raw = expect_mapping(value, path)
    condition = optional(raw, "condition", path, _choice(_CONDITIONS))
    return RestartPolicy(
        condition=condition or "any",
        delay=optional(raw, "delay", path, as_duration),
        max_attempts=optional(raw, "max_attempts", path, as_int),
        window=optional(raw, "window", path, as_duration),
    )


def _swarm_keys(deploy: dict[str, Any], where: str) -> dict[str, Any]:
    """The cluster-only keys the document sets (the model's defaults stand for the rest)."""
    readers: dict[str, Callable[[Any, str], Any]] = {
        "mode": _choice(_MODES),
        "placement": _placement,
        "update_config": _update(_FAILURE_ACTIONS),
        "rollback_config": _update(_ROLLBACK_ACTIONS),
        "restart_policy": _restart_policy,
        "endpoint_mode": _choice(_ENDPOINT_MODES),
        "labels": as_str_map,
    }
    found = {key: optional(deploy, key, where, read) for key, read in readers.items()}
    return {key: value for key, value in found.items() if value is not None}


def _check_mode(
    swarm: dict[str, Any], deploy: dict[str, Any], service: dict[str, Any], path: str
) -> None:
    """A global service runs one task per node: a count of replicas contradicts it."""
    mode = swarm.get("mode", "replicated")
    if not mode.startswith("global"):
        return
    where = child(path, "deploy")
    for given, at in (
        ("replicas" in deploy, child(where, "replicas")),
        ("scale" in service, child(path, "scale")),
    ):
        if given:
            raise invalid(at, f"cannot be combined with `deploy.mode: {mode}` (one task per node)")
    placement = swarm.get("placement")
    if placement is not None and placement.max_replicas_per_node is not None:
        raise invalid(
            child(child(where, "placement"), "max_replicas_per_node"),
            f"cannot be combined with `deploy.mode: {mode}` (one task per node)",
        )
