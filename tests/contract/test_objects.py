"""The object store behaves the same in-process and over HTTP."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from dxflow import (
    Conflict,
    Engine,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Permission,
    PermissionDenied,
    RangeNotSatisfiable,
)
from dxflow._core import EngineCore

from ..conftest import EngineFactory, KeyFactory


def test_pipe_cat_info_and_ranges(engine: Engine) -> None:
    data = os.urandom(100_000)
    info = engine.objects.pipe("data/blob.bin", data)
    assert (info.path, info.type, info.size) == ("data/blob.bin", "file", len(data))
    assert engine.objects.cat("data/blob.bin") == data
    assert engine.objects.cat("data/blob.bin", 10, 20) == data[10:20]
    assert engine.objects.cat("data/blob.bin", 99_990) == data[99_990:]
    assert engine.objects.cat("data/blob.bin", 0, 10**9) == data  # clipped, as slices are
    ranges = [("data/blob.bin", i * 7, i * 7 + 5) for i in range(200)]
    assert engine.objects.cat_ranges(ranges) == [data[s:e] for _, s, e in ranges]
    assert engine.objects.checksum("data/blob.bin") == hashlib.sha256(data).hexdigest()
    with pytest.raises(RangeNotSatisfiable, match="outside"):
        engine.objects.cat("data/blob.bin", 200_000, 200_010)


def test_etag_changes_with_the_content(engine: Engine) -> None:
    first = engine.objects.pipe("f.txt", b"one")
    second = engine.objects.pipe("f.txt", b"two")
    assert first.etag and second.etag and first.etag != second.etag
    assert engine.objects.info("f.txt").etag == second.etag


def test_ls_pages_patterns_depth_and_hidden(engine: Engine) -> None:
    for name in ("b.csv", "a.csv", "c.txt", ".hidden", "sub/d.csv"):
        engine.objects.pipe(f"dir/{name}", b"x")
    names = [i.name for i in engine.objects.ls("dir")]
    assert names == ["a.csv", "b.csv", "c.txt", "sub"]
    assert [i.name for i in engine.objects.ls("dir", pattern="*.csv")] == ["a.csv", "b.csv"]
    assert ".hidden" in [i.name for i in engine.objects.ls("dir", hidden=True)]
    deep = [i.path for i in engine.objects.ls("dir", depth=2, pattern="*.csv")]
    assert deep == ["dir/a.csv", "dir/b.csv", "dir/sub/d.csv"]
    page = engine.objects.listing("dir", limit=2, offset=1)
    assert page.total == 4 and [i.name for i in page.items] == ["b.csv", "c.txt"]
    assert engine.objects.exists("dir/a.csv") and not engine.objects.exists("dir/zzz")
    assert ".dxflow" not in [i.name for i in engine.objects.ls("", hidden=True)]


def test_put_get_files_trees_streams_and_bytes(engine: Engine, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "x" / "y").mkdir(parents=True)
    (tree / "x" / "y" / "deep.bin").write_bytes(os.urandom(3 << 20))
    (tree / "top.txt").write_text("top")
    (tree / "empty").mkdir()
    engine.objects.put(tree, "up/tree")
    assert engine.objects.info("up/tree/empty").type == "directory"
    engine.objects.put(io.BytesIO(b"from a stream"), "up/stream.txt")
    engine.objects.put(b"raw bytes", "up/bytes.txt")
    assert engine.objects.cat("up/stream.txt") == b"from a stream"
    assert engine.objects.cat("up/bytes.txt") == b"raw bytes"
    back = engine.objects.get("up/tree", tmp_path / "back")
    assert (back / "x/y/deep.bin").read_bytes() == (tree / "x/y/deep.bin").read_bytes()
    assert (back / "top.txt").read_text() == "top"
    seen: list[tuple[int, int | None]] = []
    single = engine.objects.get(
        "up/tree/top.txt", tmp_path, progress=lambda d, t: seen.append((d, t))
    )
    assert single == tmp_path / "top.txt" and single.read_text() == "top"
    assert seen and seen[-1] == (3, 3)
    with pytest.raises(Conflict, match="exists"):
        engine.objects.put(b"again", "up/bytes.txt")
    engine.objects.put(b"again", "up/bytes.txt", overwrite=True)
    assert engine.objects.cat("up/bytes.txt") == b"again"


def test_get_into_a_pipe_writes_into_it(engine: Engine, tmp_path: Path) -> None:
    """`get(path, "/dev/stdout")` or into a FIFO streams into it; a temp file renamed over
    it (as for regular files) would replace the device or the pipe."""
    data = os.urandom(5 << 20)  # over the 1 MiB of a small download: the streamed path
    engine.objects.pipe("pipe/src.bin", data)
    (tmp_path / "out").mkdir()
    fifo = tmp_path / "out" / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    engine.objects.get("pipe/src.bin", fifo)
    reader.join(timeout=30)
    assert received == [data]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert os.listdir(tmp_path / "out") == ["fifo"]  # no temp file beside it


def test_mkdir_mv_cp_rm(engine: Engine) -> None:
    engine.objects.mkdir("a/b/c")
    engine.objects.pipe("a/b/c/f.txt", b"f")
    engine.objects.cp("a/b", "copy")
    assert engine.objects.cat("copy/c/f.txt") == b"f"
    engine.objects.mv("copy", "moved")
    assert not engine.objects.exists("copy") and engine.objects.cat("moved/c/f.txt") == b"f"
    with pytest.raises(Conflict, match="not empty"):
        engine.objects.rm("moved")
    engine.objects.rm("moved", recursive=True)
    assert not engine.objects.exists("moved")
    with pytest.raises(InvalidRequest, match="inside itself"):
        engine.objects.mv("a", "a/b/inner")
    with pytest.raises(Conflict, match="exists"):
        engine.objects.pipe("a/other.txt", b"o") and engine.objects.cp("a/other.txt", "a/b/c/f.txt")
    results = engine.objects.rm_many(["a/other.txt", "nope.txt", "../x"])
    assert [(r.path, r.ok, r.code) for r in results] == [
        ("a/other.txt", True, None), ("nope.txt", False, "not_found"),
        ("../x", False, "invalid_request"),
    ]  # fmt: skip
    with pytest.raises(NotFound, match="nope"):
        engine.objects.info("nope")


def test_zip_and_unzip_with_progress(engine: Engine) -> None:
    engine.objects.pipe("proj/a.txt", b"a" * 1000)
    engine.objects.pipe("proj/sub/b.txt", b"b")
    events: list[str] = []
    done = engine.objects.zip("proj", progress=lambda e: events.append(e.action))
    assert done.action == "done" and done.dest == "proj.zip" and done.entries >= 2
    assert "zipping" in events
    archive = zipfile.ZipFile(io.BytesIO(engine.objects.cat("proj.zip")))
    assert sorted(n for n in archive.namelist() if not n.endswith("/")) == ["a.txt", "sub/b.txt"]
    done = engine.objects.unzip("proj.zip", "restored")
    assert engine.objects.cat("restored/sub/b.txt") == b"b"
    assert done.bytes == 1001


def test_unzip_refuses_zip_slip_and_bombs_leaving_nothing(engine: Engine) -> None:
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as archive:
        archive.writestr("fine.txt", "ok")
        archive.writestr("../../escaped.txt", "evil")
    engine.objects.pipe("slip.zip", slip.getvalue())
    with pytest.raises(InvalidRequest, match="zip slip"):
        engine.objects.unzip("slip.zip", "out")
    assert not engine.objects.exists("out")
    bomb = io.BytesIO()
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros", "w", force_zip64=True) as member,
    ):
        for _ in range(64):
            member.write(bytes(1 << 20))
    engine.objects.pipe("bomb.zip", bomb.getvalue())
    with pytest.raises(PayloadTooLarge, match=r"(?i)zip bomb|ratio"):
        engine.objects.unzip("bomb.zip", "boom")
    assert not engine.objects.exists("boom")


HOSTILE = [
    ("../etc/passwd", "leave the storage root"),
    ("a/../../x", "leave the storage root"),
    ("/etc/passwd", "absolute"),
    ("a\\..\\b", "backslash"),
    ("bad\x00name", "NUL"),
    ("x" * 300, "longer than 255"),
    (".dxflow/uploads", "engine's own folder"),
]


@pytest.mark.parametrize(("path", "why"), HOSTILE, ids=[h[1] for h in HOSTILE])
def test_hostile_paths_are_refused_naming_the_path(engine: Engine, path: str, why: str) -> None:
    for call in (
        lambda: engine.objects.info(path),
        lambda: engine.objects.pipe(path, b"x"),
        lambda: engine.objects.cat(path),
        lambda: engine.objects.mkdir(path),
        lambda: engine.objects.ls(path),
    ):
        with pytest.raises(InvalidRequest, match=why) as caught:
            call()
        assert "invalid path" in str(caught.value)


def test_symlinks_out_of_storage_are_refused(
    engine: Engine, core: EngineCore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = core.objects.storage.root
    os.symlink(outside, root / "link")
    os.symlink(outside / "secret.txt", root / "file-link")
    for path in ("link/secret.txt", "file-link", "link"):
        with pytest.raises(InvalidRequest, match="outside the storage root"):
            engine.objects.cat(path)
    with pytest.raises(InvalidRequest, match="outside the storage root"):
        engine.objects.pipe("link/planted.txt", b"x")
    assert not (outside / "planted.txt").exists()


def test_read_only_keys_read_but_never_write(
    make_engine: EngineFactory, make_key: KeyFactory, engine: Engine, server_url: str
) -> None:  # a server serves the home: links have a URL
    engine.objects.pipe("shared/r.txt", b"r")
    reader = make_engine(make_key(Permission.OBJECT | Permission.READ_ONLY).private)
    assert reader.objects.cat("shared/r.txt") == b"r"
    assert reader.objects.share("shared/r.txt").url
    for call in (
        lambda: reader.objects.pipe("shared/w.txt", b"w"),
        lambda: reader.objects.zip("shared"),
        lambda: reader.objects.unzip("shared/r.txt"),
        lambda: reader.objects.rm("shared/r.txt"),
        lambda: reader.objects.share("shared/r.txt", writable=True),
    ):
        with pytest.raises(PermissionDenied, match="READ_ONLY"):
            call()
    assert not engine.objects.exists("shared/w.txt")
    outsider = make_engine(make_key(Permission.SHELL).private)
    with pytest.raises(PermissionDenied, match="OBJECT"):
        outsider.objects.ls()


@pytest.mark.parametrize("door", ["local", "http"])
def test_quota_gives_507_and_leaves_no_partial_file(tmp_path: Path, door: str) -> None:
    import httpx

    from dxflow import InsufficientStorage
    from dxflow._config import load_config
    from dxflow._keypairs import load_private_key
    from dxflow._transports._http import HttpTransport
    from dxflow._transports._local import LocalTransport
    from dxflow_server._app import create_app

    core = EngineCore(load_config(tmp_path / "home", storage_quota="1M"))
    if door == "local":
        transport: object = LocalTransport(core, owns_core=False)
    else:
        asgi = httpx.ASGITransport(create_app(core))
        key = load_private_key(core.config.home.master_key)
        transport = HttpTransport("http://engine", key, transport=asgi)
    with Engine(transport=transport) as engine:  # type: ignore[arg-type]
        engine.objects.pipe("small.bin", bytes(600_000))
        with pytest.raises(InsufficientStorage, match="quota"):
            engine.objects.pipe("big.bin", bytes(600_000))
        with pytest.raises(InsufficientStorage, match="quota"):
            engine.objects.put(io.BytesIO(bytes(600_000)), "streamed.bin")  # size unknown
        with pytest.raises(InsufficientStorage, match="quota"):
            engine.objects.cp("small.bin", "copy.bin")
        assert [i.name for i in engine.objects.ls()] == ["small.bin"]
        assert os.listdir(core.objects.storage.private / "tmp") == []
        engine.objects.rm("small.bin")
        engine.objects.pipe("big.bin", bytes(600_000))  # room again once removed
    core.close()
