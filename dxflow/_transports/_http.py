"""HttpTransport: the operation table spoken over HTTP (httpx), TCP or a unix socket.

It performs the challenge-response handshake itself, renews the token before it
expires and once after a 401, and retries only idempotent operations after a lost
connection. httpx errors are translated here into the dxflow error tree.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import anyio
import httpx

from .. import _operations as ops
from .._exceptions import EngineUnavailable, NotFound, TransportError, Unauthenticated
from .._keypairs import PrivateKey, is_challenge_message
from .._models import Challenge, Response, Token
from .._operations import Operation
from .._tokens import DeferredKey, TokenCache
from .._validation import validate_request
from .._wire import ByteRange, error_from_reply, ndjson_item, parse_content_range
from ._base import Download, FileSlice, Transport, as_chunks
from ._files import write_chunks
from ._resumable import put_file
from ._sockets import wide_blocking_client, wide_client
from ._tus import tus_headers, upload_info
from ._ws import open_channel

__all__ = ["HttpTransport"]

Progress = Callable[[int, int | None], object] | None

_RENEW_MARGIN = 60.0
_RETRY_DELAYS = (0.1, 0.4)
# Nothing reached the engine: it cannot be reached (or this side has no connection).
_UNREACHED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError,
              httpx.UnsupportedProtocol)  # fmt: skip


def _options(url: str, verify: bool | str) -> tuple[str, dict[str, Any], str | None]:
    """The base URL, the client options and the unix socket (if any) for `url`."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "http+unix"):
        return "http://engine", {}, unquote(parts.path if parts.scheme == "unix" else parts.netloc)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"engine URL {url!r} must be http://, https:// or unix:///path")
    if isinstance(verify, str):  # a CA bundle, e.g. the engine's self-signed certificate
        import ssl

        return url.rstrip("/"), {"verify": ssl.create_default_context(cafile=verify)}, None
    return url.rstrip("/"), {"verify": verify}, None


def _client(
    url: str, verify: bool | str, timeout: float, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    if transport is not None:  # an ASGI app in tests, or a caller's own connection pool
        return httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout)
    base, options, socket = _options(url, verify)
    if socket is not None:
        options["transport"] = httpx.AsyncHTTPTransport(uds=socket)
    return wide_client(httpx.AsyncClient(base_url=base, timeout=timeout, **options))


def _blocking_client(url: str, verify: bool | str, timeout: float) -> httpx.Client:
    base, options, socket = _options(url, verify)
    if socket is not None:
        options["transport"] = httpx.HTTPTransport(uds=socket)
    return wide_blocking_client(httpx.Client(base_url=base, timeout=timeout, **options))


def _prefix(prefix: str) -> str:
    if prefix and (not prefix.startswith("/") or "?" in prefix or "#" in prefix):
        raise ValueError(f"path prefix {prefix!r} must be empty or start with /")
    return prefix.rstrip("/")


def _lost(exc: httpx.TransportError, url: str | None, what: str) -> EngineUnavailable:
    """The error of the tree for an httpx failure: the one place they are translated."""
    if isinstance(exc, _UNREACHED):
        if _untrusted(exc):
            return EngineUnavailable(
                f"cannot reach the engine at {url}: its TLS certificate is not trusted "
                f"({exc}); pass the engine's certificate (<home>/tls/cert.pem) as "
                "verify=PATH",
                reason="tls_verify",
            )
        return EngineUnavailable(f"cannot reach the engine at {url}: {exc}", reason="unreachable")
    return TransportError(f"lost {what} {url}: {exc or type(exc).__name__}")


def _untrusted(exc: BaseException) -> bool:
    """Whether a connection failed on certificate verification (not a refused port)."""
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _error(response: httpx.Response) -> Exception:
    return error_from_reply(response.status_code, response.content, response.reason_phrase)


