"""HttpTransport(prefix=): an engine served under a sub-path (a bridge, a reverse proxy's
location) is one parameter away. A real server on loopback, its app mounted under the
prefix; calls, streams, downloads, uploads (one request and tus) and channels go through."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from dxflow import Engine, NotFound
from dxflow._core import EngineCore
from dxflow._keypairs import load_private_key
from dxflow._transports._http import HttpTransport
from dxflow_server import create_app

PREFIX = "/sub/engine-b1"


@pytest.fixture
def app(core: EngineCore) -> Starlette:  # served by the shared `server_url` fixture
    return Starlette(routes=[Mount(PREFIX, app=create_app(core))])


@pytest.fixture
def bridged(core: EngineCore, server_url: str) -> Iterator[Engine]:
    key = load_private_key(core.config.home.master_key)
    with Engine(transport=HttpTransport(server_url, key, prefix=PREFIX)) as engine:
        yield engine


def test_nothing_answers_outside_the_prefix(bridged: Engine, server_url: str) -> None:
    assert httpx.get(f"{server_url}/api/health").status_code == 404
    assert httpx.get(f"{server_url}{PREFIX}/api/health").status_code == 200


def test_calls_streams_and_errors_go_through_the_prefix(bridged: Engine) -> None:
    assert bridged.ping().identity == "master"  # the handshake too
    bridged.objects.mkdir("folder")
    bridged.objects.pipe("folder/a.txt", b"hello")
    done = bridged.objects.zip("folder", "folder.zip")  # an NDJSON stream
    assert done.action == "done"
    assert {i.name for i in bridged.objects.ls("")} == {"folder", "folder.zip"}
    with pytest.raises(NotFound):  # the envelope of the mounted app
        bridged.objects.info("nowhere")


def test_downloads_and_uploads_go_through_the_prefix(bridged: Engine, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    bridged.objects.pipe("blob.bin", data)
    assert bridged.objects.cat("blob.bin") == data
    assert bridged.objects.cat("blob.bin", 10, 20) == data[10:20]  # a Range request
    got = bridged.objects.get("blob.bin", tmp_path / "got.bin")  # the blocking client
    assert got.read_bytes() == data
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(17 << 20))  # over the one-request size: tus
    assert bridged.objects.put(source, "big.bin").size == 17 << 20
    assert bridged.objects.cat("big.bin") == source.read_bytes()


def test_channels_go_through_the_prefix(bridged: Engine) -> None:
    shell = bridged.shells.create("t1", command="/bin/sh")
    with shell.attach() as channel:
        assert channel.hello["type"] == "hello"


def test_a_clone_keeps_the_prefix(bridged: Engine) -> None:
    bridged.objects.pipe("cloned.txt", b"through the clone")
    fs = bridged.objects.fs()  # fsspec's per-loop engines are clones of this transport
    assert fs.cat_file("cloned.txt") == b"through the clone"
