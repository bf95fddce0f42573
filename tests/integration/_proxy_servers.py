"""Real servers behind the proxies of test_proxies_real.py (helpers, not tests).

* `APP`: a stdlib-only web app (no third-party import, so it runs in an image with only
  the Python standard library): redirects to an absolute path and to absolute URLs (its
  own, built from the Host it was sent, and a foreign one), a cookie with `Path=/`, the
  headers it was sent, a streamed body of any size, a health path, its own name, requests
  it holds until told to let them go, and a hand-written WebSocket echo on `/ws`.
* `app_process(port, name)`: that app on 127.0.0.1 in a child process (a target that a
  test can kill).
* `python_image()`: a Docker image FROM scratch with Debian's `/usr/bin/python3`, the
  shared libraries `ldd` names for it, its standard library and the app: a real web app
  in a workflow container with no registry. Built once per tag.
* `redis_server()`: Debian's redis-server on a loopback port, no persistence.
* `RssPeak`: a process's RSS growth, sampled in a thread.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

APP = r'''
"""A stdlib-only web app: python3 app.py PORT NAME [HOST]."""
import base64, hashlib, http.server, json, struct, sys, threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHUNK = bytes(1 << 20)
# /hold answers only once /release was asked (of this app, not through a proxy): a test
# makes a target busy for as long as it needs, with no sleep to guess. /held: how many
# are held now.
HOLD = threading.Condition()
HELD = [0]
RELEASED = [False]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "app"

    def log_message(self, *args):
        pass

    def answer(self, status, body, kind="text/plain", headers=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        size = int(self.headers.get("Content-Length") or 0)
        self.answer(200, self.rfile.read(size))

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        if path == "/":
            page = '<a href="/new">new</a> <a href="/old">old</a>'
            return self.answer(200, page, "text/html")
        if path == "/health":
            return self.answer(200, "ok")
        if path == "/name":
            return self.answer(200, NAME)
        if path == "/old":
            return self.answer(302, "moved", headers=[("Location", "/new")])
        if path == "/away":  # its own absolute URL, named by the Host it was sent
            here = "http://" + self.headers.get("Host", "") + "/new"
            return self.answer(302, "moved", headers=[("Location", here)])
        if path == "/elsewhere":  # a URL of another site
            return self.answer(302, "moved", headers=[("Location", "http://elsewhere.test/new")])
        if path == "/new":
            return self.answer(200, "the new page of " + NAME)
        if path == "/hold":
            with HOLD:
                HELD[0] += 1
                released = HOLD.wait_for(lambda: RELEASED[0], timeout=600)
                HELD[0] -= 1
            return self.answer(200 if released else 503, NAME)
        if path == "/held":
            with HOLD:
                held = HELD[0]
            return self.answer(200, str(held))
        if path == "/release":  # every held request, and each one after, answers
            with HOLD:
                RELEASED[0] = True
                HOLD.notify_all()
            return self.answer(200, "released")
        if path == "/cookie":
            return self.answer(200, "set", headers=[("Set-Cookie", "session=abc; Path=/")])
        if path == "/headers":
            seen = {k.lower(): v for k, v in self.headers.items()}
            seen[":path"] = self.path
            return self.answer(200, json.dumps(seen), "application/json")
        if path.startswith("/bytes/"):
            return self.stream(int(path.rsplit("/", 1)[1]))
        return self.answer(404, "no such page: " + path)

    def stream(self, size):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        view = memoryview(CHUNK)
        while size > 0:
            n = min(size, len(CHUNK))
            self.wfile.write(view[:n])
            size -= n

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", self.rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b""
            data = self.rfile.read(size)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 8:
                self.frame(8, data[:2])
                return
            if opcode == 9:
                self.frame(10, data)
            elif opcode in (1, 2):
                self.frame(opcode, data)

    def frame(self, opcode, data):
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.wfile.write(head + data)
        self.wfile.flush()


NAME = sys.argv[2]
server = http.server.ThreadingHTTPServer((sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0",
                                         int(sys.argv[1])), Handler)
server.daemon_threads = True
print("listening", flush=True)
server.serve_forever()
'''

APP_IMAGE = "dxflow-test/pyapp:2"
"""The app in an image FROM scratch (bump the tag when APP or the build changes)."""

HOST_PYTHON = Path("/usr/bin/python3")
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "ensurepip", "lib2to3", "pydoc_data", "turtledemo",
    "site-packages", "dist-packages", "__pycache__", "lib-dynload", "unittest", "distutils",
    "venv", "sqlite3", "curses", "dbm",
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll `condition` until it is true (generous: the machine may be loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


# -- the app on the host -------------------------------------------------------------------


@contextlib.contextmanager
def app_process(port: int, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """The app on 127.0.0.1:port in a child process; stopped (killed) at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", APP, str(port), name, "127.0.0.1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: process.poll() is None and _listens(port), f"the app {name} listening")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


