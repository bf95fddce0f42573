"""Streaming ZIP archives of storage folders and defensive extraction."""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dxflow._core._objects import _unzip
from dxflow._core._objects._zip import UnzipLimits, unzip, zip_stream, zip_to_file
from dxflow._exceptions import Conflict, InvalidRequest, NotFound, PayloadTooLarge

BIG = 3 << 20


def _tree(path: Path) -> dict[str, bytes | None]:
    """Every path under `path` with its content (None for folders and links)."""
    found: dict[str, bytes | None] = {}
    for item in sorted(path.rglob("*")):
        relative = item.relative_to(path).as_posix()
        found[relative] = item.read_bytes() if item.is_file() and not item.is_symlink() else None
    return found


def _storage(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    data = root / "data"
    (data / "sub" / "deeper").mkdir(parents=True)
    (data / "empty").mkdir()
    (data / "hollow" / "inner").mkdir(parents=True)
    (data / "a.txt").write_text("hello\n" * 1000)
    (data / "sub" / "big.bin").write_bytes(os.urandom(BIG))
    (data / "sub" / "deeper" / "c.gz").write_bytes(os.urandom(1000))
    (root / ".dxflow" / "tmp").mkdir(parents=True)
    (root / ".dxflow" / "tmp" / "secret").write_text("engine only")
    (root / "top.txt").write_text("top")
    return root


def _zip_bytes(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in entries.items():
            archive.writestr(zipfile.ZipInfo(name), content)
    return buffer.getvalue()


def _write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    path.write_bytes(_zip_bytes(entries))
    return path


def _leftovers(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if ".unzip-" in name or ".zip-" in name]


# --- building ----------------------------------------------------------------------------------


def test_round_trip_streams_in_chunks(tmp_path: Path) -> None:
    root = _storage(tmp_path)
    chunks = list(zip_stream(root, root / "data", chunk_size=256 << 10))
    assert len(chunks) > 1
    blob = b"".join(chunks)

    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [
            "a.txt",
            "empty/",
            "hollow/",
            "hollow/inner/",
            "sub/",
            "sub/big.bin",
            "sub/deeper/",
            "sub/deeper/c.gz",
        ]
        assert archive.getinfo("a.txt").compress_type == zipfile.ZIP_DEFLATED
        assert archive.getinfo("sub/deeper/c.gz").compress_type == zipfile.ZIP_STORED

    (tmp_path / "archive.zip").write_bytes(blob)
    entries, size = unzip(tmp_path / "archive.zip", tmp_path / "out")
    assert (entries, size) == (8, 6000 + BIG + 1000)
    assert _tree(tmp_path / "out") == _tree(root / "data")


def test_stream_is_deterministic_and_skips_private_folder(tmp_path: Path) -> None:
    root = _storage(tmp_path)
    first = b"".join(zip_stream(root, root))
    assert first == b"".join(zip_stream(root, root))
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert "top.txt" in names and "data/sub/big.bin" in names
    assert not any(name.startswith(".dxflow") for name in names)
    assert b"".join(zip_stream(root, root / ".dxflow" / "tmp")) == _zip_bytes({})


def test_stream_writes_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _storage(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = _tree(tmp_path)
    for chunk in zip_stream(root, root / "data", chunk_size=64 << 10):
        # Bounded memory: a chunk is at most one read (1 MiB) over the threshold.
        assert len(chunk) < (64 << 10) + (2 << 20)
        assert os.listdir(scratch) == []
    assert _tree(tmp_path) == before


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    root = _storage(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwords").write_text("secret")
    (root / "data" / "link-file").symlink_to(outside / "passwords")
    (root / "data" / "link-dir").symlink_to(outside)
    (root / "data" / "dangling").symlink_to(tmp_path / "nowhere")

    blob = b"".join(zip_stream(root, root / "data"))
    names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
    assert not any(name.startswith(("link", "dangling")) for name in names)
    assert b"secret" not in blob

    with pytest.raises(InvalidRequest, match="not a folder"):
        list(zip_stream(root, root / "data" / "link-dir"))
    with pytest.raises(NotFound, match="does not exist"):
        list(zip_stream(root, root / "missing"))


def test_zip_to_file_inside_the_archived_folder(tmp_path: Path) -> None:
    root = _storage(tmp_path)
    dest = root / "data" / "data.zip"
    dest.write_bytes(b"an older archive")
    calls: list[tuple[int, int]] = []

    zip_to_file(root, root / "data", dest, progress=lambda n, size: calls.append((n, size)))

    with zipfile.ZipFile(dest) as archive:
        assert archive.testzip() is None
        assert not any(name.endswith(".zip") or ".zip-" in name for name in archive.namelist())
        assert archive.read("sub/big.bin") == (root / "data" / "sub" / "big.bin").read_bytes()
    assert len(calls) == 8 and calls == sorted(calls)
    assert calls[-1] == (8, 6000 + BIG + 1000)
    assert _leftovers(root / "data") == []


def test_zip_to_file_failure_leaves_nothing(tmp_path: Path) -> None:
    root = _storage(tmp_path)
    with pytest.raises(NotFound):
        zip_to_file(root, root / "missing", tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()
    assert _leftovers(tmp_path) == []


# --- extracting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "evil", ["../evil", "/abs/evil", "a/../../evil", "..\\evil", "C:/evil", "ok/../../../evil"]
)
@pytest.mark.parametrize("dest_exists", [False, True])
def test_zip_slip_is_refused(tmp_path: Path, evil: str, dest_exists: bool) -> None:
    archive = _write_zip(tmp_path / "evil.zip", {"good.txt": b"fine", evil: b"pwned"})
    dest = tmp_path / "box" / "dest"
    dest.parent.mkdir()
    if dest_exists:
        dest.mkdir()
    before = _tree(tmp_path)

    with pytest.raises(InvalidRequest, match=r"would land outside the destination \(zip slip\)"):
        unzip(archive, dest)

    assert _tree(tmp_path) == before
    assert dest.exists() == dest_exists


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("innocent")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    (tmp_path / "link.zip").write_bytes(buffer.getvalue())

    with pytest.raises(InvalidRequest, match="'innocent' is a symlink"):
        unzip(tmp_path / "link.zip", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def _zeros(count: int) -> Iterator[bytes]:
    chunk = bytes(1 << 20)
    for _ in range(count):
        yield chunk


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    bomb = zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1)
    with bomb, bomb.open("zeros.bin", "w") as member:
        for chunk in _zeros(200):
            member.write(chunk)

    with pytest.raises(PayloadTooLarge, match=r"'zeros\.bin' would expand .*\(zip bomb\)"):
        unzip(tmp_path / "bomb.zip", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert _leftovers(tmp_path) == []


def test_too_many_entries(tmp_path: Path) -> None:
    archive = _write_zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(11)})
    with pytest.raises(InvalidRequest, match="11 entries, more than the limit of 10"):
        unzip(archive, tmp_path / "dest", UnzipLimits(max_entries=10))
    assert not (tmp_path / "dest").exists()


def test_declared_size_over_the_limit(tmp_path: Path) -> None:
    archive = _write_zip(tmp_path / "big.zip", {"a": os.urandom(150), "b": os.urandom(150)})
    with pytest.raises(PayloadTooLarge, match="expand to 300 bytes, more than the limit of 299"):
        unzip(archive, tmp_path / "dest", UnzipLimits(max_total_size=299))
    assert not (tmp_path / "dest").exists()


def test_bytes_written_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand in for an archive whose declared sizes lie: skip the declared check so only the
    # running count of bytes written can stop the extraction.
    monkeypatch.setattr(_unzip, "_check_declared_total", lambda total, limits: None)
    archive = _write_zip(tmp_path / "a.zip", {"a": bytes(3 << 20), "b": bytes(3 << 20)})
    limits = UnzipLimits(max_total_size=(6 << 20) - 1, max_ratio=1e9)

    with pytest.raises(PayloadTooLarge, match="more than the limit"):
        unzip(archive, tmp_path / "dest", limits)
    assert not (tmp_path / "dest").exists()
    assert _leftovers(tmp_path) == []


def test_lying_central_directory_is_caught(tmp_path: Path) -> None:
    blob = bytearray(_zip_bytes({"data.bin": os.urandom(4000)}, zipfile.ZIP_STORED))
    central = blob.index(b"PK\x01\x02")
    struct.pack_into("<I", blob, central + 24, 10)  # uncompressed size: 10 instead of 4000
    (tmp_path / "liar.zip").write_bytes(bytes(blob))

    with pytest.raises(InvalidRequest, match=r"damaged at entry 'data\.bin'"):
        unzip(tmp_path / "liar.zip", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert _leftovers(tmp_path) == []


def test_corrupt_archives(tmp_path: Path) -> None:
    (tmp_path / "noise.zip").write_bytes(os.urandom(5000))
    with pytest.raises(InvalidRequest, match=r"'noise\.zip' is not a zip archive"):
        unzip(tmp_path / "noise.zip", tmp_path / "dest")

    blob = _zip_bytes({"a.bin": os.urandom(5000)})
    (tmp_path / "cut.zip").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InvalidRequest, match=r"'cut\.zip' is not a zip archive"):
        unzip(tmp_path / "cut.zip", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_conflicts_and_overwrite(tmp_path: Path) -> None:
    archive = _write_zip(tmp_path / "a.zip", {"keep/new.txt": b"new", "same.txt": b"fresh"})
    dest = tmp_path / "dest"
    (dest / "keep").mkdir(parents=True)
    (dest / "keep" / "old.txt").write_text("old")
    (dest / "same.txt").write_text("stale")

    with pytest.raises(Conflict, match=r"'same\.txt' already exists"):
        unzip(archive, dest)
    assert _tree(dest) == {"keep": None, "keep/old.txt": b"old", "same.txt": b"stale"}
    assert _leftovers(tmp_path) == []

    assert unzip(archive, dest, overwrite=True) == (2, 8)
    assert _tree(dest) == {
        "keep": None,
        "keep/new.txt": b"new",
        "keep/old.txt": b"old",
        "same.txt": b"fresh",
    }


def test_symlink_in_destination_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "escape").symlink_to(outside)
    archive = _write_zip(tmp_path / "a.zip", {"escape/planted": b"x"})

    with pytest.raises(Conflict, match="'escape' already exists in the destination"):
        unzip(archive, dest, overwrite=True)
    assert list(outside.iterdir()) == []


def test_clashing_entries_are_refused(tmp_path: Path) -> None:
    archive = _write_zip(tmp_path / "a.zip", {"x": b"file", "x/y": b"below a file"})
    with pytest.raises(InvalidRequest, match="'x' is both a file and a folder"):
        unzip(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_progress_and_executable_bits(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("dir/"), b"")
        script = zipfile.ZipInfo("dir/run.sh")
        script.external_attr = (stat.S_IFREG | 0o4755) << 16
        archive.writestr(script, b"#!/bin/sh\n")
        archive.writestr("dir/data.txt", b"12345")
    (tmp_path / "a.zip").write_bytes(buffer.getvalue())
    calls: list[tuple[int, int]] = []

    result = unzip(tmp_path / "a.zip", tmp_path / "dest", progress=lambda *c: calls.append(c))

    assert result == (3, 15)
    assert calls == [(1, 0), (2, 10), (3, 15)]
    mode = (tmp_path / "dest" / "dir" / "run.sh").stat().st_mode
    assert mode & stat.S_IXUSR and not mode & stat.S_ISUID
    assert not (tmp_path / "dest" / "dir" / "data.txt").stat().st_mode & stat.S_IXUSR
