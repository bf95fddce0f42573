"""Models of shell sessions: persistent PTYs on the host or in a workflow's container."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from ._base import Request, Response
from ._workflow import ServiceName, WorkflowName

__all__ = [
    "ShellCreate",
    "ShellInfo",
    "ShellInput",
    "ShellKill",
    "ShellList",
    "ShellOutput",
    "ShellRead",
    "ShellRef",
    "ShellResize",
    "ShellResult",
    "ShellRun",
]

_EnvName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^=\s\x00#][^=\s\x00]*$")]
"""A variable's name: no `=`, white space or NUL (nor a leading `#`: an env file's comment)."""
_NAME = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_BYTES = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")


class ShellCreate(Request):
    name: str | None = Field(default=None, min_length=1, max_length=63,
                             pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # fmt: skip
    """None: the engine picks one (`sh-1`, `sh-2`, ...)."""
    command: str | None = Field(default=None, min_length=1, max_length=4096)
    """None: the login shell of the user the session runs as (`/bin/sh` where there is
    none): MASTER's sessions run as the engine user, other keys' as their run-as user."""
    args: list[str] = Field(default_factory=list, max_length=1000)
    env: dict[_EnvName, str] = Field(default_factory=dict)
    cwd: str | None = Field(default=None, max_length=4096)
    rows: int = Field(default=24, ge=1, le=1000)
    cols: int = Field(default=80, ge=1, le=1000)
    workflow: WorkflowName | None = None
    service: ServiceName | None = None
    record: str | None = Field(default=None, max_length=4096)
    """A path in the object store to record the session to (asciicast v2)."""
    idle_timeout: float | None = Field(default=None, gt=0)
    scrollback: int | None = Field(default=None, ge=4096, le=1 << 30)
    exist_ok: bool = False
    """A running session of that name is returned as it is (one that has ended is
    started anew)."""
    replace: bool = False
    """A session of that name is removed (its program ended) and started anew."""


class ShellInfo(Response):
    name: str
    command: list[str]
    pid: int | None
    state: Literal["running", "exited", "failed"]
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    created: datetime
    exited: datetime | None = None
    clients: int = 0
    rows: int
    cols: int
    workflow: str | None = None
    service: str | None = None
    owner: str | None = None
    """The identity that created the session (only it and MASTER see the session)."""
    user: str | None = None
    """The OS user a host session runs as, for keys that are not MASTER (None: the
    engine's user, or a container's)."""


class ShellList(Response):
    shells: list[ShellInfo]


class ShellRef(Request):
    name: str = _NAME


class ShellInput(Request):
    model_config = _BYTES

    name: str = _NAME
    data: bytes = Field(max_length=1 << 20)


class ShellRead(Request):
    name: str = _NAME
    offset: int | None = Field(default=None, ge=0)
    """None: from the buffer's start (everything still held)."""
    timeout: float = Field(default=0, ge=0, le=300)
    """Wait this long for output when there is none yet."""
    limit: int = Field(default=1 << 20, ge=1, le=16 << 20)


class ShellOutput(Response):
    model_config = ConfigDict(extra="ignore", ser_json_bytes="base64", val_json_bytes="base64")

    offset: int
    """The offset of `data`'s first byte."""
    data: bytes
    end: int
    """The offset after the last byte the session has produced so far."""
    missed: int = 0
    """Bytes asked for that fell out of the scrollback before they could be read."""
    state: Literal["running", "exited", "failed"]
    exit_code: int | None = None


class ShellResize(Request):
    name: str = _NAME
    rows: int = Field(ge=1, le=1000)
    cols: int = Field(ge=1, le=1000)


class ShellKill(Request):
    name: str = _NAME
    signal: str = Field(default="SIGTERM", pattern=r"^(SIG)?[A-Z0-9]+$|^[0-9]{1,2}$")


class ShellRun(Request):
    name: str = _NAME
    cmd: str = Field(min_length=1, max_length=1 << 16)
    timeout: float | None = Field(default=None, gt=0, le=86_400)


class ShellResult(Response):
    exit_code: int
    output: str