# -- the app in an image -------------------------------------------------------------------


def _libraries(binary: Path) -> list[Path]:
    """The shared libraries `ldd` names for `binary`, and its loader."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found.append(Path(parts[2]))
        elif parts and parts[0].startswith("/"):
            found.append(Path(parts[0]))  # the loader: /lib64/ld-linux-x86-64.so.2
    return found


def _image_context() -> bytes:
    """Dockerfile + rootfs/: python3, its libraries, its stdlib (trimmed), the app."""
    if not HOST_PYTHON.exists():
        raise RuntimeError("the app image needs Debian's /usr/bin/python3")
    real = HOST_PYTHON.resolve()
    version = subprocess.run(
        [str(real), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stdlib = Path(f"/usr/lib/python{version}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_bytes(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        def skip(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            return None if Path(info.name).name in STDLIB_SKIP else info

        dockerfile = (
            "FROM scratch\nCOPY rootfs /\n"
            "ENV PYTHONHOME=/usr LD_LIBRARY_PATH=/lib/x86_64-linux-gnu PYTHONDONTWRITEBYTECODE=1\n"
            'CMD ["/usr/bin/python3", "/app/app.py", "8080", "container"]\n'
        )
        add_bytes("Dockerfile", dockerfile.encode())
        tar.add(real, "rootfs/usr/bin/python3")
        for library in _libraries(real):
            target = (
                "rootfs/lib64/" if "ld-linux" in library.name else "rootfs/lib/x86_64-linux-gnu/"
            )
            tar.add(library.resolve(), target + library.name)
        tar.add(stdlib, f"rootfs/usr/lib/python{version}", filter=skip)
        add_bytes("rootfs/app/app.py", APP.encode())
    return buffer.getvalue()


def python_image() -> str:
    """Build APP_IMAGE once (no registry: FROM scratch); its tag."""
    import docker

    client = docker.from_env()
    try:
        client.images.get(APP_IMAGE)
    except docker.errors.ImageNotFound:
        client.images.build(
            fileobj=io.BytesIO(_image_context()), custom_context=True, tag=APP_IMAGE, rm=True
        )
    finally:
        client.close()
    return APP_IMAGE


# -- Redis ---------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """Debian's redis-server on 127.0.0.1, no persistence, in a temp dir; its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is needed: apt-get install -y redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="dxflow-test-redis-")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
         "no", "--dir", workdir, "--protected-mode", "no"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: process.poll() is None and _listens(port), "redis-server listening")
        yield port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


# -- memory --------------------------------------------------------------------------------


class RssPeak:
    """The peak RSS of a process over its value at the start, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = self.peak = 0

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __enter__(self) -> RssPeak:
        self.start = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / (1 << 20)


def local_bind_ok(address: str) -> bool:
    """Whether a client socket can bind `address` (127.0.0.2: all of 127/8 is loopback)."""
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True
