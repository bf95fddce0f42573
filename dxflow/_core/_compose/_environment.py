"""Where variables come from: the project's sources for interpolation, and each service's.

Project precedence: the explicit `env` argument, then the process environment (the
engine's, for MASTER callers only; empty for everyone else), then the env files given at
create (a later file wins over an earlier one). A service's own
environment is its ``env_file`` entries (later wins) overridden by ``environment``; an
entry without a value (``- KEY``) takes the project's value, if any.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._dotenv import DotenvError, parse_dotenv
from ._errors import child, invalid, item
from ._guard import considered, read_host_file
from ._values import as_bool, as_str, expect_mapping, key_values

__all__ = ["EnvironmentSources", "load_sources", "service_environment"]


@dataclass(frozen=True)
class EnvironmentSources:
    """The variables of a project by source, and where each service's variables came from."""

    explicit: Mapping[str, str] = field(default_factory=dict)
    process: Mapping[str, str] = field(default_factory=dict)
    files: tuple[tuple[str, Mapping[str, str]], ...] = ()
    services: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def resolve(self, name: str) -> tuple[str | None, str]:
        """The project's value of `name` and its source: env, process, env_file:<path>, unset."""
        if name in self.explicit:
            return self.explicit[name], "env"
        if name in self.process:
            return self.process[name], "process"
        for path, values in reversed(self.files):
            if name in values:
                return values[name], f"env_file:{path}"
        return None, "unset"

    def get(self, name: str) -> str | None:
        return self.resolve(name)[0]


def _read_text(path: str, where: str) -> str:
    try:
        data = read_host_file(path, where)
        return "" if data is None else data.decode("utf-8")  # None: refused, never opened
    except FileNotFoundError:
        raise invalid(where, f"env file not found: {path}") from None
    except UnicodeDecodeError:
        raise invalid(where, f"env file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise invalid(where, f"cannot read env file {path}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the path
        raise invalid(where, f"cannot read env file {path!r}: {exc}") from None


def load_sources(
    explicit: Mapping[str, str], process: Mapping[str, str], env_files: Sequence[str]
) -> EnvironmentSources:
    """The project's sources; each env file's values are interpolated as they are read."""
    sources = EnvironmentSources(dict(explicit), dict(process))
    for path in env_files:
        text = _read_text(path, "env_file")
        outer = EnvironmentSources(sources.explicit, sources.process)
        try:
            values = parse_dotenv(text, outer.get, sources.get)
        except DotenvError as exc:
            raise invalid("env_file", f"{path}: {exc}", line=exc.line) from None
        sources = EnvironmentSources(
            sources.explicit, sources.process, (*sources.files, (path, values))
        )
    return sources


def _env_files(value: Any, path: str, working_dir: str) -> list[tuple[str, str, bool]]:
    """(where, absolute path, required) of each env_file entry."""
    entries = value if isinstance(value, list) else [value]
    found: list[tuple[str, str, bool]] = []
    for index, entry in enumerate(entries):
        where = item(path, index) if isinstance(value, list) else path
        required = True
        if isinstance(entry, dict):
            entry = expect_mapping(entry, where)
            if "path" not in entry:
                raise invalid(where, "missing `path`")
            if "required" in entry:
                required = as_bool(entry["required"], child(where, "required"))
            entry = entry["path"]
        file = os.path.normpath(os.path.join(working_dir, as_str(entry, where)))
        found.append((where, file, required))
    return found


def service_environment(
    raw: dict[str, Any], path: str, project: EnvironmentSources, working_dir: str
) -> tuple[dict[str, str | None], dict[str, str]]:
    """A service's variables, and the source of each (for `explain`)."""
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    if "env_file" in raw:
        read: dict[str, str] = {}
        for where, file, required in _env_files(
            raw["env_file"], child(path, "env_file"), working_dir
        ):
            considered(file)  # a missing one may appear later: a reason to load again
            if not required and not os.path.exists(file):
                continue
            try:
                parsed = parse_dotenv(_read_text(file, where), project.get, read.get)
            except DotenvError as exc:
                raise invalid(where, f"{file}: {exc}", line=exc.line) from None
            read.update(parsed)
            values.update(parsed)
            sources.update(dict.fromkeys(parsed, f"service.env_file:{file}"))
    if "environment" in raw:
        for name, value in key_values(raw["environment"], child(path, "environment")).items():
            if value is None:
                value, source = project.resolve(name)
            else:
                source = "service.environment"
            values[name] = value
            sources[name] = source
    return values, sources
