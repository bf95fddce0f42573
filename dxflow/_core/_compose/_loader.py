"""`load_project`: a compose file, YAML text or dict to a validated, normalized project."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..._exceptions import NotFound
from ..._models._compose import ComposeProject, Service
from ._environment import EnvironmentSources, load_sources
from ._errors import invalid
from ._graph import waves
from ._guard import Stamp, considered, read_host_file, recording, stamp
from ._interpolate import interpolate_tree
from ._project import ProjectInput, check_project_name, normalize_project
from ._validate import validate_document
from ._values import describe
from ._yaml import parse_yaml

__all__ = ["LoadedProject", "is_compose_path", "load_project"]

PathLike = str | os.PathLike[str]

# Bounds on a document once YAML aliases are expanded: far above any real project, far
# below what would let an alias bomb or a self-referencing dict exhaust the engine.
MAX_VALUES = 100_000
MAX_DEPTH = 64

# Left out of the config hash, as Compose does: changing them never recreates a container.
# The cluster-only deploy keys too: the one-machine runtime ignores them, and leaving
# them out keeps every hash what it was before they existed (no container is recreated
# by an upgrade). A cluster runtime compares its own service specs instead.
SWARM_ONLY_DEPLOY = frozenset(
    {"mode", "placement", "update_config", "rollback_config", "restart_policy",
     "endpoint_mode", "labels"}
)  # fmt: skip
_HASH_EXCLUDE: dict[str, Any] = {
    "depends_on": True,
    "profiles": True,
    "deploy": {"replicas", *SWARM_ONLY_DEPLOY},
}


@dataclass(frozen=True)
class LoadedProject:
    """A normalized project and where its variables came from."""

    project: ComposeProject
    environment: EnvironmentSources = field(default_factory=EnvironmentSources)
    files: tuple[tuple[str, Stamp | None], ...] = ()
    """Every host file the load looked at (read or missing), with its stamp from before."""

    def unchanged(self) -> bool:
        """No file the load looked at has changed since (see `_guard.stamp`)."""
        return all(stamp(path) == before for path, before in self.files)

    def _service(self, service: str) -> Service:
        found = self.project.services.get(service)
        if found is None:
            raise NotFound(f"no service {service!r} in project {self.project.name!r}")
        return found

    def explain(self, service: str, variable: str) -> tuple[str | None, str]:
        """The value of `variable` for `service` and the source that won.

        Sources: ``service.environment`` and ``service.env_file:<path>`` when the service
        sets it; otherwise the project's: ``env`` (explicit argument), ``process``,
        ``env_file:<path>``; or ``unset``.
        """
        self._service(service)
        own = self.environment.services.get(service, {})
        if variable in own:
            return self.project.services[service].environment.get(variable), own[variable]
        return self.environment.resolve(variable)

    def config_hash(self, service: str) -> str:
        """sha256 of the service's canonical JSON, leaving out replicas, depends_on, profiles."""
        data = self._service(service).model_dump(mode="json", exclude=_HASH_EXCLUDE)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def order(self) -> list[list[str]]:
        """Waves along depends_on: a service's dependencies are all in earlier waves."""
        return waves({name: list(s.depends_on) for name, s in self.project.services.items()})


def _check_size(document: Any) -> None:
    """Refuse documents too large or too deep, without recursing (aliases and cycles)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise invalid("", f"the compose document is too large (over {MAX_VALUES} values)")
        if depth > MAX_DEPTH:
            raise invalid("", f"the compose document is nested too deeply (over {MAX_DEPTH})")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)


def _plain(value: Any) -> Any:
    """A copy of a caller's parsed document as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def is_compose_path(compose: str) -> bool:
    """`load_project` reads this string as the path of a file, not as YAML text."""
    if "\n" in compose or not compose.strip():
        return False
    return os.path.isfile(compose) or compose.endswith((".yml", ".yaml"))


