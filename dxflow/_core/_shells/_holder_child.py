"""The PTY holder's session process: the spec it is started with, and the child on a PTY.

Standard library only, like `_holder.py` (which makes this folder a package when it runs
standalone). The spec file's format is described in `_holder.py`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import signal
import struct
import sys
import termios
import time

from ._holder_wire import MAX_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~1 MiB of RSS, so it is never imported at run time
    from typing import Any, NoReturn, TypeGuard

__all__ = ["Child", "load_spec"]


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"{stamp} holder[{os.getpid()}] {message}\n")
    sys.stderr.flush()


def load_spec(path: str) -> dict[str, Any]:
    """Read, delete and validate the spec file; raises ValueError with a clear message."""
    try:
        with open(path, "rb") as file:
            spec = json.load(file)
    finally:
        _unlink(path)
    if not isinstance(spec, dict):
        raise ValueError("the spec must be a JSON object")
    name, folder, command = spec.get("name"), spec.get("dir"), spec.get("command")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid name: {name!r}")
    if not isinstance(folder, str) or not folder:
        raise ValueError(f"invalid dir: {folder!r}")
    if not isinstance(command, list) or not command:
        raise ValueError("command must be a non-empty list of strings")
    if not all(isinstance(arg, str) for arg in command):
        raise ValueError("command must be a non-empty list of strings")
    _check_spec_types(spec)
    spec["dir"] = os.path.abspath(folder)
    record_fd = spec.get("record_fd")
    if record_fd is not None:
        if not _is_int(record_fd) or record_fd < 3:
            raise ValueError(f"record_fd must be an inherited descriptor, got {record_fd!r}")
        os.set_inheritable(record_fd, False)  # the recording, never the shell's
    return spec


def _check_spec_types(spec: dict[str, Any]) -> None:
    env = spec.get("env")
    if env is not None and not (
        isinstance(env, dict) and all(isinstance(v, str) for v in [*env, *env.values()])
    ):
        raise ValueError("env must be an object of strings")
    for key in ("rows", "cols"):
        value = spec.get(key)
        if value is not None and (not _is_int(value) or not 1 <= value <= MAX_SIZE):
            raise ValueError(f"{key} must be an integer from 1 to {MAX_SIZE}, got {value!r}")
    scrollback = spec.get("scrollback")
    if scrollback is not None and (not _is_int(scrollback) or scrollback < 1):
        raise ValueError(f"scrollback must be a positive integer, got {scrollback!r}")
    timeout = spec.get("idle_timeout")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise ValueError(f"idle_timeout must be a positive number or null, got {timeout!r}")
    for key in ("cwd", "record", "term", "env_file"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ValueError(f"{key} must be a string or null")
    user = spec.get("user")
    if user is not None and not (
        isinstance(user, dict)
        and isinstance(user.get("name"), str)
        and isinstance(user.get("home"), str)
        and all(_is_int(user.get(key)) and user[key] > 0 for key in ("uid", "gid"))
    ):
        raise ValueError("user must be null or {name, uid, gid, home} with uid and gid > 0")


_PR_SET_NO_NEW_PRIVS = 38


def _no_new_privileges() -> None:
    """No set-uid file makes this session root again: a root container of a workflow can
    write a set-uid binary into a folder it binds, which a host shell could then run."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _become(user: dict[str, Any]) -> None:
    """Drop to `user` for good: groups, then gid, then uid (real, effective and saved)."""
    _no_new_privileges()
    if os.getuid() == os.geteuid() == user["uid"]:
        return  # an engine that is not root, running sessions as its own user
    os.initgroups(user["name"], user["gid"])
    os.setresgid(user["gid"], user["gid"], user["gid"])
    os.setresuid(user["uid"], user["uid"], user["uid"])
    if os.getuid() != user["uid"] or os.geteuid() != user["uid"]:  # never exec as root
        raise PermissionError(errno.EPERM, "the user switch did not hold")


ENV_FILE_FD = 3  # the engine's argv names /dev/fd/3 (see _runas.py)


def _env_pipe(data: bytes) -> None:
    """Put `data` in a pipe readable at ENV_FILE_FD: variables, never on an argv."""
    read, write = os.pipe()
    if len(data) > 4096:
        with contextlib.suppress(OSError):  # room for all of it: nobody reads yet
            fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, len(data) + 4096)
    os.set_blocking(write, False)
    view = memoryview(data)
    while view:  # BlockingIOError (a full pipe) fails the start, never hangs it
        view = view[os.write(write, view) :]
    os.close(write)
    if read != ENV_FILE_FD:
        os.dup2(read, ENV_FILE_FD)
        os.close(read)
    os.set_inheritable(ENV_FILE_FD, True)


