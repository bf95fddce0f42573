"""`connect_unix`: a unix socket target is opened beneath its allowed folder, following no
link, and connected to through the fd (never by its path); and where the target policy
says to open it from."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dxflow._core._objects import _walker
from dxflow._core._proxies._contract import Upstream
from dxflow._core._proxies._health import check_target
from dxflow._core._proxies._targets import TargetPolicy, parse_target
from dxflow._core._proxies._unix import SocketRefused, connect_unix
from dxflow._core._workflows._policy import PolicyRoots
from dxflow._models import ProxyHealth

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux /proc")


@pytest.fixture(autouse=True, params=["openat2", "component walk"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways the walker opens a path: one openat2 call, or (kernels before 5.6, some
    seccomp filters) one O_NOFOLLOW component at a time."""
    if request.param == "openat2" and not _walker.openat2_available():
        pytest.skip("this kernel has no openat2 (the component walk is tested)")
    if request.param == "component walk":
        monkeypatch.setattr(_walker, "_openat2", None)


@pytest.fixture
def place(tmp_path: Path) -> Iterator[tuple[Path, Path, socket.socket, socket.socket]]:
    """storage/app/app.sock (inside) and outside/app.sock (the Docker socket's stand-in)."""
    (tmp_path / "storage" / "app").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    inside, outside = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    inside.bind(str(tmp_path / "storage" / "app" / "app.sock"))
    outside.bind(str(tmp_path / "outside" / "app.sock"))
    for listener in (inside, outside):
        listener.listen(16)
        listener.setblocking(False)
    yield tmp_path / "storage", tmp_path / "outside", inside, outside
    inside.close()
    outside.close()


def _up(storage: Path, path: Path | None = None, denied: tuple[str, ...] = ()) -> Upstream:
    path = path or storage / "app" / "app.sock"
    return Upstream(f"unix:{path}", "unix", socket_path=str(path), socket_root=str(storage),
                    socket_denied=denied)  # fmt: skip


def _connect(up: Upstream) -> socket.socket:
    async def main() -> socket.socket:
        return await connect_unix(up)

    return asyncio.run(main())


def _accepted(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_socket_checked_is_the_one_connected(place: tuple) -> None:
    storage, _, inside, outside = place
    before = _fds()
    _connect(_up(storage)).close()
    assert _accepted(inside) and not _accepted(outside)
    assert _fds() == before  # the O_PATH fd is closed after the connect


def test_a_socket_swapped_for_a_link_is_refused(place: tuple) -> None:
    storage, out, inside, outside = place
    os.rename(storage / "app" / "app.sock", storage / "app" / "real.sock")
    (storage / "app" / "app.sock").symlink_to(out / "app.sock")
    before = _fds()
    with pytest.raises(SocketRefused, match="symbolic link"):
        _connect(_up(storage))
    assert not _accepted(outside) and not _accepted(inside)
    assert _fds() == before


def test_a_folder_on_the_way_swapped_for_a_link_is_refused(place: tuple) -> None:
    storage, out, _, outside = place
    os.rename(storage / "app", storage / "was")
    (storage / "app").symlink_to(out)  # out/app.sock: the same name, by another road
    with pytest.raises(SocketRefused, match="symbolic link"):
        _connect(_up(storage))
    assert not _accepted(outside)


@pytest.mark.parametrize("kind", ["file", "folder", "missing"])
def test_what_is_no_socket_is_refused(place: tuple, kind: str) -> None:
    storage = place[0]
    target = storage / "app" / "app.sock"
    target.unlink()
    if kind == "file":
        target.write_text("x")
    elif kind == "folder":
        target.mkdir()
    with pytest.raises(SocketRefused, match="no such socket" if kind == "missing" else "not a"):
        _connect(_up(storage))


def test_a_docker_socket_by_another_name_is_refused(place: tuple) -> None:
    storage, _, inside, _ = place
    os.link(storage / "app" / "app.sock", storage / "app" / "innocent.sock")
    denied = (str(storage / "app" / "app.sock"),)  # stands for /var/run/docker.sock
    with pytest.raises(SocketRefused, match="Docker socket"):
        _connect(_up(storage, storage / "app" / "innocent.sock", denied))
    assert not _accepted(inside)


def test_a_path_outside_its_root_is_refused(place: tuple) -> None:
    storage, out, _, outside = place
    with pytest.raises(SocketRefused, match="not inside"):
        _connect(_up(storage, out / "app.sock"))
    with pytest.raises(SocketRefused, match="not a path"):
        _connect(_up(storage, storage / "app" / ".." / "app" / "app.sock"))
    assert not _accepted(outside)


def test_a_health_check_says_why(place: tuple) -> None:
    storage, out, _, outside = place
    os.rename(storage / "app" / "app.sock", storage / "app" / "real.sock")
    (storage / "app" / "app.sock").symlink_to(out / "app.sock")
    error = asyncio.run(check_target(_up(storage), ProxyHealth(), True, tcp=True))
    assert error is not None and "symbolic link" in error
    assert not _accepted(outside)


def test_the_policy_names_the_narrowest_allowed_folder(tmp_path: Path) -> None:
    storage, shared = tmp_path / "storage", tmp_path / "shared"
    roots = PolicyRoots.create(storage, tmp_path / "home", [str(shared), str(storage / "deep")])
    policy = TargetPolicy(roots)

    def checked(path: Path, master: bool = False) -> Upstream:
        return policy.check(parse_target(f"unix:{path}", "http"), master)

    assert checked(storage / "a.sock").socket_root == str(storage)
    assert checked(storage / "deep" / "a.sock").socket_root == str(storage / "deep")
    assert checked(shared / "x" / "a.sock").socket_root == str(shared)
    assert checked(storage / "a.sock").socket_denied == roots.sockets
    master = checked(tmp_path / "elsewhere.sock", master=True)
    assert (master.socket_root, master.socket_denied) == ("/", ())  # walked from /, too
