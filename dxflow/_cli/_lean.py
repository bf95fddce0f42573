"""The fast path of read-only commands: one HTTP/1.1 request with the cached token.

A `dxflow workflow list` spends far more time importing the SDK (pydantic, httpx,
anyio, the operation table and its models) than asking the engine. When a token is
cached for the engine (see dxflow._tokens) and the engine is reached over its unix
socket or plain http, the read-only operations in `LEAN` are sent here with the
standard library alone and their JSON answered as `Record`s (attribute access, as the
models give). Anything unusual (no cached token, https, a 401, an answer this module
does not parse) returns None and the command takes the SDK path, which may safely ask
again: every operation here is a GET. The paths are checked against the operation
table by a unit test.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

__all__ = ["LEAN", "Record", "lean_call"]

LEAN: dict[str, str] = {
    "engine.ping": "/api/ping",
    "auth.whoami": "/api/auth/whoami",
    "workflows.list": "/api/workflows",
    "workflows.get": "/api/workflows/{name}",
    "workflows.status": "/api/workflows/{name}/status",
    "shells.list": "/api/shells",
    "proxies.list": "/api/proxies",
    "keys.list": "/api/keys",
    "objects.list": "/api/objects",
}
"""Operation name -> its GET path (the table's; tests/unit/test_cli_lean.py checks)."""

_MAX_REPLY = 16 * 1024 * 1024


class Record:
    """A JSON object read like a response model: attributes, `model_dump`, and
    datetimes for the `*_at` / `time` fields."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(name) from None
        return _wrap(name, value)

    def model_dump(self, mode: str = "json", **_: Any) -> dict[str, Any]:
        return self._data

    def model_dump_json(self, indent: int | None = None, **_: Any) -> str:
        return json.dumps(self._data, indent=indent)

    def __repr__(self) -> str:
        return f"Record({self._data!r})"


def _wrap(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        return Record(value)
    if isinstance(value, list):
        return [_wrap(name, item) for item in value]
    if isinstance(value, str) and (name.endswith("_at") or name == "time"):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def lean_call(opts: Any, operation: str, **params: Any) -> Record | None:
    """The answer of a read-only operation as a Record, or None: use the SDK then."""
    path = LEAN[operation]
    for name in list(params):
        if "{" + name + "}" in path:
            path = path.replace("{" + name + "}", quote(str(params.pop(name)), safe=""))
    # As the SDK sends a query: no empty or missing values (`?x=` is refused), JSON booleans
    query = {
        k: ("true" if v else "false") if isinstance(v, bool) else v
        for k, v in params.items()
        if v is not None and v != ""
    }
    if query:
        path += "?" + urlencode(query, doseq=True)
    try:
        target = _target(opts)
        if target is None:
            return None
        url, key_path = target
        from .._tokens import TokenCache, read_key_bytes

        cache = TokenCache.of(url, read_key_bytes(key_path))
        cached = cache.load()
        if cached is None:
            return None
        reply = _get(url, path, cached[0])
    except Exception:  # the SDK path says what went wrong, in the error tree's words
        return None
    if reply is None:
        return None
    status, reason, body = reply
    if status == 401:
        cache.drop()
        return None
    if status >= 400:
        from .._wire import error_from_reply

        raise error_from_reply(status, body, reason)
    data = json.loads(body)
    return Record(data) if isinstance(data, dict) else None


def _target(opts: Any) -> tuple[str, str] | None:
    """(url, key file) as `Options.engine` resolves them; None when the path is not
    lean (https, or a key file others can read: the SDK's loader says what to fix)."""
    from ._common import normalize_url

    if getattr(opts, "bridge", None):  # an agent through its master: the SDK's bridged path
        return None
    if opts.url:
        if not opts.key:
            return None
        url, key = normalize_url(opts.url), str(opts.key)
    else:
        from .._config import Home

        home = Home.resolve(opts.home)
        url, key = f"unix://{home.socket}", str(opts.key or home.master_key)
    if urlsplit(url).scheme not in ("unix", "http+unix", "http"):
        return None
    if os.stat(os.path.expanduser(key)).st_mode & 0o077:
        return None
    return url, key


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    if parts.scheme in ("unix", "http+unix"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30.0)
        sock.connect(unquote(parts.path if parts.scheme == "unix" else parts.netloc))
        return sock
    return socket.create_connection((parts.hostname or "", parts.port or 80), timeout=30.0)


def _get(url: str, path: str, token: str) -> tuple[int, str, bytes] | None:
    head = (
        f"GET {path} HTTP/1.1\r\nHost: engine\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    )
    with _connect(url) as sock:
        sock.sendall(head.encode("latin-1"))
        chunks, size = [], 0
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_REPLY:
                return None
    raw = b"".join(chunks)
    header, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = header.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if not version.startswith("HTTP/1.") or "chunked" in fields.get("transfer-encoding", ""):
        return None
    length = fields.get("content-length")
    if length is not None and int(length) != len(body):
        return None
    return int(code), reason, body
