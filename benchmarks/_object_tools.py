"""Tools of benchmarks/objects.py (a helper, not a benchmark): timing, RSS sampling,
test data, and the peers' one-line runners (curl, cp, scandir)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from _common import median

MIB = 1 << 20
MB = 1e6
RSS_INTERVAL = 0.020


def mb_s(size: int, seconds: float) -> float:
    return size / seconds / MB if seconds > 0 else float("nan")


def fmt_size(size: int) -> str:
    return f"{size / (1 << 30):g} GiB" if size >= 1 << 30 else f"{size / MIB:g} MiB"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


class RssPeak:
    """A process's RSS sampled every 20 ms in a thread: the peak over its starting value."""

    def __init__(self, pid: int, interval: float = RSS_INTERVAL) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self.start = self.peak = 0

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> RssPeak:
        self.start = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / MIB


def write_blob(path: Path, size: int, seed: int) -> None:
    """`size` bytes (a multiple of 1 MiB): a random MiB, each copy stamped with its index."""
    block = random.Random(seed).randbytes(MIB)
    with open(path, "wb") as out:
        for i in range(size // MIB):
            out.write(i.to_bytes(8, "little") + block[8:])


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link (the same inode, so the same page cache), or a copy across devices."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def make_tree(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"f{i:05d}.txt").write_bytes(b"%d\n" % i)


def _curl_seconds(*args: str) -> float:
    """Seconds curl takes (its `time_total`, without its own start) for one transfer."""
    command = ["curl", "-sS", "--noproxy", "*", "--max-time", "600", *args[:-1],
               "-w", "%{http_code} %{time_total}", args[-1]]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=660)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    code, seconds = done.stdout.split()
    if not code.startswith("2"):
        raise RuntimeError(f"curl {' '.join(args)} answered HTTP {code}")
    return float(seconds)


def curl_to_file(url: str, target: Path) -> float:
    """Seconds curl takes to download `url` into the file `target`."""
    return _curl_seconds("-o", str(target), url)


def curl_upload(source: Path, url: str) -> float:
    """Seconds curl takes to PUT the file `source` to `url`."""
    return _curl_seconds("-T", str(source), "-o", "/dev/null", url)


def copy_with_cp(source: Path, target: Path) -> None:
    subprocess.run(["cp", str(source), str(target)], check=True, timeout=600)


def scandir_page(folder: Path, limit: int) -> list[os.stat_result]:
    """The peer of a listing's first page: scandir, sort by name, stat the page's entries."""
    with os.scandir(folder) as found:
        entries = sorted(found, key=lambda entry: entry.name)
    return [entry.stat() for entry in entries[:limit]]


def nginx_missing() -> str | None:
    if shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK):
        return None
    return "nginx is not installed (Debian package nginx-light): its rows are skipped"


def jupyter_missing() -> str | None:
    missing = [m for m in ("jupyter_server", "requests") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not installed (`.venv/bin/pip install jupyter_server "
        "requests fsspec`): the Jupyter peer is skipped"
    )


def dxflow_fs(url: str, key: Path) -> Any:
    """`fsspec.filesystem("dxflow", url=..., key=...)`, a fresh instance."""
    import fsspec

    try:
        return fsspec.filesystem("dxflow", url=url, key=str(key), skip_instance_cache=True)
    except ValueError:  # the protocol is not registered with fsspec (yet): register it
        from dxflow._filesystem import DxflowFileSystem

        fsspec.register_implementation("dxflow", DxflowFileSystem, clobber=True)
        return fsspec.filesystem("dxflow", url=url, key=str(key), skip_instance_cache=True)


def stats(samples: list[float]) -> dict[str, Any]:
    return {
        "median_s": median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "samples_s": samples,
    }


# -- the benchmark -------------------------------------------------------------------------
