"""Peer servers and clients of the file-transfer benchmarks (a helper, not a benchmark).

* `nginx(root)`: nginx (Debian package `nginx-light`) serving `root` on a loopback port
  with `sendfile on` and `tcp_nopush on`, taking WebDAV PUTs under `/upload/`, from its
  own generated config in a temporary directory (pid file, logs and temp paths in
  there; nothing under /etc or /var touched).
* `jupyter_server(root)`: Jupyter Server 2.x (PyPI `jupyter_server`) with `root_dir=root`
  and a fixed token, its config, data and runtime directories in a temporary directory.
* `curl_download(url)`: seconds curl takes to fetch `url` into /dev/null.
* `jupyter_roundtrip(...)`: put then get of one file through fsspec's `jupyter`
  filesystem (PyPI `fsspec` and `requests`), the way a notebook user would move data.

Both servers listen on 127.0.0.1 only, run in their own process group and are stopped
when their context exits, also on failure.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import PYTHON, REPO, child_env, free_port

__all__ = ["curl_download", "jupyter_roundtrip", "jupyter_server", "nginx"]

START_TIMEOUT = 30.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- processes -----------------------------------------------------------------------------


def _log_tail(log: Path, limit: int = 2000) -> str:
    try:
        text = log.read_text(errors="replace").strip()
    except OSError:
        return ""
    return f"\n--- {log.name} (tail) ---\n{text[-limit:]}" if text else ""


def _answers(url: str, headers: dict[str, str] | None = None) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers (yet)."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with _NO_PROXY.open(request, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


def _wait_answer(
    name: str,
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    ok: set[int] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll `url` until it answers (with a status in `ok`, when given)."""
    deadline = time.monotonic() + timeout
    status: int | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {process.returncode} before answering {url}{_log_tail(log)}"
            )
        status = _answers(url, headers)
        if status is not None and (ok is None or status in ok):
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"{name} did not answer {url} within {timeout:.0f} s (last status {status}){_log_tail(log)}"
    )


def _stop_group(process: subprocess.Popen[bytes], sig: int, timeout: float = 10.0) -> None:
    """Send `sig` to the process and wait; after `timeout`, SIGKILL its process group.

    The process was started with `start_new_session=True`, so its group holds only it
    and its children (nginx workers): nothing else is hit. The group is killed only
    while the leader is still unreaped, so its id cannot have been reused.
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


# -- nginx ---------------------------------------------------------------------------------


def _nginx_binary() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "nginx is not installed: the file-transfer peer needs it "
        "(`apt-get install -y nginx-light`, Debian package nginx-light)"
    )


def _nginx_config(tmp: Path, root: Path, port: int, workers: int | str) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # `user` only matters for root
    temp = {
        name: tmp / name
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # all built in
    }
    for path in temp.values():
        path.mkdir()
    return f"""{user}daemon off;
