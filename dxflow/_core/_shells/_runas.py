"""Who a session's process is: the OS user a key maps to, its clean environment, and
how the values of a container shell's variables reach `docker exec` without its argv.

A host session of a key that is not MASTER runs as the key's `run_as` user (else the
engine's `run_as`, "dxflow" by default): the holder's child switches to it before it
execs, starts in its home, and gets a clean environment, never the engine's. MASTER
sessions run as the engine user with its environment, as an administrator's would.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Any

from ..._exceptions import EngineUnavailable, InvalidRequest
from .._context import Identity

__all__ = ["ENV_FILE_FD", "RunAs", "container_env_file", "login_shell", "resolve_run_as"]

USER_PATH = "/usr/local/bin:/usr/bin:/bin"
"""PATH of run-as sessions (login.defs' ENV_PATH, without the games)."""
ENV_FILE_FD = 3
"""The descriptor `docker exec --env-file=/dev/fd/3` reads a container shell's variables
from: a pipe the holder's child fills (see `_holder_child.py`)."""
ENV_FILE_LIMIT = 256 << 10
_NO_LOGIN = ("nologin", "false")


@dataclass(frozen=True)
class RunAs:
    """The OS user a host session runs as."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "uid": self.uid, "gid": self.gid, "home": self.home}

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """A clean environment, as a login would make it, plus what the caller sent."""
        env = {
            "HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell,
            "PATH": USER_PATH, "TERM": "xterm-256color",
            "LANG": os.environ.get("LANG") or "C.UTF-8",
        }  # fmt: skip
        return {**env, **extra}


def login_shell(shell: str) -> str:
    """`shell` when it is a usable program, else /bin/sh (nologin would end at once)."""
    usable = shell and os.access(shell, os.X_OK) and os.path.basename(shell) not in _NO_LOGIN
    return shell if usable else "/bin/sh"


def resolve_run_as(identity: Identity, default: str) -> RunAs:
    """The user `identity`'s host sessions run as; EngineUnavailable when it cannot be.

    Never root: a key that is not MASTER must not become root-equivalent through a
    mapping. An engine that is not root can only run sessions as its own user.
    """
    name = identity.run_as or default
    fix = f"dxflow key update {identity.name} --run-as USER"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise EngineUnavailable(
            f"host shells of {identity.name!r} run as the OS user {name!r}, which does not "
            f"exist on the engine's host: create it (useradd --system --create-home --shell "
            f"/bin/bash {name}) or map the key to another user ({fix})",
            user=name,
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise EngineUnavailable(
            f"host shells of {identity.name!r} would run as {name!r}, of uid or gid 0: a "
            f"key that is not MASTER never runs as root; map it to an unprivileged user "
            f"({fix}) or give it MASTER",
            user=name,
        )
    engine = os.geteuid()
    if engine != 0 and entry.pw_uid != engine:
        me = _user_name(engine)
        raise EngineUnavailable(
            f"host shells of {identity.name!r} run as the OS user {name!r}, but the engine "
            f"runs as {me!r}, not root, and cannot switch users: run the engine as root, "
            f'or set run_as = "{me}" in its config (then host shells of keys that are not '
            f"MASTER can read the engine home: see docs/security.md)",
            user=name,
        )
    return RunAs(name, entry.pw_uid, entry.pw_gid, entry.pw_dir, login_shell(entry.pw_shell))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def container_env_file(env: dict[str, str]) -> str:
    """The `--env-file` text giving a container shell `env`: values never on an argv.

    Docker's env-file format has one `KEY=VALUE` per line, so a value cannot hold a line
    break (it would be cut there); such values are refused rather than changed.
    """
    lines = []
    for key, value in env.items():
        if any(c in value for c in "\n\r\x00"):
            raise InvalidRequest(
                f"env.{key}: a container shell's variable cannot hold a line break or a "
                "NUL byte (docker exec's env file is one KEY=VALUE per line)",
                field=f"env.{key}",
            )
        lines.append(f"{key}={value}\n")
    text = "".join(lines)
    if len(text.encode()) > ENV_FILE_LIMIT:
        raise InvalidRequest(
            f"env: at most {ENV_FILE_LIMIT >> 10} KiB of variables for a container shell",
            field="env",
        )
    return text
