"""DxflowFileSystem, in-process and over HTTP against a real server.

fsspec's own abstract suite runs first (copy, get, put, pipe, open); then the doors an
fsspec user takes: the entry point, URLs, pandas, `cat_ranges`, keys, moves, async use.
"""

from __future__ import annotations

import asyncio
import errno
import posixpath
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

import dxflow
from dxflow import AsyncEngine, Permission
from dxflow._core import EngineCore
from dxflow._filesystem import DxflowFileSystem
from dxflow._keypairs import load_private_key
from dxflow._transports._local import LocalTransport

from ..conftest import EngineFactory, KeyFactory

TRANSPORTS = ["local", "http"]


@pytest.fixture(autouse=True)
def _forget_cached_filesystems() -> Iterator[None]:
    """fsspec keeps every filesystem it made (pandas goes through it): close them."""
    yield
    for fs in list(DxflowFileSystem._cache.values()):
        fs.close()
    DxflowFileSystem.clear_instance_cache()


@pytest.fixture(params=TRANSPORTS)
def options(request: pytest.FixtureRequest, home: Path) -> dict[str, Any]:
    """Storage options naming the engine: its home in-process, or its URL and a key."""
    if request.param == "local":
        return {"home": str(home)}
    core: EngineCore = request.getfixturevalue("core")
    url = request.getfixturevalue("server_url")
    return {"url": url, "key": str(core.config.home.master_key)}


@pytest.fixture
def dxfs(options: dict[str, Any]) -> Iterator[DxflowFileSystem]:
    fs = DxflowFileSystem(**options, skip_instance_cache=True)
    yield fs
    fs.close()


class TestAbstractSuite(
    AbstractFixtures,
    AbstractCopyTests,
    AbstractGetTests,
    AbstractPutTests,
    AbstractPipeTests,
    AbstractOpenTests,
):
    """fsspec's suite, as fsspec's own implementations wire it."""

    @pytest.fixture
    def fs(self, dxfs: DxflowFileSystem) -> DxflowFileSystem:
        return dxfs

    @pytest.fixture
    def fs_join(self) -> Any:
        return posixpath.join

    @pytest.fixture
    def fs_path(self) -> str:
        return "suite"


# -- the entry point and URLs -------------------------------------------------------------


def test_entry_point_names_the_protocol(home: Path) -> None:
    fs = fsspec.filesystem("dxflow", home=str(home))
    assert isinstance(fs, DxflowFileSystem)
    with fsspec.open("dxflow://a/b.csv", "w", home=str(home)) as f:
        f.write("x,y\n1,2\n")
    with fsspec.open("dxflow:///a/b.csv", "r", home=str(home)) as f:
        assert f.read() == "x,y\n1,2\n"
    assert fs.ls("a", detail=False) == ["a/b.csv"]


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("dxflow://data/x.csv", "data/x.csv"),
        ("dxflow:///data/x.csv", "data/x.csv"),
        ("data/x.csv", "data/x.csv"),
        ("/data//./x.csv/", "data/x.csv"),
        ("dxflow://", ""),
        ("dxflow+https://node:7419/data/x.csv", "data/x.csv"),
        ("dxflow+http://127.0.0.1:80", ""),
    ],
)
def test_paths_are_relative_to_the_storage_root(given: str, path: str) -> None:
    assert DxflowFileSystem._strip_protocol(given) == path


def test_a_url_may_name_the_engine(server_url: str, core: EngineCore) -> None:
    key = str(core.config.home.master_key)
    url = server_url.replace("http://", "dxflow+http://") + "/data/x.bin"
    with fsspec.open(url, "wb", key=key) as f:
        f.write(b"remote")
    fs, path = fsspec.core.url_to_fs(url, key=key)
    assert (fs.url, path) == (server_url, "data/x.bin")
    assert fs.cat(path) == b"remote"
    assert fs.unstrip_protocol(path) == "dxflow://data/x.bin"


def test_pandas_round_trip(options: dict[str, Any]) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"name": ["a", "b", "c"], "value": [1.5, 2.5, -3.0]})
    frame.to_csv("dxflow://data/x.csv", index=False, storage_options=options)
    back = pandas.read_csv("dxflow://data/x.csv", storage_options=options)
    pandas.testing.assert_frame_equal(back, frame)


# -- reading ------------------------------------------------------------------------------


def test_cat_ranges_of_many_ranges_in_few_round_trips(dxfs: DxflowFileSystem) -> None:
    rng = random.Random(7)
    files = {f"r/{i}.bin": rng.randbytes(rng.randrange(0, 5000)) for i in range(4)}
    dxfs.pipe(files)
    paths: list[str] = []
    starts: list[int | None] = []
    ends: list[int | None] = []
    expected: list[bytes] = []
    for _ in range(25_000):  # more than one batch of 10,000
        path = rng.choice(list(files))
        data = files[path]
        start = rng.choice([None, -rng.randrange(1, 6000), rng.randrange(0, 6000)])
        end = rng.choice([None, -rng.randrange(1, 6000), rng.randrange(0, 6000)])
        paths.append(path)
        starts.append(start)
        ends.append(end)
        expected.append(data[start:end])
    assert dxfs.cat_ranges(paths, starts, ends) == expected