master_process on;
worker_processes {workers};
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/octet-stream;
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};

    server {{
        listen 127.0.0.1:{port};
        server_name bench;
        root {root};
        location / {{
        }}
        # The peer of an upload: PUT to a temp file, renamed into place when complete.
        location /upload/ {{
            dav_methods PUT;
            client_max_body_size 0;
            client_body_buffer_size 4m;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(root: Path, workers: int | str = 1) -> Iterator[str]:
    """Serve `root` with nginx on 127.0.0.1; yield `http://127.0.0.1:PORT`.

    nginx runs in the foreground (`daemon off; master_process on;`) as our child with a
    generated config in a temporary directory; on exit it gets SIGQUIT (graceful), then
    SIGKILL after 10 s. Raises RuntimeError when nginx is not installed.
    """
    binary = _nginx_binary()
    root = Path(root).resolve()
    if not root.is_dir():
        raise ValueError(f"nginx root {root} is not a directory")
    tmp = Path(tempfile.mkdtemp(prefix="dxflow-bench-nginx-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(_nginx_config(tmp, root, port, workers))
        log = tmp / "nginx.out"
        command = [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
        check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected its config {conf}: {check.stderr.strip()}")
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base_url = f"http://127.0.0.1:{port}"
        _wait_answer("nginx", f"{base_url}/", process, tmp / "error.log")
        yield base_url
    finally:
        if process is not None:
            _stop_group(process, signal.SIGQUIT)
        shutil.rmtree(tmp, ignore_errors=True)


# -- Jupyter Server ------------------------------------------------------------------------


@contextlib.contextmanager
def jupyter_server(root: Path) -> Iterator[tuple[str, str]]:
    """Serve `root` with Jupyter Server on 127.0.0.1; yield `(base_url, token)`.

    `python -m jupyter_server` of this interpreter, token auth, no browser, no port
    retries; its config, data and runtime directories are temporary (the user's
    ~/.jupyter is not read). Terminated with SIGTERM on exit (SIGKILL after 10 s).
    """
    if importlib.util.find_spec("jupyter_server") is None:
        raise RuntimeError(
            "jupyter_server is not installed in this environment: the file-transfer peer "
            "needs it (`.venv/bin/pip install jupyter_server`)"
        )
    root = Path(root).resolve()
    if not root.is_dir():
        raise ValueError(f"jupyter root {root} is not a directory")
    tmp = Path(tempfile.mkdtemp(prefix="dxflow-bench-jupyter-"))
    token = secrets.token_hex(24)
    process: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        dirs = {name: tmp / name for name in ("config", "data", "runtime")}
        for path in dirs.values():
            path.mkdir()
        env = child_env(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            JUPYTER_PLATFORM_DIRS="1",
        )
        command = [
            PYTHON, "-m", "jupyter_server",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",
            f"--IdentityProvider.token={token}",
        ]  # fmt: skip
        log = tmp / "jupyter.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base_url = f"http://127.0.0.1:{port}"
        _wait_answer(
            "jupyter_server",
            f"{base_url}/api/status",
            process,
            log,
            ok={200},
            headers={"Authorization": f"token {token}"},
        )
        yield base_url, token
    finally:
        if process is not None:
            _stop_group(process, signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)


# -- clients -------------------------------------------------------------------------------


def curl_download(url: str, headers: dict[str, str] | None = None) -> float:
    """Seconds curl takes to download `url` into /dev/null (curl's `time_total`).

    No proxy, no compression, one connection. Raises RuntimeError on a transport
    error or a non-2xx status.
    """
    command = ["curl", "-sS", "--noproxy", "*", "-o", "/dev/null"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command += ["-w", "%{http_code} %{time_total} %{size_download}", url]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise RuntimeError("curl is not installed (`apt-get install -y curl`)") from None
    if done.returncode != 0:
        raise RuntimeError(f"curl {url} failed ({done.returncode}): {done.stderr.strip()}")
    try:
        code, seconds, _size = done.stdout.split()
        status, elapsed = int(code), float(seconds)
    except ValueError:
        raise RuntimeError(f"unparsed curl output for {url}: {done.stdout!r}") from None
    if not 200 <= status < 300:
        raise RuntimeError(f"curl {url} answered HTTP {status}")
    return elapsed


def jupyter_roundtrip(base_url: str, token: str, path: str, data: bytes) -> tuple[float, float]:
    """Write `data` to `path` then read it back through fsspec's `jupyter` filesystem.

    `path` is relative to the server's root_dir (its parent must exist). Returns
    `(put seconds, get seconds)`; raises RuntimeError when what comes back differs.
    A fresh filesystem instance (and HTTP session, ignoring proxy variables) per call.
    """
    try:
        fsspec: Any = importlib.import_module("fsspec")
    except ImportError:
        raise RuntimeError(
            "fsspec is not installed (`.venv/bin/pip install fsspec requests`)"
        ) from None
    fs = fsspec.filesystem("jupyter", url=base_url, tok=token, skip_instance_cache=True)
    fs.session.trust_env = False  # loopback: never through an HTTP(S)_PROXY
    path = path.lstrip("/")
    try:
        start = time.perf_counter()
        fs.pipe_file(path, data)  # fsspec ignores the PUT's status: checked by the read
        put = time.perf_counter() - start
        start = time.perf_counter()
        back = fs.cat_file(path)
        get = time.perf_counter() - start
    finally:
        fs.session.close()
    if back != data:
        raise RuntimeError(
            f"jupyter roundtrip of {path}: {len(back)} bytes came back, not the "
            f"{len(data)} written (or different content)"
        )
    return put, get
