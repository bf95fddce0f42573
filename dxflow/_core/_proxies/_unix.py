"""Connecting to a unix socket target: the one helper every data plane uses.

The target policy (`_targets.py`) checks a socket's path when a proxy is created,
updated or restored. A check by path is not enough at connect time: a container with a
bind of the socket's folder in storage can swap the socket for a symlink to
/var/run/docker.sock, and `connect(path)` follows it (the Docker API: root on the host).
So no connect ever goes by the path. Each one:

1. opens the socket file with O_PATH beneath its allowed folder (`Upstream.socket_root`,
   the storage root or a host path) through the object store's walker: no link is
   followed on the way, and a link in the socket's place is opened as the link;
2. checks what the fd holds: a socket, and none of `Upstream.socket_denied` (a Docker
   socket by another name);
3. connects to `/proc/self/fd/N`: Linux resolves that magic link to the inode the fd
   holds, so whatever the path names by now cannot redirect the connection;
4. closes the fd (the connected socket does not need it).

Refusals are `SocketRefused` (an OSError): every caller already turns an OSError of a
connect into a 502 (or an unhealthy target) with its message.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat

from ..._exceptions import DxflowError, NotFound
from .._objects._walker import open_handle
from ._contract import Upstream

__all__ = ["SocketRefused", "connect_unix"]

_PROC_FD = os.path.isdir("/proc/self/fd")


class SocketRefused(OSError):
    """A unix socket target that is not (or no longer) what the policy allowed."""


def _refused(up: Upstream, why: str) -> SocketRefused:
    return SocketRefused(
        errno.EPERM,
        f"unix socket {up.socket_path!r} refused: {why} (a socket target is opened beneath "
        f"{up.socket_root!r} following no link; it may have been replaced since it was checked)",
    )


def _parts(up: Upstream) -> list[str]:
    path, root = up.socket_path or "", up.socket_root.rstrip("/") + "/"
    if not path.startswith(root) or "\0" in path:
        raise _refused(up, f"it is not inside {up.socket_root!r}")
    parts = [p for p in path[len(root) :].split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise _refused(up, "it is not a path to a file")
    return parts


def _same(path: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:  # no such socket on this host: nothing to be
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _open(up: Upstream) -> int:
    """An O_PATH fd of the socket file (see the module), checked."""
    if not _PROC_FD:  # fail closed: without /proc no connect can be pinned to the inode
        raise _refused(up, "this host has no /proc/self/fd to connect without a path")
    try:
        fd = open_handle(up.socket_root, _parts(up), up.socket_path or "")
    except NotFound:
        raise SocketRefused(errno.ENOENT, "no such socket") from None
    except DxflowError as exc:  # a link on the way, a file for a folder, a mode
        raise _refused(up, str(exc)) from None
    except OSError as exc:
        raise SocketRefused(exc.errno or errno.EIO, exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            raise _refused(up, "it is a symbolic link")
        if not stat.S_ISSOCK(st.st_mode):
            raise _refused(up, "it is not a socket")
        if any(_same(denied, st) for denied in up.socket_denied):
            raise _refused(up, "it is a Docker socket")
    except BaseException:
        os.close(fd)
        raise
    return fd


async def connect_unix(up: Upstream) -> socket.socket:
    """A connected (non-blocking) socket to the unix target `up`, never by its path.

    Raises `SocketRefused` or the connect's OSError. The few syscalls of the walk run on
    the event loop: they are local, bounded by the path's depth, and cheaper than a
    thread hop per connection.
    """
    fd = _open(up)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{fd}")
        except BaseException:
            sock.close()
            raise
    finally:
        os.close(fd)
    return sock
