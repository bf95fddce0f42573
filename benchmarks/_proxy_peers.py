"""Servers and clients of the proxy benchmark (a helper, not a benchmark).

* `nginx_proxy(origin_port)`: nginx (Debian `nginx-light`) as a reverse proxy in front
  of `127.0.0.1:origin_port`: `proxy_pass` to an upstream with a keep-alive pool, HTTP/1.1
  to it, no disk buffering; one worker (the engine is one process too). Its config,
  pid file, logs and temp paths live in a temporary directory.
* `ws_echo()`: a `websockets` echo server on a loopback port, in a child process.
* `redis()`: Debian's `redis-server` on a loopback port, no persistence.
* `wrk(url)`: requests/s and failures of `wrk -t2 -c16`.
* `http_latencies(url)`: seconds per request over ONE keep-alive connection, a raw socket
  loop (no client library between the clock and the socket).
* `ws_latencies(url)`: seconds per echo round trip over one WebSocket.
* `redis_benchmark(port)`: requests/s per test of `redis-benchmark -q`.

Every server listens on 127.0.0.1 only, runs in its own process group and is stopped
when its context exits, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from _common import PYTHON, REPO, child_env, free_port
from _file_peers import _nginx_binary, _stop_group, _wait_answer

__all__ = [
    "http_latencies",
    "nginx_proxy",
    "redis",
    "redis_benchmark",
    "wait_port",
    "wrk",
    "ws_echo",
    "ws_latencies",
]

START_TIMEOUT = 30.0


def wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    """Poll until 127.0.0.1:port accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@contextlib.contextmanager
def _child(command: list[str], what: str, port: int, tmp: Path) -> Iterator[None]:
    log = tmp / f"{what}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_port(port, process, what)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-2000:]}") from None
        yield
    finally:
        _stop_group(process, signal.SIGTERM)


# -- nginx as a reverse proxy ---------------------------------------------------------------


def _proxy_config(tmp: Path, port: int, origin_port: int, ws_port: int | None) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # `user` only matters for root
    temps = "\n".join(
        f"    {name}_temp_path {tmp / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / name).mkdir()
    ws = ""
    if ws_port is not None:  # /ws/: WebSocket upgrades passed on to the echo server
        ws = f"""
    upstream echo {{
        server 127.0.0.1:{ws_port};
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        "" close;
    }}"""
        ws_location = """
        location /ws/ {
            proxy_pass http://echo/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
        }"""
    else:
        ws_location = ""
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
{temps}
    upstream origin {{
        server 127.0.0.1:{origin_port};
        keepalive 32;
    }}{ws}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            # stream: memory buffers only, never a temp file on disk
            proxy_max_temp_file_size 0;
            proxy_buffers 8 64k;
        }}{ws_location}
    }}
}}
"""


@contextlib.contextmanager
def nginx_proxy(origin_port: int, ws_port: int | None = None) -> Iterator[str]:
    """nginx proxying to 127.0.0.1:origin_port (and `/ws/` to a WebSocket server on
    ws_port); yield its `http://127.0.0.1:PORT`."""
    binary = _nginx_binary()
    tmp = Path(tempfile.mkdtemp(prefix="dxflow-bench-nginx-proxy-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(_proxy_config(tmp, port, origin_port, ws_port))
        command = [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
        check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected its config {conf}: {check.stderr.strip()}")
        with open(tmp / "nginx.out", "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        _wait_answer("nginx (proxy)", f"{url}/", process, tmp / "error.log")
        yield url
    finally:
        if process is not None:
            _stop_group(process, signal.SIGQUIT)
        shutil.rmtree(tmp, ignore_errors=True)


STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


@contextlib.contextmanager
def nginx_stream(target_port: int) -> Iterator[int]:
    """nginx's TCP proxy (the stream module, Debian's libnginx-mod-stream) in front of
    127.0.0.1:target_port; yield its port."""
    if not STREAM_MODULE.exists():
        raise RuntimeError(f"nginx's stream module is missing ({STREAM_MODULE}); run: "
                           "apt-get install libnginx-mod-stream")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="dxflow-bench-nginx-stream-"))
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(f"""load_module {STREAM_MODULE};
{user}daemon off;
master_process on;
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 1024; }}
stream {{
    server {{
        listen 127.0.0.1:{port};
        proxy_pass 127.0.0.1:{target_port};
        tcp_nodelay on;
    }}
}}
""")
    try:
        with _child([_nginx_binary(), "-p", str(tmp), "-e", str(tmp / "error.log"), "-c",
                     str(conf)], "nginx-stream", port, tmp):  # fmt: skip
            yield port
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- WebSocket echo, Redis ------------------------------------------------------------------

_WS_ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None):
        await asyncio.Future()

asyncio.run(main())
"""