def test_cat_ranges_reports_each_bad_path_in_place(dxfs: DxflowFileSystem) -> None:
    dxfs.pipe("r/a.bin", b"0123456789")
    dxfs.mkdir("r/folder")
    out = dxfs.cat_ranges(["r/a.bin", "r/missing", "r/folder", "r/a.bin"], 2, 5)
    assert out[0] == out[3] == b"234"
    assert isinstance(out[1], FileNotFoundError)
    assert isinstance(out[2], IsADirectoryError)
    with pytest.raises(FileNotFoundError):
        dxfs.cat_ranges(["r/missing"], 0, 1, on_error="raise")


def test_cat_file_counts_negative_bounds_from_the_end(dxfs: DxflowFileSystem) -> None:
    dxfs.pipe("n.txt", b"hello world")
    assert dxfs.cat_file("n.txt", -5) == b"world"
    assert dxfs.cat_file("n.txt", 2, -2) == b"llo wor"
    assert dxfs.cat_file("n.txt", 20) == b""
    assert dxfs.cat_file("n.txt", 5, 5) == b""
    with pytest.raises(FileNotFoundError):
        dxfs.cat_file("missing", 3, 3)
    with pytest.raises(IsADirectoryError):
        dxfs.cat_file("")


def test_open_reads_any_range(dxfs: DxflowFileSystem) -> None:
    data = random.Random(1).randbytes(100_000)
    dxfs.pipe("big.bin", data)
    with dxfs.open("big.bin", "rb", block_size=4096) as f:
        f.seek(50_000)
        assert f.read(10) == data[50_000:50_010]
        f.seek(-7, 2)
        assert f.read() == data[-7:]
        assert f.info()["size"] == len(data)
    with pytest.raises(IsADirectoryError):
        dxfs.open("", "rb")


def test_find_and_listings_cover_deep_trees(dxfs: DxflowFileSystem) -> None:
    deep = "/".join(["d"] * 70) + "/leaf.txt"  # past the 64 levels of one listing
    dxfs.pipe(deep, b"x")
    dxfs.pipe(".hidden/file", b"y")
    assert dxfs.find("") == sorted([".hidden/file", deep])
    assert dxfs.find("d", maxdepth=2) == []
    assert dxfs.find("d", maxdepth=2, withdirs=True) == ["d", "d/d", "d/d/d"]
    assert dxfs.du("") == 2
    assert dxfs.ukey(deep) == dxfs.info(deep)["etag"]
    assert dxfs.modified(deep).timestamp() == pytest.approx(dxfs.info(deep)["mtime"])


# -- writing ------------------------------------------------------------------------------


def test_writes_are_committed_at_close(dxfs: DxflowFileSystem) -> None:
    f = dxfs.open("w/out.bin", "wb", block_size=1024)
    f.write(b"a" * 5000)
    f.flush()
    assert not dxfs.exists("w/out.bin")  # nothing shows before close
    f.close()
    assert dxfs.cat("w/out.bin") == b"a" * 5000
    with dxfs.open("w/out.bin", "ab") as f:
        f.write(b"b")
    assert dxfs.cat("w/out.bin") == b"a" * 5000 + b"b"
    with dxfs.transaction, dxfs.open("w/tx.bin", "wb") as f:
        f.write(b"tx")
    assert dxfs.cat("w/tx.bin") == b"tx"


