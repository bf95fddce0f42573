"""The top level: project name, networks, volumes, secrets, configs, profiles, wiring."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..._models._compose import (
    ComposeProject,
    Dependency,
    FileReference,
    NetworkSpec,
    Service,
    ServiceNetwork,
    VolumeSpec,
)
from ._environment import EnvironmentSources
from ._errors import child, invalid
from ._graph import find_cycle
from ._normalize import ServiceContext, normalize_service
from ._values import as_bool, as_str, as_str_map, optional

__all__ = ["ProjectInput", "check_build_contexts", "check_project_name", "normalize_project"]

_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_EXTERNAL_CONFLICTS = ("driver", "driver_opts", "internal", "attachable", "labels")


@dataclass(frozen=True)
class ProjectInput:
    """What the document alone does not say: names, paths, profiles and variables."""

    name: str
    working_dir: str
    config_files: list[str]
    profiles: frozenset[str]
    environment: EnvironmentSources
    expand_user: Callable[[str], str]


def check_project_name(name: str, path: str) -> str:
    if not _PROJECT_NAME.fullmatch(name):
        raise invalid(
            path,
            f"invalid project name {name!r}: use lowercase letters, digits, dashes and "
            "underscores, starting with a letter or a digit",
        )
    return name


def check_build_contexts(project: ComposeProject) -> None:
    """Refuse a local build context that is not a folder (at create, not as a failed `up`).

    Apart from loading: a stored project must still load (to be taken down) after its
    context is gone.
    """
    for name, service in project.services.items():
        context = service.build.context if service.build else None
        if context is None or not os.path.isabs(context) or os.path.isdir(context):
            continue  # a remote context (git, http) is Docker's to fetch
        missing = "is not a folder" if os.path.lexists(context) else "does not exist"
        raise invalid(
            f"services.{name}.build.context",
            f"the build context {context} {missing} (create it, or fix the path: relative "
            "paths start at the workflow's working dir)",
        )


def _entries(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in (document.get(key) or {}).items() if not k.startswith("x-")}


def _network(key: str, raw: dict[str, Any] | None, project: str) -> NetworkSpec:
    raw, path = raw or {}, f"networks.{key}"
    external = bool(optional(raw, "external", path, as_bool))
    for conflict in _EXTERNAL_CONFLICTS if external else ():
        if conflict in raw:
            raise invalid(child(path, conflict), "cannot be set on an external network")
    name = optional(raw, "name", path, as_str) or (key if external else f"{project}_{key}")
    return NetworkSpec(
        name=name,
        driver=optional(raw, "driver", path, as_str),
        driver_opts=optional(raw, "driver_opts", path, as_str_map) or {},
        external=external,
        internal=bool(optional(raw, "internal", path, as_bool)),
        attachable=bool(optional(raw, "attachable", path, as_bool)),
        labels=optional(raw, "labels", path, as_str_map) or {},
    )


def _volume(key: str, raw: dict[str, Any] | None, project: str) -> VolumeSpec:
    raw, path = raw or {}, f"volumes.{key}"
    external = bool(optional(raw, "external", path, as_bool))
    for conflict in ("driver", "driver_opts", "labels") if external else ():
        if conflict in raw:
            raise invalid(child(path, conflict), "cannot be set on an external volume")
    name = optional(raw, "name", path, as_str) or (key if external else f"{project}_{key}")
    return VolumeSpec(
        name=name,
        driver=optional(raw, "driver", path, as_str),
        driver_opts=optional(raw, "driver_opts", path, as_str_map) or {},
        external=external,
        labels=optional(raw, "labels", path, as_str_map) or {},
    )


def _file(kind: str, key: str, raw: dict[str, Any], inp: ProjectInput) -> FileReference:
    """A secret or config: exactly one of `file`, `environment` or (configs) `content`."""
    path = f"{kind}.{key}"
    if not _SERVICE_NAME.fullmatch(key):  # it names a file the engine writes
        raise invalid(path, "invalid name (letters, digits, '.', '_', '-', starting alphanumeric)")
    allowed = ("file", "environment", "content") if kind == "configs" else ("file", "environment")
    given = [source for source in allowed if source in raw]
    if len(given) != 1:
        raise invalid(path, f"give exactly one of {', '.join(f'`{a}`' for a in allowed)}")
    reference = FileReference(name=f"{inp.name}_{key}")
    where = child(path, given[0])
    value = as_str(raw[given[0]], where)
    if given[0] == "file":
        file = os.path.normpath(os.path.join(inp.working_dir, inp.expand_user(value)))
        return reference.model_copy(update={"file": file})
    if given[0] == "content":
        return reference.model_copy(update={"content": value})
    if inp.environment.get(value) is None:
        raise invalid(
            where, f"variable {value} is not set (give it in the workflow's env or env files)"
        )
    return reference.model_copy(update={"environment": value})


def _is_active(service: Service, profiles: frozenset[str]) -> bool:
    return not service.profiles or "*" in profiles or bool(profiles & set(service.profiles))


def _dependencies(
    service: Service, services: dict[str, Service], active: Collection[str]
) -> dict[str, Dependency]:
    """The service's dependencies on enabled services, checked; adds ``network_mode: service:``."""
    path = f"services.{service.name}"
    deps = dict(service.depends_on)
    mode = service.network_mode or ""
    if mode.startswith("service:"):
        target = mode.removeprefix("service:")
        if target not in services:
            raise invalid(child(path, "network_mode"), f"unknown service {target!r}")
        deps.setdefault(target, Dependency(restart=True))
    kept: dict[str, Dependency] = {}
    for name, dependency in deps.items():
        where = child(child(path, "depends_on"), name)
        if name not in services:
            raise invalid(where, f"unknown service {name!r}")
        if name in active or service.name not in active:
            kept[name] = dependency
        elif dependency.required:
            profiles = ", ".join(services[name].profiles)
            raise invalid(
                where,
                f"service {service.name!r} depends on {name!r}, which no active profile enables "
                f"(its profiles: {profiles}; or mark the dependency `required: false`)",
            )
    return kept


