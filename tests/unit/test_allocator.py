"""The engine process keeps its bulk buffers on the heap (see `_tune_allocator`)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from dxflow_server._boot import _tune_allocator

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info

def mapped_while_held():
    before = libc.mallinfo2().hblks
    held = [bytearray(256 << 10) for _ in range(4)]
    during = libc.mallinfo2().hblks
    del held
    return during - before

if sys.argv[1] == "tuned":
    _tune_allocator()
print(mapped_while_held())
"""


def _mapped(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_bulk_buffers_come_from_the_heap_once_tuned() -> None:
    # the probe itself: untuned, each 256 KiB buffer is a mapping of its own
    assert _mapped("default") == 4
    assert _mapped("tuned") == 0