@contextlib.contextmanager
def ws_echo() -> Iterator[int]:
    """A `websockets` echo server (every message sent back); yield its port."""
    tmp = Path(tempfile.mkdtemp(prefix="dxflow-bench-ws-"))
    try:
        port = free_port()
        with _child([PYTHON, "-c", _WS_ECHO, str(port)], "ws-echo", port, tmp):
            yield port
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def redis() -> Iterator[int]:
    """Debian's redis-server on 127.0.0.1, no persistence; yield its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (`apt-get install -y redis-server`)")
    tmp = Path(tempfile.mkdtemp(prefix="dxflow-bench-redis-"))
    try:
        port = free_port()
        command = [
            binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", str(tmp), "--protected-mode", "no",
        ]  # fmt: skip
        with _child(command, "redis-server", port, tmp):
            yield port
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- clients -------------------------------------------------------------------------------


def wrk(
    url: str, headers: dict[str, str], seconds: int, connections: int = 16
) -> tuple[float, int]:
    """(requests/s, failed requests) of `wrk -t2 -c16 -dNs` on `url`."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (`apt-get install -y wrk`)")
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if not rps:
        raise RuntimeError(f"unparsed wrk output:\n{done.stdout}")
    errors = 0
    if bad := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout):
        errors += int(bad[1])
    if sock := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done.stdout
    ):
        errors += sum(int(sock[i]) for i in range(1, 5))
    return float(rps[1]), errors


def _read_response(sock: socket.socket, buffer: bytearray) -> bytes:
    """Read one HTTP/1.1 response (Content-Length or chunked) off `sock`; its head."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the connection closed before a response")
        buffer += chunk
    head = bytes(buffer[:end])
    del buffer[: end + 4]
    if length := re.search(rb"(?im)^content-length:\s*(\d+)", head):
        need = int(length[1])
        while len(buffer) < need:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the connection closed mid-body")
            buffer += chunk
        del buffer[:need]
    elif re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        while (stop := buffer.find(b"0\r\n\r\n")) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the connection closed mid-body")
            buffer += chunk
        del buffer[: stop + 5]
    return head


def http_latencies(url: str, headers: dict[str, str], count: int) -> list[float]:
    """Seconds per GET of `url`, `count` times over one keep-alive connection."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    samples: list[float] = []
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(request)
            head = _read_response(sock, buffer)
            samples.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"GET {url}: {head.splitlines()[0].decode(errors='replace')}")
    return samples


def ws_latencies(
    url: str, count: int, headers: dict[str, str] | None = None, size: int = 32
) -> list[float]:
    """Seconds per echo round trip of a `size`-byte binary message over one WebSocket."""
    from websockets.sync.client import connect

    message = b"x" * size
    samples: list[float] = []
    with connect(
        url, compression=None, open_timeout=10, proxy=None, additional_headers=headers
    ) as ws:
        ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            start = time.perf_counter()
            ws.send(message)
            back = ws.recv(timeout=10)
            samples.append(time.perf_counter() - start)
            if back != message:
                raise RuntimeError(f"{url} echoed {back!r}, not what was sent")
    return samples


def redis_benchmark(port: int, requests: int) -> dict[str, float]:
    """Requests/s per test of `redis-benchmark -t get,set -q -n N` on 127.0.0.1:port."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not installed (`apt-get install -y redis-tools`)")
    command = [binary, "-h", "127.0.0.1", "-p", str(port), "-t", "get,set", "-q",
               "-n", str(requests)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    # -q rewrites its progress line with \r: keep the final figures only
    text = done.stdout.replace("\r", "\n")
    found = dict(re.findall(r"^(SET|GET): ([\d.]+) requests per second", text, re.MULTILINE))
    if done.returncode != 0 or set(found) != {"SET", "GET"}:
        raise RuntimeError(
            f"redis-benchmark on port {port} failed ({done.returncode}): "
            f"{(done.stderr or text).strip()[-500:]}"
        )
    return {test.lower(): float(rps) for test, rps in found.items()}
