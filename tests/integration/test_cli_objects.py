"""`dxflow object ...` (alias `dxflow fs`) against a booted engine, as real processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import Booted
from .conftest import dxflow as run

# Every command is a fresh process (under a second alone, ten on a loaded machine), each
# bounded by its own 60 s; the per-test guard only catches a hang, so it allows for many.
pytestmark = pytest.mark.timeout(600)

BINARY = bytes(range(256)) * 3 + b"\r\n\x00end"


def raw(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """The CLI with stdout as bytes (for `cat`)."""
    cmd = [sys.executable, "-m", "dxflow", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "data/b.bin": BINARY,
        "data/deep/c.csv": b"x,y\n1,2\n",
        "data/.hidden": b"secret-ish",
        "empty.txt": b"",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    (root / "nothing").mkdir()
    return files


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_put_tree_ls_and_get_it_back(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    source = tmp_path / "src"
    files = make_tree(source)
    put = run("object", "put", source, "t1/tree", *home)
    assert "uploaded" in put.stdout and "t1/tree" in put.stdout
    long = run("fs", "ls", "t1/tree", "-l", "--depth", "5", "-a", *home).stdout.splitlines()
    assert long[0].split() == ["TYPE", "SIZE", "MODIFIED", "PATH"]
    rows = {line.split()[-1]: line.split()[0] for line in long[1:]}
    assert rows["t1/tree/data/deep/c.csv"] == "file" and rows["t1/tree/nothing"] == "directory"
    assert "t1/tree/data/.hidden" in rows
    assert any(f" {len(BINARY)} B " in line and line.endswith("data/b.bin") for line in long)
    short = run("object", "ls", "t1/tree", *home).stdout.split()
    assert short == ["t1/tree/a.txt", "t1/tree/data/", "t1/tree/empty.txt", "t1/tree/nothing/"]
    hidden = run("object", "ls", "t1/tree/data", *home).stdout
    assert ".hidden" not in hidden
    listed = json.loads(
        run("object", "ls", "t1/tree", "--depth", "5", "-a", "--json", *home).stdout
    )
    assert {i["path"]: i["size"] for i in listed if i["type"] == "file"}[
        "t1/tree/data/b.bin"
    ] == len(BINARY)
    page = run("object", "ls", "t1/tree", "--limit", "1", "--offset", "1", *home)
    assert page.stdout == "t1/tree/data/\n" and "2 more" in page.stderr
    got = tmp_path / "got"
    got.mkdir()
    done = run("object", "get", "t1/tree", got, *home)
    assert "downloaded t1/tree" in done.stdout
    assert local_files(got / "tree") == files
    here = run_in(tmp_path / "cwd", "object", "get", "t1/tree/data/b.bin", *home)
    assert here.returncode == 0 and (tmp_path / "cwd" / "b.bin").read_bytes() == BINARY
    info = run("object", "info", "t1/tree/data/b.bin", *home).stdout
    assert f"({len(BINARY)} bytes)" in info and "file" in info
    digest = run("object", "checksum", "t1/tree/data/b.bin", *home).stdout.split()[0]
    assert digest == hashlib.sha256(BINARY).hexdigest()


def run_in(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dxflow", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_put_a_single_file_into_a_folder_and_overwrite(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    local = tmp_path / "one.bin"
    local.write_bytes(b"first")
    run("object", "mkdir", "t2/inbox", *home)
    run("object", "put", local, "t2/inbox/", *home)
    local.write_bytes(b"second")
    again = run("object", "put", local, "t2/inbox/one.bin", *home, check=False)
    assert again.returncode == 1 and "'t2/inbox/one.bin' exists" in again.stderr
    run("object", "put", local, "t2/inbox/one.bin", "--overwrite", *home)
    assert raw("object", "cat", "t2/inbox/one.bin", *home).stdout == b"second"


def test_cat_writes_raw_bytes_and_ranges(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    (tmp_path / "blob").write_bytes(BINARY)
    run("object", "put", tmp_path / "blob", "t3/blob", *home)
    assert raw("object", "cat", "t3/blob", *home).stdout == BINARY
    assert (
        raw("object", "cat", "t3/blob", "--start", "10", "--end", "20", *home).stdout
        == (BINARY[10:20])
    )
    assert raw("object", "cat", "t3/blob", "--start", "700", *home).stdout == BINARY[700:]
    assert raw("object", "cat", "t3/blob", "--end", "5", *home).stdout == BINARY[:5]
    outside = run("object", "cat", "t3/blob", "--start", "5000", *home, check=False)
    assert outside.returncode == 1 and "outside 't3/blob'" in outside.stderr


def test_mv_cp_rm_single_and_many(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    make_tree(tmp_path / "src")
    run("object", "put", tmp_path / "src", "t4", *home)
    assert (
        "copied t4/a.txt -> t4/copy.txt"
        in run("object", "cp", "t4/a.txt", "t4/copy.txt", *home).stdout
    )
    moved = json.loads(run("object", "mv", "t4/copy.txt", "t4/moved.txt", "--json", *home).stdout)
    assert moved["path"] == "t4/moved.txt" and moved["size"] == len(b"alpha\n")
    clash = run("object", "mv", "t4/moved.txt", "t4/a.txt", *home, check=False)
    assert clash.returncode == 1 and "exists" in clash.stderr
    run("object", "mv", "t4/moved.txt", "t4/a.txt", "--overwrite", *home)
    run("object", "cp", "t4/data", "t4/data2", *home)
    assert raw("object", "cat", "t4/data2/b.bin", *home).stdout == BINARY
    assert run("object", "rm", "t4/empty.txt", *home).stdout == "removed t4/empty.txt\n"
    full = run("object", "rm", "t4/data2", *home, check=False)
    assert full.returncode == 1 and "not empty" in full.stderr
    many = run("object", "rm", "-r", "t4/data2", "t4/missing", "t4/a.txt", *home, check=False)
    assert many.returncode == 1
    assert many.stdout.splitlines() == ["removed t4/data2", "removed t4/a.txt"]
    assert "error: t4/missing: no such file or directory" in many.stderr
    results = json.loads(run("object", "rm", "t4/nope", "t4/nothing", "--json", *home,
                             check=False).stdout)  # fmt: skip
    assert [(r["path"], r["ok"], r["code"]) for r in results] == [
        ("t4/nope", False, "not_found"),
        ("t4/nothing", True, None),
    ]
    assert run("object", "rm", "t4/data", "t4/data", "-r", *home, check=False).returncode == 1
    left = run("object", "ls", "t4", *home).stdout.split()
    assert left == []


def test_zip_and_unzip_round_trip(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    files = make_tree(tmp_path / "src")
    run("object", "put", tmp_path / "src", "t5/tree", *home)
    zipped = run("object", "zip", "t5/tree", *home)
    assert "zipped t5/tree -> t5/tree.zip" in zipped.stdout and zipped.stderr == ""
    again = run("object", "zip", "t5/tree", *home, check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    shown = run("object", "zip", "t5/tree", "t5/other.zip", "--progress", *home)
    assert "done t5/tree" in shown.stderr
    done = json.loads(run("object", "unzip", "t5/tree.zip", "t5/out", "--json", *home).stdout)
    assert done["action"] == "done" and done["dest"] == "t5/out"
    assert done["entries"] >= len(files)
    run("object", "get", "t5/out", tmp_path / "back", *home)
    assert local_files(tmp_path / "back") == files


def test_share_link_serves_bytes_until_revoked(booted: Booted, tmp_path: Path) -> None:
    door: list[str | Path] = ["--url", booted.url, "--key", booted.master_key]
    (tmp_path / "blob").write_bytes(BINARY)
    run("object", "put", tmp_path / "blob", "t6/blob", *door)
    url = run("object", "share", "t6/blob", "--expires", "10m", *door).stdout.strip()
    assert url.startswith(booted.url + "/s/")
    assert httpx.get(url).content == BINARY
    link = json.loads(run("object", "share", "t6/blob", "--max-uses", "1", "--json", *door).stdout)
    assert link["max_uses"] == 1 and link["url"].startswith(booted.url)
    listed = json.loads(run("object", "shares", "--json", *door).stdout)
    assert {s["id"] for s in listed} >= {link["id"], url.rsplit("/", 1)[1].split(".")[0]}
    table = run("object", "shares", *door).stdout
    assert table.split()[:6] == ["ID", "PATH", "STATE", "MODE", "USES", "EXPIRES"]
    assert "active" in table
    revoked = run("object", "revoke", link["id"], *door)
    assert f"revoked {link['id']} (t6/blob)" in revoked.stdout
    assert httpx.get(link["url"]).status_code == 410
    assert "revoked" in run("object", "shares", *door).stdout
    unknown = run("object", "revoke", "nope", *door, check=False)
    assert unknown.returncode == 1 and "no share link 'nope'" in unknown.stderr
    bad = run("object", "share", "t6/blob", "--expires", "forever", *door, check=False)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_get_keeps_empty_folders(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    make_tree(tmp_path / "src")
    run("object", "put", tmp_path / "src", "t10", *home)
    assert "t10/nothing/" in run("object", "ls", "t10", *home).stdout.split()
    run("object", "get", "t10", tmp_path / "got", *home)
    assert (tmp_path / "got" / "nothing").is_dir()


def test_share_link_through_the_home_door(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    (tmp_path / "blob").write_bytes(b"hello")
    run("object", "put", tmp_path / "blob", "t7/blob", *home)
    url = run("object", "share", "t7/blob", *home).stdout.strip()
    assert httpx.get(url).content == b"hello"


@pytest.mark.parametrize(
    "args",
    [
        ("info", "../etc/passwd"),
        ("cat", "../etc/passwd"),
        ("get", "../etc/passwd"),
        ("ls", "../etc"),
        ("rm", "../etc/passwd"),
        ("mkdir", "/etc/evil"),
        ("cp", "../etc/passwd", "stolen"),
        ("share", "../etc/passwd"),
    ],
)
def test_hostile_paths_are_clean_errors(
    booted: Booted, tmp_path: Path, args: tuple[str, ...]
) -> None:
    done = run("object", *args, "--home", booted.home, check=False)
    assert done.returncode == 1, done
    assert done.stderr.startswith("error: invalid path ") and "Traceback" not in done.stderr
    assert "/etc" in done.stderr and done.stdout == ""


def test_missing_paths_and_bad_input(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    missing = run("object", "info", "no/such", *home, check=False)
    assert missing.returncode == 1
    assert missing.stderr == "error: no such file or directory: 'no/such'\n"
    envelope = json.loads(run("object", "cat", "no/such", "--json", *home, check=False).stderr)
    assert envelope["error"]["code"] == "not_found"
    orphan = run("object", "mkdir", "t8/a/b", "--no-parents", *home, check=False)
    assert orphan.returncode == 1 and "does not exist" in orphan.stderr
    made = json.loads(run("object", "mkdir", "t8/a/b", "--json", *home).stdout)
    assert made["type"] == "directory"
    nothing = run("object", "put", tmp_path / "absent", "t8/x", *home, check=False)
    assert nothing.returncode == 2 and "does not exist" in nothing.stderr
    (tmp_path / "f").write_bytes(b"x")
    run("object", "put", tmp_path / "f", "t8/f", *home)
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    local = run("object", "get", "t8/f", blocked / "f", *home, check=False)
    assert local.returncode == 1 and "Traceback" not in local.stderr
    assert str(blocked) in local.stderr


def test_progress_is_forced_or_quiet(booted: Booted, tmp_path: Path) -> None:
    home: list[str | Path] = ["--home", booted.home]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 << 20))
    quiet = run("object", "put", big, "t9/big.bin", *home)
    assert quiet.stderr == ""  # not a terminal: no bar unless asked
    shown = run("object", "get", "t9/big.bin", tmp_path / "back.bin", "--progress", *home)
    assert "100%" in shown.stderr and "9.0 MiB" in shown.stderr
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    off = run("object", "put", big, "t9/big.bin", "--overwrite", "--no-progress", *home)
    assert off.stderr == ""
    as_json = json.loads(run("object", "put", big, "t9/again.bin", "--json", *home).stdout)
    assert as_json["size"] == 9 << 20