def _enter_home(home: str) -> None:
    try:
        os.chdir(home)
    except OSError:  # a system user made without --create-home: start at /
        os.chdir("/")


def _tty_group() -> int:
    import grp  # only for run-as sessions

    try:
        return grp.getgrnam("tty").gr_gid
    except KeyError:
        return -1  # no tty group here: keep the terminal's group


def _failure(stage: str, target: str, error: OSError) -> tuple[int, str]:
    """Exit code and message for a child that could not switch user, enter its folder
    or exec."""
    code = error.errno
    denied = code in (errno.EACCES, errno.EPERM)
    if stage == "user":
        return 126, f"cannot run as user {target}: {error.strerror}"
    if stage == "env":
        return 126, f"cannot pass the variables to {target}: {error.strerror}"
    if stage == "cwd":
        messages = {
            errno.ENOENT: "no such directory",
            errno.ENOTDIR: "not a directory",
        }
        text = "permission denied" if denied else messages.get(code or 0)
    else:
        messages = {errno.ENOENT: "command not found", errno.ENOEXEC: "exec format error"}
        text = "permission denied" if denied else messages.get(code or 0)
    if text is None:
        text = f"cannot {'enter' if stage == 'cwd' else 'run'} ({error.strerror})"
    status = 126 if denied or code == errno.ENOEXEC else 127
    return status, f"{text}: {target}"


# Signals the holder changes or may inherit as ignored (an engine started with `nohup` or
# `&`); the session must get them back at their defaults.
_RESET_SIGNALS = (
    "SIGHUP",
    "SIGPIPE",
    "SIGCHLD",
    "SIGTERM",
    "SIGINT",
    "SIGQUIT",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGXFSZ",
)


def _default_signals() -> None:
    signal.set_wakeup_fd(-1)
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _winsize(rows: int, cols: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


class Child:
    """The session's process, forked on a fresh PTY."""

    def __init__(self, spec: dict[str, Any], rows: int, cols: int) -> None:
        self.command: list[str] = spec["command"]
        self.cwd: str | None = spec.get("cwd")
        env = spec.get("env")
        self.env: dict[str, str] = dict(os.environ if env is None else env)
        self.env["TERM"] = spec.get("term") or "xterm-256color"
        self.user: dict[str, Any] | None = spec.get("user")
        self.env_file: str | None = spec.get("env_file")
        self.master, slave = os.openpty()
        if self.user is not None:  # the terminal is the user's, as login(1) makes it
            os.fchown(slave, self.user["uid"], _tty_group())
            os.fchmod(slave, 0o620)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, _winsize(rows, cols))
        attributes = termios.tcgetattr(slave)
        attributes[0] |= getattr(
            termios, "IUTF8", 0o40000
        )  # line editing erases whole UTF-8 characters
        termios.tcsetattr(slave, termios.TCSANOW, attributes)
        report_r, report_w = os.pipe()  # close-on-exec: EOF means exec succeeded
        self.pid = os.fork()
        if self.pid == 0:
            self._exec(slave, report_r, report_w)
        os.close(slave)
        os.close(report_w)
        self.failure = self._read_report(report_r)
        os.set_blocking(self.master, False)

    def _exec(self, slave: int, report_r: int, report_w: int) -> NoReturn:
        status, message = 127, "cannot start"
        try:
            os.close(self.master)
            os.close(report_r)
            _default_signals()
            os.login_tty(slave)  # new session, controlling terminal, stdin/out/err
            stage, target = "user", (self.user or {}).get("name", "")
            try:
                if self.user is not None:
                    _become(self.user)
                stage, target = "cwd", self.cwd or ""
                if self.cwd:
                    os.chdir(self.cwd)  # as the user: a folder they cannot enter fails
                elif self.user is not None:
                    _enter_home(self.user["home"])
                if self.env_file is not None:
                    stage, target = "env", "docker exec --env-file"
                    if report_w == ENV_FILE_FD:  # keep the report pipe out of its way
                        report_w = os.dup(report_w)
                    _env_pipe(self.env_file.encode())
                stage, target = "exec", self.command[0]
                os.execvpe(self.command[0], self.command, self.env)  # noqa: S606
            except OSError as error:
                status, message = _failure(stage, target, error)
        except BaseException as error:
            message = f"cannot start: {error}"
        finally:
            try:
                os.write(report_w, f"{status}\n{message}".encode())
            finally:
                os._exit(status)

    @staticmethod
    def _read_report(fd: int) -> tuple[int, str] | None:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        os.close(fd)
        if not chunks:
            return None
        status, _, message = b"".join(chunks).decode(errors="replace").partition("\n")
        return int(status), message

    def signal(self, number: int) -> None:
        """Send `number` to the child's process group, or to the child alone."""
        try:
            os.killpg(self.pid, number)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
