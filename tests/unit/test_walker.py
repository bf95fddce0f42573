"""The one path walker, with the kernel's openat2 and with the component walk that kernels
before 5.6 (or a seccomp filter refusing openat2) get: the same answers either way."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dxflow._core._objects import _walker
from dxflow._core._objects._paths import Storage
from dxflow._exceptions import Conflict, InvalidRequest, NotFound


@pytest.fixture(params=["openat2", "component walk"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Storage:
    if request.param == "openat2" and not _walker.openat2_available():
        pytest.skip("this kernel has no openat2")
    if request.param == "component walk":
        monkeypatch.setattr(_walker, "_openat2", None)
    store = Storage(tmp_path / "root")
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "f.txt").write_text("outside")
    (store.root / "a" / "b").mkdir(parents=True)
    (store.root / "a" / "b" / "f.txt").write_text("inside")
    (store.root / "a" / "link").symlink_to(outside)
    (store.root / "a" / "file-link").symlink_to(outside / "deep" / "f.txt")
    os.mkfifo(store.root / "a" / "fifo")
    return store


def test_files_and_folders_inside_are_reached(storage: Storage) -> None:
    fd, st = storage.walker.open_file(["a", "b", "f.txt"], "a/b/f.txt")
    try:
        assert os.pread(fd, 100, 0) == b"inside" and st.st_size == 6
    finally:
        os.close(fd)
    folder = storage.walker.open_dir(["a", "b"], "a/b")
    try:
        assert os.listdir(folder) == ["f.txt"]
    finally:
        os.close(folder)


@pytest.mark.parametrize(
    ("path", "link"),
    [("a/link/deep/f.txt", "a/link"), ("a/link", "a/link"), ("a/file-link", "a/file-link")],
)
def test_a_link_on_the_way_is_refused_and_named(storage: Storage, path: str, link: str) -> None:
    with pytest.raises(InvalidRequest, match=f"'{link}' is a symbolic link"):
        fd, _ = storage.walker.open_file(path.split("/"), path)
        os.close(fd)
    if path != link:
        with pytest.raises(InvalidRequest, match=f"'{link}' is a symbolic link"):
            os.close(storage.walker.open_dir(path.split("/")[:-1], path))


def test_missing_fifo_and_file_as_folder(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.walker.open_file(["a", "nope"], "a/nope")
    with pytest.raises(NotFound):
        storage.walker.open_dir(["a", "nope", "x"], "a/nope/x")
    with pytest.raises(InvalidRequest, match="not a regular file"):
        storage.walker.open_file(["a", "fifo"], "a/fifo")  # refused, never waited on
    with pytest.raises(Conflict, match="is a file, not a folder"):
        storage.walker.open_dir(["a", "b", "f.txt", "x"], "a/b/f.txt/x", create=True)


def test_folders_are_made_with_the_configured_mode_without_following(
    storage: Storage, tmp_path: Path
) -> None:
    storage.walker.dir_mode = 0o750  # wider than the umask lets mkdir make
    old = os.umask(0o077)
    try:
        os.close(storage.walker.open_dir(["n1", "n2"], "n1/n2", create=True))
    finally:
        os.umask(old)
    for folder in ("n1", "n1/n2"):
        assert stat.S_IMODE((storage.root / folder).stat().st_mode) == 0o750
    with pytest.raises(InvalidRequest, match="symbolic link"):
        storage.walker.open_dir(["a", "link", "made"], "a/link/made", create=True)
    assert not (tmp_path / "outside" / "made").exists()


def test_resolve_refuses_links_for_callers_that_need_a_name(storage: Storage) -> None:
    assert storage.resolve("a/b/new.txt") == storage.root / "a" / "b" / "new.txt"
    for path in ("a/link/deep/f.txt", "a/file-link"):
        with pytest.raises(InvalidRequest, match="symbolic link"):
            storage.resolve(path)
