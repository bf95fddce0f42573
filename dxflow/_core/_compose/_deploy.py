"""``deploy`` with its aliases folded in: ``scale``, ``mem_limit``, ``cpus`` and ``gpus``."""

from __future__ import annotations

from typing import Any, TypeVar

from ..._models._compose import Deploy, DeviceRequest, Limits, Reservations
from ._errors import child, invalid, item
from ._values import (
    as_bytes,
    as_float,
    as_int,
    as_str,
    as_str_list,
    as_str_map,
    expect,
    expect_list,
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
    return Deploy(
        replicas=1 if replicas is None else replicas,
        limits=Limits(cpus=cpus, memory=memory, pids=optional(limits, "pids", lim_path, as_int)),
        reservations=Reservations(
            cpus=optional(reservations, "cpus", res_path, as_float),
            memory=optional(reservations, "memory", res_path, as_bytes),
            devices=[*(devices or []), *(gpus or [])],
        ),
    )