class HttpTransport(Transport):
    def __init__(
        self,
        url: str,
        key: PrivateKey | DeferredKey | None = None,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        token_lifetime: int = 3600,
        transport: httpx.AsyncBaseTransport | None = None,
        prefix: str = "",
        token_cache: TokenCache | None = None,
    ) -> None:
        """`prefix` goes in front of every path of the table: an engine reached through
        another one (a bridge, `/api/bridges/{name}`) or behind a proxy's sub-path.
        `token_cache` keeps the token between processes (the CLI's, see dxflow._tokens)."""
        self.url = url
        self._prefix = _prefix(prefix)
        self._key = key
        self._verify = verify
        self._timeout = timeout
        self._http = _client(url, verify, timeout, transport)
        self._blocking: httpx.Client | None = None
        self._own_connections = transport is None
        self._lifetime = token_lifetime
        self._token: str | None = None
        self._expires = 0.0
        self._cache = token_cache
        cached = token_cache.load() if token_cache is not None else None
        if cached is not None:
            self._token, self._expires = cached
        self._auth_lock = anyio.Lock()
        self._parent: HttpTransport | None = None
        """The master's transport, when this is a view of it on one of its agents."""

    # -- authentication -----------------------------------------------------------------

    async def _authorization(self, renew: bool = False) -> dict[str, str]:
        if self._key is None:
            return {}
        parent = self._parent
        if parent is not None:  # a bridged view: the master's token is its own
            return await parent._authorization(renew)
        if renew or self._token is None or self._expires - time.time() < _RENEW_MARGIN:
            async with self._auth_lock:
                if renew or self._token is None or self._expires - time.time() < _RENEW_MARGIN:
                    if renew and self._cache is not None:
                        self._cache.drop()
                    await self._handshake()
        return {"Authorization": f"Bearer {self._token}"}

    async def _handshake(self) -> None:
        assert self._key is not None
        challenge = await self._send(ops.auth.CHALLENGE, {}, {})
        assert isinstance(challenge, Challenge)
        if not is_challenge_message(challenge.message, challenge.nonce):
            raise Unauthenticated("the engine sent a malformed challenge; refusing to sign it")
        token = await self._send(
            ops.auth.VERIFY,
            {
                "identity": self._key.public.fingerprint,
                "nonce": challenge.nonce,
                "signature": self._key.sign_b64(challenge.message),
                "lifetime": self._lifetime,
            },
            {},
        )
        assert isinstance(token, Token)
        self._token, self._expires = token.token, token.expires_at.timestamp()
        if self._cache is not None:
            self._cache.store(self._token, self._expires)

    # -- requests -----------------------------------------------------------------------

    def _prepare(self, op: Operation, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The request's path (the table's, filled in and prefixed) and its other fields."""
        request = validate_request(op.request, params)
        data = request.model_dump(mode="json", exclude_none=True) if request else {}
        if op.body_in_query:  # `?x=` is refused as ambiguous: an empty string is left out
            data = {key: value for key, value in data.items() if value != ""}
        path = op.path
        for name in op.path_params:
            path = path.replace("{" + name + "}", quote(str(data.pop(name)), safe=""))
        return self._prefix + path, data

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _lost(exc, self.url, "the call to") from None

    async def _send(
        self, op: Operation, params: Mapping[str, Any], headers: dict[str, str]
    ) -> Response:
        if op.custom_route:
            return await self._tus(op, params, headers, None)
        path, data = self._prepare(op, params)
        key = "params" if op.body_in_query else "json"
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            try:
                response = await self._request(op.method, path, headers=headers, **{key: data})
            except EngineUnavailable:
                if delay is None or not op.idempotent:
                    raise
                await anyio.sleep(delay * (attempt + 1))
                continue
            if response.is_success:
                assert op.response is not None
                return op.response.model_validate_json(response.content)
            raise _error(response)
        raise AssertionError("unreachable")

    async def call(self, op: Operation, params: Mapping[str, Any]) -> Response:
        headers = {} if op.public else await self._authorization()
        try:
            return await self._send(op, params, headers)
        except Unauthenticated:
            # Our token may have been issued before an engine restart or just expired:
            # a rejected request did nothing, so one fresh handshake and retry is safe.
            if op.public or self._key is None:
                raise
            return await self._send(op, params, await self._authorization(renew=True))

    async def stream(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Response]:
        path, data = self._prepare(op, params)
        assert op.response is not None
        query, body = (data, None) if op.body_in_query else (None, data)
        for renew in (False, True):
            headers = {} if op.public else await self._authorization(renew)
            try:
                async with self._http.stream(
                    op.method, path, headers=headers, params=query, json=body
                ) as reply:
                    if not reply.is_success:
                        await reply.aread()
                        if self._renewable(reply, renew):
                            continue  # nothing was yielded yet: one fresh handshake
                        raise _error(reply)
                    async for line in reply.aiter_lines():
                        item = ndjson_item(line)
                        if item is not None:
                            yield op.response.model_validate(item)
                    return
            except httpx.TransportError as exc:
                raise _lost(exc, self.url, "the stream from") from None

    def _renewable(self, reply: httpx.Response, renewed: bool) -> bool:
        """A 401 to a token that a fresh handshake may replace (as `call` does)."""
        return reply.status_code == 401 and self._key is not None and not renewed

    @asynccontextmanager
    async def download(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Download]:
        path, data = self._prepare(op, params)
        span = ByteRange.of(data.pop("start", None), data.pop("end", None))
        for renew in (False, True):
            headers = {} if op.public else await self._authorization(renew)
            if span is not None:
                headers["Range"] = span.header()
            try:
                async with self._http.stream(
                    op.method, path, headers=headers, params=data
                ) as reply:
                    if not reply.is_success:
                        await reply.aread()
                        if self._renewable(reply, renew):
                            continue
                        raise _error(reply)
                    yield _download(reply)
                    return
            except httpx.TransportError as exc:
                raise _lost(exc, self.url, "the download from") from None

    async def _tus(
        self, op: Operation, params: Mapping[str, Any], headers: dict[str, str], body: Any
    ) -> Response:
        # tus: the table's method and path, the arguments in headers (not the query)
        path, data = self._prepare(op, params)
        data = {**data, **({"id": params["id"]} if "id" in params else {})}
        extra = tus_headers(op.name, data)
        reply = await self._send_body(op.method, path, {}, {**headers, **extra}, body)
        if not reply.is_success:
            if op.method == "HEAD" and reply.status_code == 404:  # no body for an envelope
                raise NotFound(f"no upload {params.get('id')!r}")
            raise _error(reply)
        return upload_info(reply, data)

    async def _download_to(
        self, op: Operation, params: Mapping[str, Any], target: Path, progress: Progress
    ) -> int | None:
        """Download into `target` from a worker thread: blocking reads and writes, with no
        event loop between them, go about twice as fast as the async path."""
        if not self._own_connections:  # an ASGI app, in tests: only the async path
            return None
        path, data = self._prepare(op, params)
        headers = {} if op.public else await self._authorization()
        client = self._blocking_client()
        return await anyio.to_thread.run_sync(
            _fetch, client, path, data, headers, target, progress, self.url
        )

    async def upload(self, op: Operation, params: Mapping[str, Any], body: Any) -> Any:
        headers = {} if op.public else await self._authorization()
        if op.custom_route:
            return await self._tus(op, params, headers, body)
        path, data = self._prepare(op, params)
        headers["Content-Type"] = "application/octet-stream"
        if data.get("size") is not None:
            headers["Content-Length"] = str(data["size"])
        reply = await self._send_body(op.method, path, data, headers, body)
        if not reply.is_success:
            raise _error(reply)
        assert op.response is not None
        return op.response.model_validate_json(reply.content)

    async def _send_body(
        self, method: str, path: str, query: dict[str, Any], headers: dict[str, str], body: Any
    ) -> httpx.Response:
        """Send a request with a body; a FileSlice goes from a worker thread (see there)."""
        try:
            if isinstance(body, FileSlice) and self._own_connections:
                headers["Content-Length"] = str(body.length)
                client = self._blocking_client()
                return await anyio.to_thread.run_sync(
                    lambda: client.request(
                        method, path, params=query, headers=headers, content=body.read()
                    )
                )
            content = None if body is None else as_chunks(body)
            return await self._http.request(
                method, path, params=query, headers=headers, content=content
            )
        except httpx.TransportError as exc:
            raise _lost(exc, self.url, "the upload to") from None

    def _blocking_client(self) -> httpx.Client:
        if self._parent is not None:
            return self._parent._blocking_client()
        if self._blocking is None:
            assert self.url is not None
            self._blocking = _blocking_client(self.url, self._verify, self._timeout)
        return self._blocking

    @asynccontextmanager
    async def channel(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Any]:
        path, data = self._prepare(op, params)
        headers = {} if op.public else await self._authorization()
        assert self.url is not None
        async with open_channel(self.url, path, data, headers, self._verify) as link:
            yield link

    async def aclose(self) -> None:
        if self._parent is not None:  # a bridged view: its connections are its parent's
            return
        if self._blocking is not None:
            self._blocking.close()
        await self._http.aclose()

    # -- files (appended: the transfer strategy lives in _files.py and _resumable.py) ---

    async def get_file(
        self, op: Operation, params: Mapping[str, Any], target: Path, progress: Progress
    ) -> int:
        done = await self._download_to(op, params, target, progress)
        if done is not None:
            return done
        async with self.download(op, params) as download:
            return await write_chunks(download.chunks, target, download.size, progress)

    async def put_file(
        self, op: Operation, params: Mapping[str, Any], source: Path, progress: Progress
    ) -> Response:
        """One request for a small file, a resumable tus upload for a big one."""
        return await put_file(self, op, params, source, progress)

    def bridged(self, name: str) -> HttpTransport:
        """Agent `name` of this master, under its bridge prefix: a view that shares this
        transport's connections and token (the caller signs in to the master, whichever
        agent it reaches), so a fleet of a thousand costs no client and no handshake
        each. Closing the view leaves them to this transport."""
        view = copy.copy(self)
        view._prefix = f"{self._prefix}/api/bridges/{quote(name, safe='')}"
        view._parent = self
        view._auth_lock = anyio.Lock()
        return view

    def clone(self) -> HttpTransport:
        """The same engine, key, verification, timeout and token lifetime, with an httpx
        client of its own (a client belongs to the event loop it was made on)."""
        assert self.url is not None
        return HttpTransport(self.url, self._key, verify=self._verify, timeout=self._timeout,
                             token_lifetime=self._lifetime, prefix=self._prefix,
                             token_cache=self._cache)  # fmt: skip


def _fetch(
    client: httpx.Client,
    path: str,
    query: dict[str, Any],
    headers: dict[str, str],
    target: Path,
    progress: Progress,
    url: str | None = None,
) -> int:
    try:
        with client.stream("GET", path, params=query, headers=headers) as reply:
            if not reply.is_success:
                reply.read()
                raise _error(reply)
            length = reply.headers.get("content-length")
            size = int(length) if length is not None else None
            return _write_all(reply.iter_raw(), target, size, progress)
    except httpx.TransportError as exc:
        raise _lost(exc, url, "the download from") from None


def _write_all(chunks: Iterator[bytes], target: Path, size: int | None, progress: Progress) -> int:
    done = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            done += len(chunk)
            if progress is not None:
                progress(done, size)
    finally:
        os.close(fd)
    return done


def _download(reply: httpx.Response) -> Download:
    length = reply.headers.get("content-length")
    size = int(length) if length is not None else None
    total, start = size, 0
    partial = parse_content_range(reply.headers.get("content-range"))
    if partial is not None:
        start, total = partial
    disposition = reply.headers.get("content-disposition", "")
    name = disposition.rpartition("''")[2] or None
    return Download(reply.aiter_raw(), size, total, reply.headers.get("etag"),
                    unquote(name) if name else None, start=start)  # fmt: skip
