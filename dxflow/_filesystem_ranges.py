"""Many byte ranges in few round trips: `cat_ranges` for DxflowFileSystem."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fsspec.asyn import _run_coros_in_chunks

from ._exceptions import ApiError

if TYPE_CHECKING:
    from ._api.objects import AsyncObjectStore

__all__ = ["BIG_RANGE", "RANGES_BYTES", "RANGES_PER_CALL", "RangeReads"]

RANGES_PER_CALL = 10_000
"""Ranges fetched in one `cat_ranges` round trip."""
RANGES_BYTES = 8 << 20
"""Bytes fetched in one `cat_ranges` round trip (they travel base64 in JSON); the
engine's `ranges_max_bytes` default."""
BIG_RANGE = 8 << 20
"""A range this big is streamed as a download of its own."""


class RangeReads:
    """The store reads every range of a batch in one call; a big range is a download
    of its own. Mixed into DxflowFileSystem."""

    if TYPE_CHECKING:

        @classmethod
        def _strip_protocol(cls, path: Any) -> Any: ...
        async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]: ...
        async def _cat_file(
            self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
        ) -> bytes: ...
        async def _store(self) -> AsyncObjectStore: ...

    async def _cat_ranges(
        self,
        paths: list[str],
        starts: int | Iterable[int | None] | None,
        ends: int | Iterable[int | None] | None,
        max_gap: int | None = None,
        batch_size: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """Many ranges in few round trips: the store reads them all in one call."""
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        names = [self._strip_protocol(p) for p in paths]
        firsts = list(starts) if isinstance(starts, Iterable) else [starts] * len(names)
        lasts = list(ends) if isinstance(ends, Iterable) else [ends] * len(names)
        if len(firsts) != len(names) or len(lasts) != len(names):
            raise ValueError("paths, starts and ends differ in length")
        out: list[Any] = [b""] * len(names)
        spans = await self._resolve_spans(names, firsts, lasts, out)
        single = [i for i, (s, e) in spans.items() if e - s > BIG_RANGE]
        for i in single:
            out[i] = await self._guarded(self._cat_file(names[i], *spans[i]))
        rest = [i for i, (s, e) in spans.items() if 0 < e - s <= BIG_RANGE]
        for batch in _batches(rest, [spans[i][1] - spans[i][0] for i in rest]):
            await self._fetch_batch(names, spans, batch, out)
        if on_error != "return":
            for item in out:
                if isinstance(item, BaseException):
                    raise item
        return out

    async def _resolve_spans(
        self, names: list[str], starts: list[int | None], ends: list[int | None], out: list[Any]
    ) -> dict[int, tuple[int, int]]:
        """(start, end) of every range as plain offsets; a file's size is looked up once,
        and only for ranges that count from its end or run to it."""
        need = {n for n, s, e in zip(names, starts, ends, strict=True)
                if e is None or e < 0 or (s is not None and s < 0)}  # fmt: skip
        infos = await _run_coros_in_chunks([self._info(name) for name in need],
                                           nofiles=True, return_exceptions=True)  # fmt: skip
        sizes = dict(zip(need, infos, strict=True))
        spans = {}
        for i, (name, start, end) in enumerate(zip(names, starts, ends, strict=True)):
            info = sizes.get(name)
            if isinstance(info, BaseException):
                out[i] = info
                continue
            size = info["size"] if info is not None else 0
            first = 0 if start is None else max(size + start, 0) if start < 0 else start
            last = size if end is None else max(size + end, 0) if end < 0 else end
            spans[i] = (first, last)
        return spans

    async def _fetch_batch(
        self, names: list[str], spans: dict[int, tuple[int, int]], batch: list[int], out: list[Any]
    ) -> None:
        store = await self._store()
        try:
            data = await store.cat_ranges([(names[i], *spans[i]) for i in batch])
        except ApiError:  # a missing file or a directory among them: tell which, one by one
            data = await _run_coros_in_chunks([self._cat_file(names[i], *spans[i]) for i in batch],
                                              nofiles=True, return_exceptions=True)  # fmt: skip
        for i, item in zip(batch, data, strict=True):
            out[i] = item

    @staticmethod
    async def _guarded(coroutine: Any) -> Any:
        try:
            return await coroutine
        except Exception as error:  # handed back in place of the result
            return error


def _batches(indexes: list[int], lengths: list[int]) -> Iterator[list[int]]:
    """Indexes grouped so no group passes `RANGES_PER_CALL` ranges or `RANGES_BYTES`."""
    batch: list[int] = []
    total = 0
    for index, length in zip(indexes, lengths, strict=True):
        if batch and (len(batch) >= RANGES_PER_CALL or total + length > RANGES_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(index)
        total += length
    if batch:
        yield batch
