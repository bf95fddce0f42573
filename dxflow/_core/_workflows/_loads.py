"""Stored workflows, loaded: every load of a project under a profile, and their cache.

A project is loaded when it is admitted (create, update, up, exec, a container shell)
and loaded again, for config, get, list, env, status, down and the rest, whenever what it
was made from changed: its spec, who wrote it, the engine's environment (for a MASTER's
workflow), or any host file the load looked at (env files of the request and of each
service, the default ``.env``, a compose path), as Compose reads them on every command.

Every load reads those files through the workflow policy's `FileGuard`: admit under the
caller's profile, a reload under the profile of the workflow's author (stored with it).
So a link a container plants in storage after create, where an env file was, is refused
on the next `config` exactly as `update` would refuse it, and never followed.

A reload the policy refuses: calls that need the project as written (config, env, get,
status, logs, start, ...) fail with that 403; those that list or stop (list, stop, kill,
down, remove) use the project with the refused file read as empty (it is never opened),
so a planted link can neither leak a file nor keep a workflow running.

Loads run in a worker thread with the GIL handed back often (`_parsing.loop_first`):
parsing a large project takes seconds of CPU, and a cache miss (after a restart, or an
env file touched) must not stall the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import anyio

from ..._exceptions import InvalidRequest
from ..._models import WorkflowCreate
from .._compose import LoadedProject, guarded_reads, is_compose_path, load_project
from ._parsing import loop_first
from ._policy import FileGuard, PolicyRoots, Violation, admit, refusal

__all__ = ["Entry", "Loads", "Row", "as_stored", "load"]

_HOW = {"exist_ok", "replace"}
"""Fields of a create request that say how to treat an existing workflow: not its spec."""


def as_stored(spec: WorkflowCreate) -> str:
    """The JSON stored of a spec (without `_HOW`: an older engine reads it as it was)."""
    return spec.model_dump_json(exclude=_HOW)


def load(spec: WorkflowCreate, master: bool = False) -> LoadedProject:
    """The loaded project; `master`: the spec's author was MASTER.

    Only MASTER's variables may come from the engine's own environment: for anyone else
    ``${HOME}`` is what the caller's `env` and env files say, or unset.
    """
    if not master and isinstance(spec.compose, str) and is_compose_path(spec.compose):
        raise InvalidRequest(
            "compose: only a MASTER key may name a file on the engine host; send the "
            "YAML text or the parsed document (the SDK and CLI read a file on your side)",
            path="compose",
        )
    loaded = load_project(
        spec.name,
        spec.compose,
        env=spec.env,
        env_file=spec.env_file or None,
        profiles=spec.profiles,
        working_dir=spec.working_dir,
        process_env=os.environ if master else {},
    )
    if spec.config_files:  # read on the client side: the loader saw text, not the file
        loaded.project.config_files = list(spec.config_files)
    return loaded


def _environ(master: bool) -> str:
    """What a MASTER's project may read of the engine's environment (others read none)."""
    if not master:
        return ""
    return hashlib.sha256(json.dumps(sorted(os.environ.items())).encode()).hexdigest()


@dataclass(frozen=True)
class Row:
    """A stored workflow, as stored."""

    name: str
    raw: str
    """The spec's JSON (`as_stored`)."""
    created: float
    master: bool
    """MASTER wrote it last: its variables may come from the engine's environment."""
    profile: str
    """The profile of whoever wrote it last: its files are read under that profile."""
    runtime: str = "docker"
    """What runs it (`_runtime.RUNTIMES`)."""


@dataclass(frozen=True)
class Entry:
    """A loaded project and what it was loaded from."""

    raw: str
    master: bool
    profile: str
    environ: str
    spec: WorkflowCreate
    loaded: LoadedProject
    violations: tuple[Violation, ...] = ()
    """Files the profile refused: read as empty, never opened."""

    def serves(self, raw: str, master: bool, profile: str) -> bool:
        """Still what loading `raw` under `profile` would give (no file it read changed)."""
        made = (self.raw, self.master, self.profile, self.environ)
        return made == (raw, master, profile, _environ(master)) and self.loaded.unchanged()


class Loads:
    def __init__(self, policy: PolicyRoots) -> None:
        self._policy = policy
        self._entries: dict[str, Entry] = {}

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)

    async def admit(
        self, spec: WorkflowCreate | Row, profile: str, master: bool, everyone: bool
    ) -> Entry:
        """`spec` (or a stored one) loaded under `profile` and checked, or the policy's 403.

        `master`: the spec's author was MASTER (what it may interpolate from); `everyone`:
        the caller is MASTER (it may set the engine's reserved labels).
        """
        with loop_first():
            entry = await anyio.to_thread.run_sync(self._admitted, spec, profile, master, everyone)
        self._entries[entry.spec.name] = entry  # later calls skip the parse
        return entry

    def _admitted(
        self, given: WorkflowCreate | Row, profile: str, master: bool, everyone: bool
    ) -> Entry:
        """For MASTER an unchanged project is not parsed again; for other callers it is
        (a `privileged` key included: it may not set the engine's labels), with the
        policy guarding every file read, and its host paths are checked anew."""
        if isinstance(given, Row):
            raw, spec = given.raw, WorkflowCreate.model_validate_json(given.raw)
        else:
            raw, spec = as_stored(given), given
        cached = self._entries.get(spec.name)
        fresh = cached is not None and not cached.violations and cached.serves(raw, master, profile)
        if everyone and fresh:
            assert cached is not None
            return cached
        environ = _environ(master)  # before the load: a change meanwhile loads again
        loaded = admit(spec.name, profile, self._policy, lambda: load(spec, master),
                       spec.working_dir, everyone=everyone)  # fmt: skip
        return Entry(raw, master, profile, environ, spec, loaded)

    async def stored(self, row: Row, strict: bool = True) -> Entry:
        """The stored workflow `row`, loaded under its author's profile (cached).

        `strict`: a file the profile refuses is the policy's 403; otherwise the project
        is given with that file read as empty (see the module's doc).
        """
        entry = self._entries.get(row.name)
        if entry is None or not entry.serves(row.raw, row.master, row.profile):
            with loop_first():
                entry = await anyio.to_thread.run_sync(self._reload, row)
            self._entries[row.name] = entry
        if strict and entry.violations:
            raise refusal(row.name, row.profile, list(entry.violations))
        return entry

    def _reload(self, row: Row) -> Entry:
        spec = WorkflowCreate.model_validate_json(row.raw)
        guard = FileGuard(self._policy, row.profile)
        environ = _environ(row.master)
        try:
            with guarded_reads(guard):
                loaded = load(spec, row.master)
        except InvalidRequest:
            if guard.violations:  # a refused file, read as empty, may break the load
                raise refusal(row.name, row.profile, guard.violations) from None
            raise
        violations = tuple(guard.violations)
        return Entry(row.raw, row.master, row.profile, environ, spec, loaded, violations)
