"""The Compose project of a folder, found the way `docker compose` finds it.

The file: `-f FILE` (or COMPOSE_FILE), else the first of compose.yaml, compose.yml,
docker-compose.yaml, docker-compose.yml in the current folder or the nearest parent
that has one. The name: `-p NAME` (or COMPOSE_PROJECT_NAME), else the file's top-level
`name:`, else its folder's name, lowercased and cut to the characters a project name may
have (`[a-z0-9_-]`), as compose normalizes it.

`sync` makes the engine's stored workflow match the file before anything runs: it is
created when missing and updated when the file or its variables changed, with a warning,
so that a stale stored copy never runs silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .._exceptions import DxflowError, NotFound
from ._compose_file import COMPOSE_FILES, compose_file_in, normalize_name, plain_name

__all__ = [
    "COMPOSE_FILES",
    "Project",
    "config_of",
    "find_compose_file",
    "normalize_name",
    "refresh",
    "sync",
]

# `$NAME` or `${NAME...}`, not `$$` (compose's escape for a literal dollar).
_VARIABLE = re.compile(r"(?<!\$)(?:\$\$)*\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")


def find_compose_file(folder: Path) -> Path | None:
    """The compose file of `folder` or of its nearest parent that has one."""
    found = compose_file_in(str(folder))
    return Path(found) if found is not None else None


def _declared_name(path: Path) -> str | None:
    """The file's top-level `name:`; a file that does not parse is the engine's to report.

    A plainly simple file is read without YAML (see `plain_name`): `dxflow ps` should
    not pay for a YAML parser to learn a name."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    known, name = plain_name(text)
    if known:
        return name
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    name = document.get("name") if isinstance(document, dict) else None
    return name if isinstance(name, str) else None


def referenced_variables(text: str) -> set[str]:
    return {braced or bare for braced, bare in _VARIABLE.findall(text)}


@dataclass
class Project:
    name: str
    file: Path | None = None
    env_files: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def resolve(
        cls,
        file: str | None,
        name: str | None,
        env_files: tuple[str, ...] = (),
        profiles: tuple[str, ...] = (),
        need_file: bool = False,
    ) -> Project:
        path = Path(file).absolute() if file else find_compose_file(Path.cwd())
        if file and path is not None and not path.is_file():
            raise click.UsageError(f"compose file {file} not found")
        if path is None and (need_file or not name):
            wanted = ", ".join(COMPOSE_FILES)
            raise click.UsageError(
                f"no compose file in {Path.cwd()} or its parents ({wanted}): "
                "give one with -f FILE, or a project name with -p NAME"
            )
        if not name:
            assert path is not None
            name = project_name(path)
        return cls(name, path, env_files, profiles)

    def interpolation_env(self) -> dict[str, str]:
        """The variables the file uses that this shell sets: compose reads them from the
        shell, and the engine runs elsewhere, so they travel with the workflow."""
        if self.file is None:
            return {}
        used = referenced_variables(self.file.read_text())
        return {k: v for k, v in sorted(self.environ.items()) if k in used}


def project_name(path: Path) -> str:
    name = normalize_name(_declared_name(path) or path.parent.name)
    if not name:
        raise click.UsageError(
            f"cannot make a project name from the folder {path.parent}: give one with -p NAME"
        )
    return name


def config_of(workflow: Any) -> Any:
    try:
        return workflow.config()
    except DxflowError:  # a stored copy that no longer loads (an env file gone): it differs
        return None


def sync(engine: Any, project: Project, runtime: str | None = None) -> Any:
    """The workflow of `project`, created or updated to match its file; warns when it differs.
    `runtime`: what runs it when it is created (an existing one must already run there)."""
    assert project.file is not None
    settings: dict[str, Any] = {
        "env": project.interpolation_env(),
        "env_file": list(project.env_files),
        "profiles": list(project.profiles),
    }
    try:
        workflow = engine.workflows.get(project.name)
    except NotFound:
        return engine.workflows.create(project.name, str(project.file), runtime=runtime,
                                       **settings)  # fmt: skip
    if runtime is not None and workflow.info.runtime != runtime:
        raise click.ClickException(
            f"workflow {project.name} runs on runtime {workflow.info.runtime}, not {runtime}; "
            f"to move it: `dxflow down && dxflow workflow rm {project.name}`, then "
            f"`dxflow up --runtime {runtime}`"
        )
    before = config_of(workflow)
    workflow.update(str(project.file), **settings)
    workflow.reload()
    if config_of(workflow) != before:
        click.echo(f"stored compose file differs: updating workflow {project.name}", err=True)
    return workflow


def refresh(workflow: Any) -> bool:
    """Store again the compose file `workflow` was made from, when it is on this machine
    and now reads differently (with a warning); the variables, env files and profiles
    stored with it stay. Whether it changed."""
    before = config_of(workflow)
    files = before.config_files if before is not None else []
    if len(files) != 1 or not Path(files[0]).is_file():
        return False  # several files, a mapping, or another machine's: nothing to compare
    if str(Path(files[0]).parent) != before.working_dir:
        return False  # made with its own --working-dir: storing the file again would move it
    workflow.update(files[0])
    workflow.reload()
    if config_of(workflow) == before:
        return False
    click.echo(f"stored compose file differs from {files[0]}: updating workflow "
               f"{workflow.name}", err=True)  # fmt: skip
    return True
