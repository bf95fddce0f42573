"""Proxies on an engine booted with `--tls`: `/p/{name}/` over HTTPS and WSS, verified
against the engine's certificate, and that certificate renewed while the engine runs
(the listener presents the new one to the next handshake, no restart).

Nothing here asserts a duration: conditions are polled with generous deadlines.
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509

import dxflow

from ._proxy_servers import app_process, free_port, wait_for
from .conftest import Booted, boot
from .conftest import dxflow as run

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


@dataclass
class TlsNode:
    booted: Booted
    engine: dxflow.Engine

    @property
    def cert(self) -> Path:
        """The engine's self-signed certificate: what clients are told to trust."""
        return self.booted.home / "tls" / "cert.pem"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    booted = boot(tmp_path_factory.mktemp("proxies-tls") / "home", "--tls")
    cert = booted.home / "tls" / "cert.pem"
    engine = dxflow.Engine(booted.url, key=booted.master_key, verify=str(cert))
    try:
        yield TlsNode(booted, engine)
    finally:
        engine.close()
        run("boot", "down", "--home", booted.home, check=False)


@pytest.fixture
def app() -> Iterator[int]:
    port = free_port()
    with app_process(port, "host"):
        yield port


def _presented(url: str) -> bytes:
    """The certificate a fresh handshake with the engine's listener gets (DER)."""
    address = httpx.URL(url)
    assert address.host and address.port
    pem = ssl.get_server_certificate((address.host, address.port), timeout=30)
    return ssl.PEM_cert_to_DER_cert(pem)


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_a_proxy_under_p_on_an_engine_booted_with_tls(node: TlsNode, app: int) -> None:
    from websockets.sync.client import connect

    proxy = node.engine.proxies.create("web", target=f"127.0.0.1:{app}", auth="none")
    assert proxy.url == f"{node.booted.url}/p/web/"
    assert proxy.url.startswith("https://127.0.0.1:")

    trusted = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--cacert", str(node.cert), f"{proxy.url}name"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout == "host"
    untrusted = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", f"{proxy.url}name"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert untrusted.returncode == 60, untrusted  # self-signed: not trusted by default

    context = ssl.create_default_context(cafile=str(node.cert))
    with httpx.Client(verify=context, trust_env=False, timeout=30) as http:
        seen = http.get(f"{proxy.url}headers?x=1").json()
        assert seen[":path"] == "/headers?x=1"
        assert seen["x-forwarded-proto"] == "https"  # the client's scheme, not the hop's
        assert seen["x-forwarded-host"] == httpx.URL(node.booted.url).netloc.decode()
        assert seen["x-forwarded-prefix"].rstrip("/") == "/p/web"
        moved = http.get(f"{proxy.url}old")
        assert moved.status_code == 302
        assert httpx.URL(moved.headers["location"]).path == "/p/web/new"

    wss = proxy.url.replace("https://", "wss://", 1) + "ws"
    with connect(wss, ssl=context, open_timeout=30, proxy=None) as ws:
        ws.send("hello")
        assert ws.recv(timeout=30) == "hello"
        blob = bytes(range(256)) * 400  # 100 KiB: a 64-bit length frame
        ws.send(blob)
        assert ws.recv(timeout=30) == blob
    proxy.remove()


def _near_expiry(folder: Path) -> tuple[Path, Path]:
    """A certificate of the engine's kind that expires tomorrow (within RENEW_BEFORE)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=dxflow engine",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_the_listeners_certificate_is_renewed_while_the_engine_runs(
    node: TlsNode, tmp_path: Path
) -> None:
    tls = node.booted.home / "tls"
    booted_with = _der(node.cert)
    assert _presented(node.booted.url) == booted_with

    # Time passes: the certificate in <home>/tls/ now expires tomorrow (as the engine's
    # own does 30 days before its end). Each file replaced by a rename, key first, as
    # the engine writes them.
    cert, key = _near_expiry(tmp_path)
    expiring = _der(cert)
    os.chmod(key, 0o600)
    os.replace(key, tls / "key.pem")
    os.replace(cert, tls / "cert.pem")

    def renewed() -> bool:
        on_disk = _der(node.cert)
        return on_disk not in (booted_with, expiring) and _presented(node.booted.url) == on_disk

    wait_for(renewed, "a new certificate made and presented by the running listener")
    made = x509.load_pem_x509_certificate(node.cert.read_bytes())
    left = made.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert left > datetime.timedelta(days=800)
    # A fresh client trusting only the new file is served (the engine never restarted).
    with dxflow.Engine(node.booted.url, key=node.booted.master_key, verify=str(node.cert)) as e:
        assert e.ping().identity == "master"
    status = json.loads(run("boot", "status", "--home", node.booted.home, "--json").stdout)
    assert status["pid"] == node.booted.pid
