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
import re

# No typing, urllib.parse or datetime at import: the pre-click fast path (`_fast`) runs
# on this module's Record and request, and loads what it needs only.
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LEAN", "Record", "address", "hand_over", "lean_call", "normalize_url", "request"]

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

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")
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
        from datetime import datetime

        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def lean_call(opts: Any, operation: str, **params: Any) -> Record | None:
    """The answer of a read-only operation as a Record, or None: use the SDK then."""
    from urllib.parse import quote, urlencode

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
        where = address(url)
        if where is None:
            return None
        from .._tokens import TokenCache, read_key_bytes

        cache = TokenCache.of(url, read_key_bytes(key_path))
        cached = cache.load()
        if cached is None:
            return None
        reply = request(where, path, cached[0])
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


def normalize_url(url: str) -> str:
    """`127.0.0.1:7419` is `http://127.0.0.1:7419`; a socket path is `unix://PATH`;
    anything else without a scheme is a usage error saying what to type."""
    from .._exceptions import UsageError  # only to raise it: `dxflow ps` never loads it

    url = url.strip()
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in ("http", "https", "unix", "http+unix"):
            raise UsageError(
                f"--url {url!r}: unknown scheme {scheme}://; use http://HOST:PORT, "
                "https://HOST:PORT or unix:///path/to/engine.sock"
            )
        return url
    if _HOST_PORT.match(url):
        return f"http://{url}"
    if url.startswith(("/", "~", ".")) and url.endswith(".sock"):
        return f"unix://{os.path.abspath(os.path.expanduser(url))}"
    raise UsageError(
        f"--url {url!r} is not an engine URL; use http://HOST:PORT (e.g. "
        "http://127.0.0.1:7419), https://HOST:PORT or unix:///path/to/engine.sock"
    )


def _target(opts: Any) -> tuple[str, str] | None:
    """(url, key file) as `Options.engine` resolves them; None when the path is not
    lean (https, or a key file others can read: the SDK's loader says what to fix)."""
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
    if os.stat(os.path.expanduser(key)).st_mode & 0o077:
        return None
    return url, key


def address(url: str) -> tuple[str, Any] | None:
    """Where to connect for an engine URL the lean path speaks: ("unix", socket path) or
    ("tcp", (host, port)); None for others (https: the SDK's TLS)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme in ("unix", "http+unix"):
        return "unix", unquote(parts.path if parts.scheme == "unix" else parts.netloc)
    if parts.scheme == "http":
        return "tcp", (parts.hostname or "", parts.port or 80)
    return None


def _connect(where: tuple[str, Any]) -> Any:
    kind, place = where
    if kind == "unix":
        # The C socket the `socket` module wraps: that module's enums and selectors cost
        # a `dxflow ps` more than its request; everything used here is the C socket's.
        import _socket

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(30.0)
            sock.connect(place)
        except BaseException:
            sock.close()
            raise
        return sock
    import socket

    return socket.create_connection(place, timeout=30.0)


_HANDED: dict[tuple[Any, str, str], tuple[int, str, bytes]] = {}


def hand_over(where: tuple[str, Any], path: str, token: str, reply: tuple[int, str, bytes]) -> None:
    """A reply the fast path got and left to the click path: the same request then takes
    it rather than asking the engine twice (an error is answered, and audited, once)."""
    _HANDED[(where, path, token)] = reply


def request(where: tuple[str, Any], path: str, token: str) -> tuple[int, str, bytes] | None:
    """One GET: (status, reason, body), or None for an answer this module does not read."""
    handed = _HANDED.pop((where, path, token), None)
    if handed is not None:
        return handed
    head = (
        f"GET {path} HTTP/1.1\r\nHost: engine\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    )
    sock = _connect(where)
    try:
        sock.sendall(head.encode("latin-1"))
        chunks, size = [], 0
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_REPLY:
                return None
    finally:
        sock.close()
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
