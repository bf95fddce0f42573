"""Attacks on the object store by a non-MASTER OBJECT key, over the real HTTP server.

Each test is a finding of issue 8 §3 that used to reach what it reached: the private
folder through `unzip` into ".", the quota bypassed by `zip` output and unfinished tus
uploads, a bomb made of entries under 1 MiB, files forced to 0644, and listings that
reported a planted symlink's outside target. (The symlink race is test_objects_race.py.)
"""

from __future__ import annotations

import base64
import io
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dxflow import Engine, InsufficientStorage, InvalidRequest, PayloadTooLarge, Permission
from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._exceptions import ConfigError

from ..conftest import EngineFactory, KeyFactory

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
# Names that are the private folder once case-folded or NFKC-normalised (full-width
# letters), or once trailing dots and spaces are dropped (as Windows file systems do).
FULL_WIDTH = "\uff0e\uff44\uff58\uff46\uff4c\uff4f\uff57"


@pytest.fixture
def home(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The engine home; `indirect` parameters become its config.toml settings."""
    root = tmp_path / "home"
    settings: dict[str, str] = getattr(request, "param", {})
    if settings:
        root.mkdir(parents=True)
        lines = [f'{key} = "{value}"' for key, value in settings.items()]
        (root / "config.toml").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def transport() -> str:
    return "http"  # the attacker's door: the REST API with a real key


@pytest.fixture
def user(make_engine: EngineFactory, make_key: KeyFactory) -> Engine:
    """An OBJECT key: everything a non-MASTER user of the store can do."""
    return make_engine(make_key(Permission.OBJECT).private)


@pytest.fixture
def tus(core: EngineCore, server_url: str, make_key: KeyFactory) -> Iterator[httpx.Client]:
    """Raw tus over HTTP as another OBJECT identity."""
    name = "uploader"
    make_key(Permission.OBJECT, identity=name)
    record = core.keys.get(name)
    assert record is not None
    token = core.auth.issue(record, 3600).token
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def _meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def _start_upload(http: httpx.Client, path: str, length: int, first: bytes) -> str:
    headers = {**TUS, "Upload-Metadata": _meta(path=path), "Upload-Length": str(length)}
    reply = http.post("/api/uploads", headers=headers)
    assert reply.status_code == 201, reply.text
    url = reply.headers["Location"]
    patch = http.patch(url, content=first, headers={**PATCH, "Upload-Offset": "0"})
    assert patch.status_code == 204, patch.text
    return url


def _zip(entries: dict[str, bytes], level: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", level) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# -- the private folder -------------------------------------------------------------------


def test_unzip_into_the_root_cannot_reach_the_private_folder(
    user: Engine, tus: httpx.Client, core: EngineCore
) -> None:
    url = _start_upload(tus, "victim.bin", 10, b"12345")
    upload_id = url.rsplit("/", 1)[-1]
    partial = core.objects.storage.private / "uploads" / upload_id
    assert partial.read_bytes() == b"12345"
    for name in (f".dxflow/uploads/{upload_id}", ".DXFLOW/x", f"{FULL_WIDTH}/x", ".dxflow./x"):
        user.objects.pipe("evil.zip", _zip({"fine.txt": b"ok", name: b"OVERWRITTEN"}))
        with pytest.raises(InvalidRequest, match=r"\.dxflow/, the engine's own folder"):
            user.objects.unzip("evil.zip", ".", overwrite=True)
    assert partial.read_bytes() == b"12345"  # the other identity's upload is intact
    assert not user.objects.exists("fine.txt")  # refused before anything was written
    assert sorted(os.listdir(core.objects.storage.root)) == [".dxflow", "evil.zip"]
    # ... and the upload still completes.
    reply = tus.patch(url, content=b"67890", headers={**PATCH, "Upload-Offset": "5"})
    assert reply.status_code == 204 and user.objects.cat("victim.bin") == b"1234567890"


@pytest.mark.parametrize("private", [".dxflow", ".DXFLOW", ".dxflow.", FULL_WIDTH, ".Dxflow "])
def test_no_operation_takes_a_private_destination(user: Engine, private: str) -> None:
    user.objects.pipe("data/a.txt", b"a")
    attempts = {
        "pipe": lambda: user.objects.pipe(f"{private}/tmp/x", b"x"),
        "mkdir": lambda: user.objects.mkdir(f"{private}/uploads/y"),
        "mv": lambda: user.objects.mv("data/a.txt", f"{private}/tmp/a.txt"),
        "cp": lambda: user.objects.cp("data", f"{private}/copy"),
        "zip dest": lambda: user.objects.zip("data", f"{private}/tmp/d.zip"),
        "zip source": lambda: user.objects.zip(private, "p.zip"),
        "unzip dest": lambda: user.objects.unzip("data.zip", f"{private}/tmp"),
        "ls": lambda: user.objects.ls(private),
        "cat": lambda: user.objects.cat(f"{private}/tmp"),
        "rm": lambda: user.objects.rm(private, recursive=True),
        "share": lambda: user.objects.share(f"{private}/uploads", writable=True),
    }
    user.objects.zip("data", "data.zip")
    for what, attempt in attempts.items():
        with pytest.raises(InvalidRequest, match="engine's own folder"):
            attempt()
            pytest.fail(f"{what} reached {private}")
    assert user.objects.cat("data/a.txt") == b"a"


# -- the quota ----------------------------------------------------------------------------


@pytest.mark.parametrize("home", [{"storage_quota": "10M"}], indirect=True)
def test_zip_output_counts_against_the_quota(user: Engine, core: EngineCore) -> None:
    user.objects.pipe("data/random.bin", os.urandom(4 << 20))  # incompressible
    user.objects.zip("data", "one.zip")  # 8 MiB stored now
    with pytest.raises(InsufficientStorage, match="quota"):
        user.objects.zip("data", "two.zip")
    assert not user.objects.exists("two.zip")
    assert core.objects.quota.used <= 10 << 20
    assert os.listdir(core.objects.storage.private / "tmp") == []
    with pytest.raises(InsufficientStorage, match="quota"):
        user.objects.pipe("more.bin", bytes(3 << 20))  # the zip is counted from now on


@pytest.mark.parametrize("home", [{"storage_quota": "10M"}], indirect=True)
def test_unfinished_uploads_count_against_the_quota(
    user: Engine, tus: httpx.Client, core: EngineCore
) -> None:
    _start_upload(tus, "big.bin", 9 << 20, os.urandom(6 << 20))  # 6 MiB held, unfinished
    with pytest.raises(InsufficientStorage, match="quota"):
        user.objects.pipe("other.bin", os.urandom(6 << 20))
    headers = {**TUS, "Upload-Metadata": _meta(path="second.bin"), "Upload-Defer-Length": "1"}
    second = tus.post("/api/uploads", headers=headers).headers["Location"]
    reply = tus.patch(second, content=os.urandom(6 << 20), headers={**PATCH, "Upload-Offset": "0"})
    assert reply.status_code == 507
    stored = sum(p.stat().st_size for p in core.objects.storage.root.rglob("*") if p.is_file())
    assert stored <= 10 << 20
    tus.delete(second, headers=TUS)
    assert core.objects.quota.used == 6 << 20


# -- zip bombs ----------------------------------------------------------------------------


def test_a_bomb_of_small_entries_is_refused(user: Engine, core: EngineCore) -> None:
    # 1,000 entries of 200 KB of zeros: each under 1 MiB (no longer a free pass), the whole
    # archive ~230 KB expanding to 200 MB.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for index in range(1000):
            archive.writestr(f"z/{index}.bin", bytes(200_000))
    assert len(buffer.getvalue()) < 400_000
    user.objects.pipe("small-bomb.zip", buffer.getvalue())
    with pytest.raises(PayloadTooLarge, match="zip bomb"):
        user.objects.unzip("small-bomb.zip", "out")
    assert not user.objects.exists("out")
    assert [i.name for i in user.objects.ls()] == ["small-bomb.zip"]


@pytest.mark.parametrize("home", [{"unzip_max_size": "1M"}], indirect=True)
def test_the_total_expansion_cap_holds(user: Engine, core: EngineCore) -> None:
    user.objects.pipe("plain.zip", _zip({f"{i}.bin": os.urandom(300_000) for i in range(4)}))
    with pytest.raises(PayloadTooLarge, match="limit of 1048576 bytes"):
        user.objects.unzip("plain.zip", "out")
    assert not user.objects.exists("out")
    assert [i.name for i in user.objects.ls()] == ["plain.zip"]


# -- file modes ---------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_stored_files_are_0600_and_folders_0700_whatever_the_umask(
    user: Engine, core: EngineCore
) -> None:
    root = core.objects.storage.root
    old = os.umask(0o000)  # the most permissive umask: the configured mode still wins
    try:
        user.objects.pipe("m/written.txt", b"w")
        user.objects.cp("m/written.txt", "m/copied.txt")
        user.objects.mkdir("m/folder")
        user.objects.pipe("m/a.zip", _zip({"in/x.txt": b"x"}))
        user.objects.unzip("m/a.zip", "m/out")
        user.objects.zip("m/out", "m/out.zip")
    finally:
        os.umask(old)
    for name in ("written.txt", "copied.txt", "a.zip", "out/in/x.txt", "out.zip"):
        assert _mode(root / "m" / name) == 0o600, name
    for name in ("", "folder", "out", "out/in"):
        assert _mode(root / "m" / name) == 0o700, name


@pytest.mark.parametrize(
    "home", [{"object_file_mode": "0640", "object_dir_mode": "0750"}], indirect=True
)
def test_modes_follow_the_configuration(user: Engine, core: EngineCore) -> None:
    user.objects.pipe("c/f.txt", b"f")
    assert _mode(core.objects.storage.root / "c" / "f.txt") == 0o640
    assert _mode(core.objects.storage.root / "c") == 0o750


@pytest.mark.parametrize("mode", ["0644x", "1777", "0044"])
def test_a_bad_mode_is_a_config_error(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ConfigError, match="object_file_mode"):
        EngineCore(load_config(tmp_path / "h", object_file_mode=mode))


# -- planted symlinks ---------------------------------------------------------------------


def test_planted_symlinks_are_neither_listed_nor_followed(
    user: Engine, core: EngineCore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"S" * 777)
    root = core.objects.storage.root
    user.objects.pipe("box/mine.txt", b"mine")
    (root / "box" / "to-dir").symlink_to(outside)
    (root / "box" / "to-file").symlink_to(outside / "secret.txt")
    (root / "box" / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(root / "box" / "fifo")

    for depth in (1, 3):
        items = user.objects.ls("box", depth=depth)
        assert [(i.name, i.type, i.size) for i in items] == [("mine.txt", "file", 4)]
    assert [i.path for i in user.objects.ls("", depth=5)] == ["box", "box/mine.txt"]
    for path in ("box/to-dir", "box/to-file", "box/to-dir/secret.txt", "box/dangling"):
        for attempt in (user.objects.info, user.objects.cat, user.objects.checksum):
            with pytest.raises(InvalidRequest, match="symbolic link"):
                attempt(path)
        with pytest.raises(InvalidRequest, match="symbolic link"):
            user.objects.cat_ranges([(path, 0, 10)])
    with pytest.raises(InvalidRequest, match="not a regular file"):
        user.objects.cat("box/fifo")  # refused at once, never waited on
    with pytest.raises(InvalidRequest, match="symbolic link"):
        user.objects.pipe("box/to-dir/planted.txt", b"x")
    archive = zipfile.ZipFile(io.BytesIO(user.objects.cat("box")))
    assert archive.namelist() == ["mine.txt"]
    user.objects.cp("box", "box-copy")
    assert sorted(os.listdir(root / "box-copy")) == ["mine.txt"]
    user.objects.rm("box/to-dir")  # removes the link itself, never what it points to
    assert sorted(os.listdir(outside)) == ["deep", "secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"S" * 777
