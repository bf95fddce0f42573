"""Shells: persistent PTY sessions on the host or in a workflow's container."""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import NoRequest, NoResponse, Operation

__all__ = [
    "ATTACH",
    "CREATE",
    "GET",
    "KILL",
    "LIST",
    "PRUNE",
    "READ",
    "REMOVE",
    "RESIZE",
    "RUN",
    "SEND",
]

_OBJECT = Permission.OBJECT
_SHELL = Permission.SHELL
_WORKFLOW = Permission.WORKFLOW

# fmt: off
CREATE: Operation[m.ShellCreate, m.ShellInfo] = Operation(
    "shells.create", "POST", "/api/shells",
    "Start a persistent PTY session on the host or in a workflow's container.",
    request=m.ShellCreate, response=m.ShellInfo, permission=_SHELL, mutating=True, idempotent=False,
    target="name", also_requires=(("workflow", _WORKFLOW), ("record", _OBJECT)))
LIST: Operation[NoRequest, m.ShellList] = Operation(
    "shells.list", "GET", "/api/shells", "Sessions, running and exited.", response=m.ShellList,
    permission=_SHELL)
GET: Operation[m.ShellRef, m.ShellInfo] = Operation(
    "shells.get", "GET", "/api/shells/{name}", "One session.", request=m.ShellRef,
    response=m.ShellInfo, permission=_SHELL)
SEND: Operation[m.ShellInput, m.ShellInfo] = Operation(
    "shells.send", "POST", "/api/shells/{name}/input",
    "Type bytes into a session (base64 in JSON).", request=m.ShellInput, response=m.ShellInfo,
    permission=_SHELL, mutating=True, idempotent=False, target="name")
READ: Operation[m.ShellRead, m.ShellOutput] = Operation(
    "shells.read", "GET", "/api/shells/{name}/output",
    "Output from an offset (waits up to timeout for some).", request=m.ShellRead,
    response=m.ShellOutput, permission=_SHELL)
RESIZE: Operation[m.ShellResize, m.ShellInfo] = Operation(
    "shells.resize", "POST", "/api/shells/{name}/resize",
    "Set the terminal's size (the latest request wins).", request=m.ShellResize,
    response=m.ShellInfo, permission=_SHELL, mutating=True, target="name")
KILL: Operation[m.ShellKill, m.ShellInfo] = Operation(
    "shells.kill", "POST", "/api/shells/{name}/kill", "Signal the session's process group.",
    request=m.ShellKill, response=m.ShellInfo, permission=_SHELL, mutating=True, target="name")
RUN: Operation[m.ShellRun, m.ShellResult] = Operation(
    "shells.run", "POST", "/api/shells/{name}/run",
    "Run a command in the session; its exit code and output.", request=m.ShellRun,
    response=m.ShellResult, permission=_SHELL, mutating=True, idempotent=False, target="name")
REMOVE: Operation[m.ShellRef, m.ShellInfo] = Operation(
    "shells.remove", "DELETE", "/api/shells/{name}", "End a session and forget it.",
    request=m.ShellRef, response=m.ShellInfo, permission=_SHELL, mutating=True, target="name")
PRUNE: Operation[NoRequest, m.ShellList] = Operation(
    "shells.prune", "DELETE", "/api/shells",
    "Remove every session that has ended (running ones stay).", response=m.ShellList,
    permission=_SHELL, mutating=True)
ATTACH: Operation[m.ShellRead, NoResponse] = Operation(
    "shells.attach", "GET", "/api/shells/{name}/attach",
    "Attach over a WebSocket: terminal bytes both ways, JSON control frames.", request=m.ShellRead,
    kind="channel", permission=_SHELL, target="name")
# fmt: on