def _attach_default(
    services: dict[str, Service], networks: dict[str, NetworkSpec], project: str
) -> None:
    for name, service in services.items():
        if not service.networks and not service.network_mode:
            services[name] = service.model_copy(update={"networks": {"default": ServiceNetwork()}})
    if "default" not in networks and any("default" in s.networks for s in services.values()):
        networks["default"] = NetworkSpec(name=f"{project}_default")


def _check_cycles(services: dict[str, Service]) -> None:
    cycle = find_cycle({name: list(s.depends_on) for name, s in services.items()})
    if cycle:
        path = f"services.{cycle[0]}.depends_on"
        raise invalid(path, f"dependency cycle: {' -> '.join(cycle)}", cycle=cycle)


def _services(
    document: dict[str, Any], inp: ProjectInput, ctx: ServiceContext
) -> tuple[dict[str, Service], dict[str, dict[str, str]]]:
    raw_services = _entries(document, "services")
    if not raw_services:
        raise invalid("services", "the project defines no service")
    services: dict[str, Service] = {}
    sources: dict[str, dict[str, str]] = {}
    for name, raw in raw_services.items():
        if not _SERVICE_NAME.fullmatch(name):
            raise invalid(
                f"services.{name}",
                "invalid service name (letters, digits, '.', '_', '-', starting alphanumeric)",
            )
        services[name], sources[name] = normalize_service(name, raw, ctx)
    active = [name for name, s in services.items() if _is_active(s, inp.profiles)]
    for name, service in services.items():
        deps = _dependencies(service, services, active)
        services[name] = service.model_copy(update={"depends_on": deps})
    enabled = {name: services[name] for name in active}
    return enabled, {name: sources[name] for name in active}


def normalize_project(
    document: dict[str, Any], inp: ProjectInput
) -> tuple[ComposeProject, dict[str, dict[str, str]]]:
    """The normalized project, and the source of each service's variables."""
    if "name" in document:
        check_project_name(as_str(document["name"], "name"), "name")
    networks = {k: _network(k, v, inp.name) for k, v in _entries(document, "networks").items()}
    volumes = {k: _volume(k, v, inp.name) for k, v in _entries(document, "volumes").items()}
    secrets = {k: _file("secrets", k, v, inp) for k, v in _entries(document, "secrets").items()}
    configs = {k: _file("configs", k, v, inp) for k, v in _entries(document, "configs").items()}
    ctx = ServiceContext(
        working_dir=inp.working_dir,
        environment=inp.environment,
        networks=networks.keys(),
        volumes=volumes.keys(),
        secrets=secrets.keys(),
        configs=configs.keys(),
        expand_user=inp.expand_user,
    )
    services, sources = _services(document, inp, ctx)
    _attach_default(services, networks, inp.name)
    _check_cycles(services)
    project = ComposeProject(
        name=inp.name,
        working_dir=inp.working_dir,
        config_files=inp.config_files,
        services=services,
        networks=networks,
        volumes=volumes,
        secrets=secrets,
        configs=configs,
    )
    return project, sources
