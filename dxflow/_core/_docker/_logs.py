"""Reading a container's log: stdout and stderr from ONE request, in Docker's order.

Docker multiplexes the two streams of a container without a TTY into frames, each
tagged with its stream, in the order the lines were written. Reading both from one
request keeps that order exactly (two requests could only be merged by timestamp) and
makes `tail` count lines of the container, not of each stream. docker-py's own reader
drops the stream tag, so the frames are read here (as its helper does).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ._types import LogChunk, LogSource, StreamName

__all__ = ["LogFrames", "open_log"]

_HEADER = 8
_STREAMS: dict[int, StreamName] = {1: "stdout", 2: "stderr"}


class LogFrames:
    """Whole lines of one container's log, each with its stream; `close` ends a read."""

    def __init__(
        self, response: Any, source: LogSource, tty: bool, closer: Any | None = None
    ) -> None:
        self._response, self._source, self._tty = response, source, tty
        self._closer = closer or response

    def _frames(self) -> Iterator[tuple[StreamName, bytes]]:
        if self._tty:  # one stream, not multiplexed: a TTY merged them already
            for chunk in self._response:
                yield "stdout", chunk
            return
        raw = self._response.raw
        while True:
            header = raw.read(_HEADER)
            if len(header) < _HEADER:
                return
            kind, length = struct.unpack(">BxxxL", header)
            data = raw.read(length) if length else b""
            if length and not data:
                return
            yield _STREAMS.get(kind, "stdout"), data

    def __iter__(self) -> Iterator[LogChunk]:
        pending: dict[StreamName, bytes] = {"stdout": b"", "stderr": b""}
        for stream, data in self._frames():
            *lines, pending[stream] = (pending[stream] + data).split(b"\n")
            for line in lines:
                yield LogChunk(self._source, line, stream)
        for stream, rest in pending.items():
            if rest:
                yield LogChunk(self._source, rest, stream)

    def close(self) -> None:
        self._closer.close()


def open_log(
    client: Any, source: LogSource, follow: bool, tail: int | None, since: datetime | None
) -> LogFrames:
    """Open `source`'s log (both streams, with Docker's timestamps)."""
    from docker.types.daemon import CancellableStream  # docker-py loads on first use

    api = client.api
    container = source.container
    if api.inspect_container(container).get("Config", {}).get("Tty"):
        raw = api.logs(container, stream=True, follow=follow, timestamps=True,
                       tail="all" if tail is None else tail, since=since)  # fmt: skip
        return LogFrames(raw, source, tty=True)
    params: dict[str, Any] = {
        "stdout": 1, "stderr": 1, "timestamps": 1, "follow": int(follow),
        "tail": "all" if tail is None else tail,
    }  # fmt: skip
    if since is not None:
        params["since"] = since.timestamp()
    response = api._get(api._url("/containers/{0}/logs", container), params=params, stream=True)
    api._raise_for_status(response)
    # A followed log may stay quiet for long: no read timeout (docker-py does the same).
    api._disable_socket_timeout(api._get_raw_response_socket(response))
    # docker-py's closer shuts the socket down: a read blocked in another thread ends.
    closer = CancellableStream(iter(()), response)
    return LogFrames(response, source, tty=False, closer=closer)
