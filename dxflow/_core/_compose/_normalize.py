"""Per-key normalizers of a service: every short syntax to its long form, aliases folded."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..._models._compose import (
    Build,
    Dependency,
    Healthcheck,
    Service,
    ServiceFile,
    ServiceNetwork,
    Ulimit,
)
from ._deploy import normalize_deploy
from ._environment import EnvironmentSources, service_environment
from ._errors import child, invalid, item
from ._mounts import MountContext, normalize_tmpfs, normalize_volumes
from ._ports import normalize_expose, normalize_ports
from ._values import (
    as_bool,
    as_bytes,
    as_command,
    as_duration,
    as_int,
    as_mode,
    as_str,
    as_str_list,
    as_str_map,
    expect,
    expect_list,
    expect_mapping,
    key_values,
    named_entries,
    optional,
)

__all__ = ["ServiceContext", "normalize_service"]

Reader = Callable[[Any, str], Any]

_RESTART = re.compile(r"no|always|unless-stopped|on-failure(?::\d+)?")
_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
_HEALTH_KINDS = ("CMD", "CMD-SHELL", "NONE")
_REMOTE = ("http://", "https://", "git://", "git@", "ssh://", "github.com/")
_DURATIONS = ("interval", "timeout", "start_period", "start_interval")


@dataclass(frozen=True)
class ServiceContext:
    """What normalizing a service needs from the rest of the project."""

    working_dir: str
    environment: EnvironmentSources
    networks: Collection[str]
    volumes: Collection[str]
    secrets: Collection[str]
    configs: Collection[str]
    expand_user: Callable[[str], str]


def _restart(value: Any, path: str) -> str:
    text = as_str(value, path)
    if not _RESTART.fullmatch(text):
        supported = "no, always, on-failure, on-failure:N, unless-stopped"
        raise invalid(path, f"unknown restart policy {text!r} (supported: {supported})")
    return text


def _dependency(value: Any, path: str) -> Dependency:
    raw = expect_mapping(value, path)
    fields: dict[str, Any] = {}
    if "condition" in raw:
        condition = as_str(raw["condition"], child(path, "condition"))
        if condition not in _CONDITIONS:
            supported = ", ".join(_CONDITIONS)
            raise invalid(
                child(path, "condition"), f"bad condition {condition!r} (supported: {supported})"
            )
        fields["condition"] = condition
    for flag in ("required", "restart"):
        if flag in raw:
            fields[flag] = as_bool(raw[flag], child(path, flag))
    return Dependency(**fields)


def _depends_on(value: Any, path: str) -> dict[str, Dependency]:
    expect(value, path, ("list", "mapping"))
    if isinstance(value, list):
        return {name: Dependency() for name in as_str_list(value, path)}
    entries = named_entries(value, path)
    return {name: _dependency(v, child(path, name)) for name, v in entries.items()}


def _health_test(value: Any, path: str) -> list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise invalid(path, "empty health check command")
        return ["CMD-SHELL", value]
    test = as_str_list(value, path)
    if not test or test[0] not in _HEALTH_KINDS:
        raise invalid(path, "a list must start with CMD, CMD-SHELL or NONE")
    if test[0] != "NONE" and len(test) < 2:
        raise invalid(path, f"{test[0]} needs a command")
    return test


def _healthcheck(value: Any, path: str) -> Healthcheck:
    raw = expect_mapping(value, path)
    test = optional(raw, "test", path, _health_test) or []
    disable = bool(optional(raw, "disable", path, as_bool))
    if disable and test and test != ["NONE"]:
        raise invalid(child(path, "disable"), "`disable: true` conflicts with `test`")
    if disable or test == ["NONE"]:
        test, disable = ["NONE"], True
    fields: dict[str, Any] = {key: optional(raw, key, path, as_duration) for key in _DURATIONS}
    fields["retries"] = optional(raw, "retries", path, as_int)
    return Healthcheck(test=test, disable=disable, **fields)


def _ulimit(value: Any, path: str) -> Ulimit:
    if not isinstance(value, dict):
        limit = as_int(value, path, minimum=-1)
        return Ulimit(soft=limit, hard=limit)
    for key in ("soft", "hard"):
        if key not in value:
            raise invalid(path, f"missing `{key}`")
    soft = as_int(value["soft"], child(path, "soft"), minimum=-1)
    hard = as_int(value["hard"], child(path, "hard"), minimum=-1)
    if hard != -1 and (soft == -1 or soft > hard):
        raise invalid(path, f"soft limit {soft} exceeds hard limit {hard}")
    return Ulimit(soft=soft, hard=hard)


def _ulimits(value: Any, path: str) -> dict[str, Ulimit]:
    raw = named_entries(value, path)
    return {name: _ulimit(v, child(path, name)) for name, v in raw.items()}


def _host_entry(host: str, address: str, path: str) -> str:
    host, address = host.strip(), address.strip().removeprefix("[").removesuffix("]")
    if not host or not address:
        raise invalid(path, f"bad host entry {host}:{address} (expected host:ip or host=ip)")
    return f"{host}:{address}"


def _extra_hosts(value: Any, path: str) -> list[str]:
    expect(value, path, ("list", "mapping"))
    entries: list[str] = []
    if isinstance(value, dict):
        for host, addresses in expect_mapping(value, path).items():
            where = child(path, host)
            for address in as_str_list(addresses, where, single=True):
                entries.append(_host_entry(host, address, where))
        return entries
    for index, text in enumerate(as_str_list(value, path)):
        sep = "=" if "=" in text else ":"
        host, _, address = text.partition(sep)
        entries.append(_host_entry(host, address, item(path, index)))
    return entries


def _devices(value: Any, path: str) -> list[str]:
    devices = []
    for index, text in enumerate(as_str_list(value, path)):
        parts = text.split(":")
        if len(parts) > 3 or not all(parts):
            raise invalid(
                item(path, index), f"bad device {text!r} (expected host[:container[:perms]])"
            )
        devices.append(f"{text}:{text}" if len(parts) == 1 else text)
    return devices


def _dns(value: Any, path: str) -> list[str]:
    return as_str_list(value, path, single=True)


_SIMPLE: dict[str, Reader] = {
    "image": as_str,
    "command": as_command,
    "entrypoint": as_command,
    "working_dir": as_str,
    "user": as_str,
    "hostname": as_str,
    "labels": as_str_map,
    "ports": normalize_ports,
    "expose": normalize_expose,
    "network_mode": as_str,
    "depends_on": _depends_on,
    "healthcheck": _healthcheck,
    "restart": _restart,
    "init": as_bool,
    "stop_signal": as_str,
    "stop_grace_period": as_duration,
    "tty": as_bool,
    "stdin_open": as_bool,
    "cap_add": as_str_list,
    "cap_drop": as_str_list,
    "privileged": as_bool,
    "security_opt": as_str_list,
    "ulimits": _ulimits,
    "shm_size": as_bytes,
    "extra_hosts": _extra_hosts,
    "dns": _dns,
    "devices": _devices,
    "cpu_shares": as_int,
    "profiles": as_str_list,
}


def _build(value: Any, path: str, ctx: ServiceContext) -> Build:
    raw = {"context": value} if isinstance(value, str) else expect_mapping(value, path)
    context = as_str(raw.get("context", "."), child(path, "context"))
    if not context.startswith(_REMOTE):
        context = os.path.normpath(os.path.join(ctx.working_dir, ctx.expand_user(context)))
    args = optional(raw, "args", path, key_values) or {}
    return Build(
        context=context,
        dockerfile=optional(raw, "dockerfile", path, as_str) or "Dockerfile",
        args={k: ctx.environment.get(k) if v is None else v for k, v in args.items()},
        target=optional(raw, "target", path, as_str),
    )


def _declared(name: str, declared: Collection[str], kind: str, path: str) -> str:
    if name not in declared:
        raise invalid(path, f"undeclared {kind} {name!r} (declare it under top-level `{kind}s`)")
    return name


def _networks(value: Any, path: str, ctx: ServiceContext) -> dict[str, ServiceNetwork]:
    known = {*ctx.networks, "default"}
    if isinstance(value, list):
        names = as_str_list(value, path)
        return {
            _declared(n, known, "network", item(path, i)): ServiceNetwork()
            for i, n in enumerate(names)
        }
    networks: dict[str, ServiceNetwork] = {}
    for name, raw in named_entries(value, path).items():
        where = child(path, name)
        _declared(name, known, "network", where)
        raw = raw or {}
        networks[name] = ServiceNetwork(
            aliases=optional(raw, "aliases", where, as_str_list) or [],
            ipv4_address=optional(raw, "ipv4_address", where, as_str),
        )
    return networks


def _files(value: Any, path: str, declared: Collection[str], kind: str) -> list[ServiceFile]:
    """Secrets (mounted under /run/secrets/) or configs (under /) the service uses."""
    prefix = "/run/secrets/" if kind == "secret" else "/"
    files: list[ServiceFile] = []
    for index, entry in enumerate(expect_list(value, path)):
        where = item(path, index)
        expect(entry, where, ("string", "mapping"))
        raw = {"source": entry} if not isinstance(entry, dict) else entry
        if "source" not in raw:
            raise invalid(where, "missing `source`")
        source = _declared(as_str(raw["source"], child(where, "source")), declared, kind, where)
        target = optional(raw, "target", where, as_str) or source
        files.append(
            ServiceFile(
                source=source,
                target=target if target.startswith("/") else prefix + target,
                mode=optional(raw, "mode", where, as_mode),
            )
        )
    return files


def normalize_service(
    name: str, raw: dict[str, Any], ctx: ServiceContext
) -> tuple[Service, dict[str, str]]:
    """The normalized service, and the source of each of its variables."""
    path = f"services.{name}"
    if "image" not in raw and "build" not in raw:
        raise invalid(path, "a service needs `image` or `build`")
    if "networks" in raw and "network_mode" in raw:
        raise invalid(child(path, "network_mode"), "cannot be combined with `networks`")
    fields: dict[str, Any] = {"name": name}
    for key, reader in _SIMPLE.items():
        if key in raw:
            fields[key] = reader(raw[key], child(path, key))
    if "build" in raw:
        fields["build"] = _build(raw["build"], child(path, "build"), ctx)
    if "networks" in raw:
        fields["networks"] = _networks(raw["networks"], child(path, "networks"), ctx)
    for kind, declared in (("secret", ctx.secrets), ("config", ctx.configs)):
        if f"{kind}s" in raw:
            fields[f"{kind}s"] = _files(raw[f"{kind}s"], child(path, f"{kind}s"), declared, kind)
    mounts = MountContext(ctx.working_dir, ctx.volumes, ctx.expand_user)
    volumes = optional(raw, "volumes", path, lambda v, p: normalize_volumes(v, p, mounts))
    fields["volumes"] = [*(volumes or []), *(optional(raw, "tmpfs", path, normalize_tmpfs) or [])]
    fields["deploy"] = normalize_deploy(raw, path)
    environment, sources = service_environment(raw, path, ctx.environment, ctx.working_dir)
    fields["environment"] = environment
    return Service(**fields), sources
