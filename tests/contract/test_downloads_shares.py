"""Downloads over HTTP (Range, ETag, HEAD, zipped directories) and share links."""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from dxflow import Engine, Gone, NotFound
from dxflow._core import EngineCore

from ..conftest import EngineFactory


@pytest.fixture
def http(server_url: str, core: EngineCore) -> Iterator[httpx.Client]:
    record = core.keys.get("master")
    assert record is not None
    token = core.auth.issue(record, 3600).token
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


@pytest.fixture
def data(core: EngineCore) -> bytes:
    blob = os.urandom(10_000)
    target = core.objects.storage.root / "d" / "file name.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(blob)
    return blob


def test_download_headers_ranges_and_head(http: httpx.Client, data: bytes) -> None:
    params = {"path": "d/file name.bin"}
    whole = http.get("/api/objects/content", params=params)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(len(data))
    assert "filename*=UTF-8''file%20name.bin" in whole.headers["content-disposition"]
    etag = whole.headers["etag"]
    part = http.get("/api/objects/content", params=params, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = http.get("/api/objects/content", params=params, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    open_end = http.get("/api/objects/content", params=params, headers={"Range": "bytes=9990-"})
    assert open_end.content == data[9990:]
    beyond = http.get("/api/objects/content", params=params, headers={"Range": "bytes=20000-"})
    assert beyond.status_code == 416 and beyond.json()["error"]["code"] == "range_not_satisfiable"
    several = http.get("/api/objects/content", params=params, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == data  # ignored, as RFC 9110 allows
    head = http.head("/api/objects/content", params=params)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data)) and head.headers["etag"] == etag
    cached = http.get("/api/objects/content", params=params, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    stale = http.get("/api/objects/content", params=params,
                     headers={"Range": "bytes=0-9", "If-Range": '"old"'})  # fmt: skip
    assert stale.status_code == 200 and stale.content == data


def test_a_directory_downloads_as_a_zip_made_on_the_fly(http: httpx.Client, data: bytes) -> None:
    reply = http.get("/api/objects/content", params={"path": "d"})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/zip"
    assert "content-length" not in reply.headers  # streamed, never staged
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    assert archive.read("file name.bin") == data


def test_share_links(engine: Engine, data: bytes, server_url: str) -> None:
    link = engine.objects.share("d/file name.bin", expires="1h", max_uses=2)
    path = link.url[link.url.index("/s/") :]
    with httpx.Client(base_url=server_url) as anonymous:
        # The Host header plays no part: the link works whatever name reached the engine.
        first = anonymous.get(path, headers={"Host": "files.example.org"})
        assert first.status_code == 200 and first.content == data
        # Nothing sent, nothing used: a HEAD and a 304 leave the second use for the range.
        head = anonymous.head(path)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
        etag = first.headers["etag"]
        assert anonymous.get(path, headers={"If-None-Match": etag}).status_code == 304
        ranged = anonymous.get(path, headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 206 and ranged.content == data[:10]
        used_up = anonymous.get(path)
        assert used_up.status_code == 410 and "used up" in used_up.json()["error"]["message"]
        forged = anonymous.get(path[:-3] + "AAA")
        assert forged.status_code == 403 and "not valid" in forged.json()["error"]["message"]
        read_only = anonymous.put(path, content=b"no")
        assert read_only.status_code in (403, 410)
        revocable = engine.objects.share("d/file name.bin")
        revoked_path = revocable.url[revocable.url.index("/s/") :]
        assert anonymous.get(revoked_path).status_code == 200
        engine.objects.revoke(revocable.id)
        revoked = anonymous.get(revoked_path)
        assert revoked.status_code == 410 and "revoked" in revoked.json()["error"]["message"]
        drop = engine.objects.share("inbox/report.csv", writable=True)
        put = anonymous.put(drop.url[drop.url.index("/s/") :], content=b"a,b\n1,2\n")
        assert put.status_code == 200 and put.json()["path"] == "inbox/report.csv"
    assert engine.objects.cat("inbox/report.csv") == b"a,b\n1,2\n"
    written = [r for r in engine.audit() if r.operation == "shares.write"]
    assert sorted((r.identity, r.target, r.outcome) for r in written) == sorted(
        [
            (f"share:{link.id}", link.id, "error:permission_denied"),
            (f"share:{drop.id}", drop.id, "ok"),
        ]
    )  # the refused write to a read-only link is on record too, as the link that acted
    assert drop.url.rpartition("/")[2] not in repr(written)  # the token is a credential
    read = [(r.identity, r.outcome) for r in engine.audit() if r.operation == "shares.read"]
    assert read.count((f"share:{link.id}", "ok")) == 2  # the two downloads, not HEAD or 304
    assert (f"share:{link.id}", "error:gone") in read  # used up
    assert (None, "error:permission_denied") in read  # forged: no link vouches for it
    listed = {s.id: s for s in engine.objects.shares()}
    assert listed[revocable.id].revoked and listed[link.id].uses == 2
    folder = engine.objects.share("d", max_uses=1)
    with httpx.Client(base_url=server_url) as anonymous:
        folder_path = folder.url[folder.url.index("/s/") :]
        assert anonymous.head(folder_path).status_code == 200
        assert zipfile.ZipFile(io.BytesIO(anonymous.get(folder_path).content)).namelist()
        assert anonymous.get(folder_path).status_code == 410
    with pytest.raises(NotFound):
        engine.objects.revoke("no-such-share")


def test_expired_links_are_gone(
    make_engine: EngineFactory, core: EngineCore, data: bytes, server_url: str
) -> None:
    engine = make_engine()  # a server serves the home: links have a URL
    link = engine.objects.share("d/file name.bin", expires=0.2)
    time.sleep(0.3)
    token = link.url.rpartition("/s/")[2]
    from dxflow._models import ShareToken

    with pytest.raises(Gone, match="expired"):
        core.shares.read(None, ShareToken(token=token))  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        engine.objects.share("d/missing.bin")


def test_remote_links_use_the_address_the_client_reached(
    make_engine: EngineFactory, transport: str, server_url: str, data: bytes
) -> None:
    link = make_engine().objects.share("d/file name.bin")
    expected = server_url if transport == "http" else "http://127.0.0.1:"
    assert link.url.startswith(expected)