def _read(compose: PathLike | Mapping[str, Any]) -> tuple[Any, str | None]:
    """The parsed document, and the absolute path of the file it came from."""
    if isinstance(compose, Mapping):
        _check_size(compose)
        return _plain(compose), None
    if isinstance(compose, str) and not is_compose_path(compose):
        document = parse_yaml(compose)
        _check_size(document)
        return document, None
    path = os.path.abspath(os.fspath(compose))
    try:
        data = read_host_file(path, "compose")
        if data is None:  # refused by the workflow policy: never opened
            return None, path
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise invalid("", f"compose file not found: {path}") from None
    except UnicodeDecodeError:
        raise invalid("", f"compose file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise invalid("", f"cannot read compose file {path}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the path
        raise invalid("", f"cannot read compose file {path!r}: {exc}") from None
    document = parse_yaml(text)
    _check_size(document)
    return document, path


def _check_document(document: Any, compose: object) -> dict[str, Any]:
    if document is None:
        raise invalid("", "the compose document is empty")
    if not isinstance(document, dict):
        hint = ""
        if isinstance(document, str) and isinstance(compose, str) and "\n" not in compose:
            hint = " (if this is a path, no such file exists)"
        raise invalid("", f"the compose document must be a mapping, got {describe(document)}{hint}")
    return document


def _env_files(
    env_file: PathLike | Sequence[PathLike] | None, default_dir: str | None
) -> list[str]:
    if env_file is None:
        default = os.path.join(default_dir, ".env") if default_dir else None
        if default is None:
            return []
        considered(default)  # one made later is a reason to load again
        return [default] if os.path.isfile(default) else []
    files = [env_file] if isinstance(env_file, str | os.PathLike) else list(env_file)
    return [os.path.abspath(os.fspath(f)) for f in files]


def _expand_user(process: Mapping[str, str]) -> Any:
    """``~`` is the HOME of the process environment the project reads: none (a non-MASTER
    caller's project, which never reads the engine's) leaves it as written (relative)."""
    home = process.get("HOME")

    def expand(path: str) -> str:
        if home and (path == "~" or path.startswith("~/")):
            return home + path[1:]
        return os.path.expanduser(path) if home else path

    return expand


def load_project(
    name: str,
    compose: PathLike | Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    env_file: PathLike | Sequence[PathLike] | None = None,
    profiles: Sequence[str] | None = None,
    working_dir: PathLike | None = None,
    process_env: Mapping[str, str] | None = None,
) -> LoadedProject:
    """Validate, interpolate and normalize a compose project; raise InvalidRequest naming the path.

    `compose` is a path, YAML text or a parsed dict. `working_dir` defaults to the compose
    file's folder, else the current one; `env_file` defaults to the ``.env`` there when it
    exists (beside the compose file, or in an explicit `working_dir`).
    """
    check_project_name(name, "name")
    with recording() as seen:
        loaded = _load(name, compose, env, env_file, profiles, working_dir, process_env)
    return dataclasses.replace(loaded, files=tuple(seen.items()))


def _load(
    name: str,
    compose: PathLike | Mapping[str, Any],
    env: Mapping[str, str] | None,
    env_file: PathLike | Sequence[PathLike] | None,
    profiles: Sequence[str] | None,
    working_dir: PathLike | None,
    process_env: Mapping[str, str] | None,
) -> LoadedProject:
    document, config_file = _read(compose)
    document = _check_document(document, compose)
    file_dir = os.path.dirname(config_file) if config_file else None
    explicit_dir = os.path.abspath(os.fspath(working_dir)) if working_dir is not None else None
    base = explicit_dir or file_dir or os.getcwd()
    process = dict(os.environ if process_env is None else process_env)
    sources = load_sources(dict(env or {}), process, _env_files(env_file, file_dir or explicit_dir))
    document = interpolate_tree(document, sources.get)
    validate_document(document)
    inp = ProjectInput(
        name=name,
        working_dir=base,
        config_files=[config_file] if config_file else [],
        profiles=frozenset(profiles or ()),
        environment=sources,
        expand_user=_expand_user(process),
    )
    project, service_sources = normalize_project(document, inp)
    return LoadedProject(
        project,
        EnvironmentSources(sources.explicit, sources.process, sources.files, service_sources),
    )