def test_a_big_write_goes_through_disk(
    dxfs: DxflowFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dxflow._filesystem_file.SPOOL_MEMORY", 1000)
    data = random.Random(2).randbytes(300_000)
    with dxfs.open("w/big.bin", "wb", block_size=65536) as f:
        for offset in range(0, len(data), 7000):
            f.write(data[offset : offset + 7000])
    assert dxfs.cat("w/big.bin") == data


def test_moves_use_the_store_rename(dxfs: DxflowFileSystem) -> None:
    dxfs.pipe({"m/a.txt": b"a", "m/sub/b.txt": b"b", "other.txt": b"o"})
    checksum = dxfs.checksum("m/a.txt")
    dxfs.mv("m", "moved")  # a folder moves whole
    assert dxfs.find("", withdirs=True) == ["moved", "moved/a.txt", "moved/sub",
                                             "moved/sub/b.txt", "other.txt"]  # fmt: skip
    dxfs.mv("other.txt", "moved/sub")  # into an existing folder
    dxfs.mv("moved/sub/other.txt", "moved/a.txt")  # over a file
    assert dxfs.cat("moved/a.txt") == b"o"
    assert dxfs.checksum("moved/a.txt") != checksum
    with pytest.raises(FileNotFoundError):
        dxfs.mv("nothing", "there")


def test_errors_are_the_ones_fsspec_users_catch(dxfs: DxflowFileSystem) -> None:
    dxfs.pipe("e/f.txt", b"x")
    with pytest.raises(FileNotFoundError) as missing:
        dxfs.info("e/none")
    assert isinstance(missing.value.__cause__, dxflow.NotFound)
    with pytest.raises(OSError) as full:
        dxfs.rm("e")
    assert full.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        dxfs.makedirs("e")
    dxfs.makedirs("e", exist_ok=True)
    with pytest.raises(FileExistsError):
        dxfs.mkdir("e/f.txt")
    with pytest.raises(FileNotFoundError):
        dxfs.mkdir("x/y/z", create_parents=False)
    dxfs.rm(["e/f.txt", "e"], recursive=True)
    assert not dxfs.exists("e")


# -- engines, keys and loops --------------------------------------------------------------


def _filesystem_as(transport: str, core: EngineCore, key: Path, request: Any) -> Any:
    if transport == "local":
        engine = AsyncEngine(transport=LocalTransport(core, load_private_key(key), owns_core=False))
        return engine.objects.fs()
    return DxflowFileSystem(url=request.getfixturevalue("server_url"), key=str(key))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_read_only_key_reads_but_cannot_write(
    transport: str, core: EngineCore, make_key: KeyFactory, request: pytest.FixtureRequest
) -> None:
    """Denied writes raise PermissionError (its cause is dxflow.PermissionDenied)."""
    DxflowFileSystem(engine=AsyncEngine(transport=LocalTransport(core, owns_core=False))).pipe(
        "shared/r.txt", b"read me"
    )
    pair = make_key(Permission.OBJECT | Permission.READ_ONLY)
    fs = _filesystem_as(transport, core, pair.private, request)
    assert fs.cat("shared/r.txt") == b"read me"
    assert fs.ls("shared", detail=False) == ["shared/r.txt"]
    with pytest.raises(PermissionError) as denied:
        fs.pipe("shared/w.txt", b"no")
    assert isinstance(denied.value.__cause__, dxflow.PermissionDenied)
    with pytest.raises(PermissionError), fs.open("shared/w.txt", "wb") as f:
        f.write(b"no")
    for write in (lambda: fs.rm("shared/r.txt"), lambda: fs.mv("shared/r.txt", "x")):
        with pytest.raises(PermissionError):
            write()
    assert fs.find("") == ["shared/r.txt"]
    fs.close()


def test_a_blocking_engine_lends_its_store(make_engine: EngineFactory) -> None:
    """`engine.objects.fs()` works whatever loop the engine's transport lives on."""
    engine = make_engine()
    fs = engine.objects.fs()
    fs.pipe("lent/a.txt", b"lent")
    assert engine.objects.cat("lent/a.txt") == b"lent"
    with engine.objects.open("lent/a.txt") as f:
        assert f.read() == b"lent"
    assert fs is engine.objects.fs()  # one per engine, as long as it lives
    assert fs is not make_engine().objects.fs()  # never one for two engines
    fs.close()
    assert engine.objects.exists("lent/a.txt")  # the engine itself stays open


def test_async_use_on_the_callers_loop(options: dict[str, Any]) -> None:
    fs = DxflowFileSystem(**options, asynchronous=True, skip_instance_cache=True)

    async def main() -> list[Any]:
        await fs._pipe_file("async/a.txt", b"async")
        out = [await fs._cat_file("async/a.txt"), await fs._ls("async", detail=False)]
        await fs._aclose()
        return out

    assert asyncio.run(main()) == [b"async", ["async/a.txt"]]
    assert asyncio.run(main()) == [b"async", ["async/a.txt"]]  # a new loop, a new client


def test_put_and_get_a_file_past_the_one_request_size(
    dxfs: DxflowFileSystem, tmp_path: Path
) -> None:
    """Over HTTP a file this big goes as a resumable (tus) upload."""
    from dxflow._transports._resumable import SMALL

    source = tmp_path / "big.bin"
    source.write_bytes(random.Random(3).randbytes(SMALL + 12345))
    dxfs.put(str(source), "t/big.bin")
    assert dxfs.size("t/big.bin") == source.stat().st_size
    dxfs.get("t/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()


def test_the_environment_names_the_engine(
    server_url: str, core: EngineCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DXFLOW_URL", server_url)
    monkeypatch.setenv("DXFLOW_KEY", str(core.config.home.master_key))
    fs = fsspec.filesystem("dxflow")
    fs.pipe("env.txt", b"from the environment")
    assert fs.url is None  # resolved when first used, on fsspec's loop
    assert core.objects.storage.resolve("env.txt").read_bytes() == b"from the environment"


def test_a_move_never_replaces_a_folder(dxfs: DxflowFileSystem) -> None:
    dxfs.pipe({"a/x/1": b"1", "b/x/2": b"2"})
    with pytest.raises(FileExistsError):
        dxfs.mv("a/x", "b")  # b/x is in the way
    assert dxfs.find("") == ["a/x/1", "b/x/2"]
