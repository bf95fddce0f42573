"""Files a workflow's containers see that are not their image's: bind sources, and the
secrets and configs Compose mounts (``/run/secrets/NAME``, a config's ``target``).

A file-based secret or config is bound read-only as it is, as Compose does. One that
comes from a variable (``environment:``) or from the document (``content:``) is written
under the engine's private folder of the storage root, one file per use (each may ask for
its own mode), in folders only the engine user can enter (0700): values never go on a
command line nor into a container's environment.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..._models import Service
from .._compose import LoadedProject

__all__ = ["ProjectFiles", "bind_sources", "plan_files", "remove_files"]

# Compose's mode for the secrets and configs it writes itself: a non-root user of the
# container can read them (the folders above keep every other host user out).
DEFAULT_MODE = 0o444


def bind_sources(service: Service) -> None:
    """What `docker compose` does: a missing bind source becomes a folder; anything
    already there (a file, a socket, a link) is bound as it is."""
    for mount in service.volumes:
        source = mount.source if mount.type == "bind" and mount.create_host_path else None
        if source and not os.path.lexists(source):
            os.makedirs(source, exist_ok=True)


@dataclass
class ProjectFiles:
    """Where each service's secrets and configs come from, and what to write first."""

    mounts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Per service: (host path, container path), bound read-only."""
    writes: list[tuple[Path, bytes, int]] = field(default_factory=list)
    """(host path, content, mode) of the files made from variables or content."""

    def write(self) -> None:
        """Write the files (blocking; in place, so a running container sees a change)."""
        for path, content, mode in self.writes:
            for folder in reversed([path.parent, *path.parent.parents][:4]):
                folder.mkdir(mode=0o700, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path, flags, 0o600)
            try:
                os.fchmod(fd, 0o600)  # a file left by an earlier mode
                os.write(fd, content)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)


def plan_files(loaded: LoadedProject, root: Path) -> ProjectFiles:
    """The secrets and configs of every service; those written go under root/<project>."""
    project = loaded.project
    files = ProjectFiles()
    for service in project.services.values():
        mounts = files.mounts.setdefault(service.name, [])
        for kind, used, declared in (
            ("secrets", service.secrets, project.secrets),
            ("configs", service.configs, project.configs),
        ):
            for index, entry in enumerate(used):
                ref = declared[entry.source]
                if ref.file is not None:
                    mounts.append((ref.file, entry.target))
                    continue
                value = ref.content
                if value is None and ref.environment is not None:
                    value = loaded.environment.get(ref.environment) or ""
                # one file per use: a service may mount one secret twice, with two modes
                path = root / project.name / service.name / kind / f"{index}-{entry.source}"
                mode = DEFAULT_MODE if entry.mode is None else entry.mode
                files.writes.append((path, (value or "").encode(), mode))
                mounts.append((str(path), entry.target))
    return files


def remove_files(root: Path, project: str) -> None:
    """Remove what `plan_files` wrote for `project` (blocking)."""
    shutil.rmtree(root / project, ignore_errors=True)
