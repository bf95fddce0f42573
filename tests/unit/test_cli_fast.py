"""The CLI's pre-click fast path, piece by piece: what it recognises, that each of its
cheap readings agrees with what the click path reads (project names, homes, URLs, token
files), and that it hands over without printing whatever it is not sure of. Against a
small fake engine on a unix socket (one canned answer per connection); the same
commands against a real engine are in tests/integration/test_cli_fast.py."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dxflow._cli import _fast, _lean, main
from dxflow._cli._compose_file import compose_file_in, is_file, plain_name
from dxflow._cli._project import find_compose_file
from dxflow._config import Home
from dxflow._token_file import sha256, token_file
from dxflow._tokens import TokenCache

# -- the `name:` scan: sure only when YAML would say the same ---------------------------

SIMPLE = "services:\n  app:\n    image: x\n"
SCANNED = {
    "name: shop\n" + SIMPLE: "shop",
    SIMPLE + "name: shop  # the project\n": "shop",
    "# a comment\n\n" + SIMPLE + "x-common: &c\n  a: 1\nname: shop-2.v\n": "shop-2.v",
    SIMPLE: None,
    "": None,
    "# only a comment\n": None,
    "services:\n  app:\n    name: inner\n    image: x\n": None,  # not top level
    SIMPLE + "names: x\n": None,
    "services: {app: {image: x}}\nname: shop\n": "shop",  # flow style below the top is fine
}
PARSED = [  # each needs YAML: the scan must say so
    "name: ${PROJECT:-shop}\n" + SIMPLE,
    "name: 'shop'\n" + SIMPLE,
    'name: "shop"\n' + SIMPLE,
    "name: &n shop\n" + SIMPLE,
    "name: shop#not-a-comment\n" + SIMPLE,
    "name:\tshop\n" + SIMPLE,
    "name:shop\n" + SIMPLE,
    "name :shop\n" + SIMPLE,
    "name:\n  shop\n" + SIMPLE,
    "name: shop\n  continued\n" + SIMPLE,
    "name: shop\n# c\n  continued\n" + SIMPLE,
    "name: 123\n" + SIMPLE,
    "name: 2024-01-01\n" + SIMPLE,
    "name: on\n" + SIMPLE,
    "name: NULL\n" + SIMPLE,
    "name: a\nname: b\n" + SIMPLE,
    "{name: shop, services: {}}\n",
    "# a comment first\n{name: shop}\n",
    "'name': shop\n" + SIMPLE,
    '"na\\u006de": shop\n' + SIMPLE,
    "? name\n: shop\n" + SIMPLE,
    "<<: {name: shop}\n" + SIMPLE,
    "---\nname: shop\n" + SIMPLE,
    "  name: shop\n  services: {}\n",  # the whole mapping indented
    "\ufeffname: shop\n" + SIMPLE,
    "name: shop\r\n" + SIMPLE,
    "\tname: shop\n",
    'a: "long\nname: x\n"\n',
    "%YAML 1.1\n---\nname: shop\n",
    "!!map\nname: shop\n",
]


def _yaml_name(text: str) -> str | None:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    name = document.get("name") if isinstance(document, dict) else None
    return name if isinstance(name, str) else None


@pytest.mark.parametrize(("text", "name"), SCANNED.items())
def test_a_plainly_simple_file_is_read_without_yaml(text: str, name: str | None) -> None:
    assert plain_name(text) == (True, name)
    assert _yaml_name(text) == name  # the scan says what YAML says


@pytest.mark.parametrize("text", PARSED)
def test_anything_else_is_left_to_yaml(text: str) -> None:
    assert plain_name(text) == (False, None)


def test_the_scan_never_contradicts_yaml_on_the_compose_corpus() -> None:
    corpus = Path(__file__).parents[1] / "compose" / "corpus"
    files = sorted(corpus.rglob("*.y*ml"))
    assert files
    for path in files:
        text = path.read_text()
        known, name = plain_name(text)
        if known:
            assert name == _yaml_name(text), path


# -- files, homes, URLs and tokens: the fast path's readings are the click path's ----------


def test_the_compose_file_lookup_is_pathlibs(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert compose_file_in(str(deep)) is None or not compose_file_in(str(deep)).startswith(
        str(tmp_path)
    )
    (tmp_path / "a" / "compose.yml").write_text(SIMPLE)
    (tmp_path / "compose.yaml").mkdir()  # a folder of that name is no compose file
    assert compose_file_in(str(deep)) == str(tmp_path / "a" / "compose.yml")
    assert find_compose_file(deep) == tmp_path / "a" / "compose.yml"
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    (tmp_path / "file").write_text("")
    for path in (loop, tmp_path / "file" / "under", tmp_path / "missing", tmp_path / "a"):
        assert is_file(str(path)) == path.is_file(), path


@pytest.mark.parametrize(
    "given", [None, "rel/home", "/abs/home", "/abs/home/", "/a/./b", "/a/../b", "//x", "~/h"]
)
def test_a_home_is_spelled_as_pathlib_spells_it_or_left_to_click(
    given: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DXFLOW_HOME", raising=False)
    found = _fast._home(given)
    assert found is None or found == str(Home.resolve(given).root), (given, found)
    if given in (None, "rel/home", "/abs/home", "~/h"):
        assert found is not None


@pytest.mark.parametrize(
    "url",
    [
        "unix:///tmp/h/run/engine.sock",
        "unix:///tmp/my home/engine.sock",
        "unix:///tmp/a%20b.sock",
        "unix://host/tmp/e.sock",
        "unix:///tmp/e.sock?x=1",
        "http://127.0.0.1:7419",
        "http://LocalHost:80",
        "http://node.example:65535",
        "http://node:0",
        "http://node:70000",
        "http://[::1]:7419",
        "http://node",
        "http://node:7419/prefix",
        "http://user@node:7419",
        "https://node:7419",
        "http+unix://%2Ftmp%2Fe.sock",
    ],
)
def test_urls_are_reached_as_the_lean_path_reaches_them_or_left_to_click(url: str) -> None:
    fast = _fast._address(url)
    try:
        lean = _lean.address(url)
    except ValueError:  # a port out of range: the lean path gives up too
        lean = None
    assert fast is None or fast == lean, url
    if url in ("unix:///tmp/h/run/engine.sock", "http://127.0.0.1:7419", "http://LocalHost:80"):
        assert fast is not None


def test_the_token_file_is_the_token_caches(tmp_path: Path) -> None:
    assert sha256(b"key").hexdigest() == hashlib.sha256(b"key").hexdigest()
    cache = TokenCache.of("unix:///h/run/engine.sock", b"key", tmp_path)
    assert str(cache.path) == token_file("unix:///h/run/engine.sock", b"key", str(tmp_path))


@pytest.mark.parametrize(
    ("args", "given"),
    [
        (["--json"], {"json": True}),
        (["--home", "/h", "--url=http://e:1"], {"home": "/h", "url": "http://e:1"}),
        (["-p", "shop", "-q", "--services"], {"project": "shop", "quiet": True, "services": True}),
        (["--project-name=shop", "-f", "c.yaml"], {"project": "shop", "file": "c.yaml"}),
    ],
)
def test_the_options_it_reads(args: list[str], given: dict[str, object]) -> None:
    values = {**_fast._ENGINE_VALUES, **_fast._PS_VALUES}
    assert _fast._parse(args, values, _fast._PS_FLAGS) == given


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["--nope"],
        ["extra"],
        ["--json", "--json"],
        ["-p"],
        ["-p", ""],
        ["-p", "--json"],
        ["-pshop"],
        ["-p=shop"],
        ["-qp", "shop"],
        ["--url="],
        ["--json=1"],
        ["--ca-cert", "c.pem"],
        ["--insecure"],
        ["--bridge", "agent"],
        ["--env-file", ".env"],
        ["--"],
    ],
)
def test_the_options_it_leaves_to_click(args: list[str]) -> None:
    values = {**_fast._ENGINE_VALUES, **_fast._PS_VALUES}
    assert _fast._parse(args, values, _fast._PS_FLAGS) is None


# -- a fake engine: one canned answer per connection --------------------------------------


class FakeEngine:
    def __init__(self, path: str) -> None:
        self.replies: list[tuple[int, dict[str, object]]] = []
        self.requests: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                self.requests.append(head.split(b" ")[1].decode())
                status, data = self.replies.pop(0) if self.replies else (500, {})
                body = json.dumps(data).encode()
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                    + body
                )


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEngine]:
    """A home whose socket is the fake engine, its master key, and a cached token."""
    home = Path("/tmp") / f"dxf-fast-{os.getpid()}-{time.monotonic_ns()}"  # a short socket path
    (home / "run").mkdir(parents=True)
    (home / "keys").mkdir()
    key = home / "keys" / "master.pem"
    key.write_bytes(b"not a real key: the fast path only hashes it")
    key.chmod(0o600)
    for name in ("DXFLOW_URL", "DXFLOW_KEY", "DXFLOW_CA_CERT", "DXFLOW_INSECURE",
                 "DXFLOW_BRIDGE", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "NO_COLOR"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DXFLOW_HOME", str(home))
    monkeypatch.setenv("DXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    url = f"unix://{home / 'run' / 'engine.sock'}"
    TokenCache.of(url, key.read_bytes()).store("a.cached.token", time.time() + 3600)
    project = tmp_path / "shop"
    project.mkdir()
    (project / "compose.yaml").write_text(SIMPLE)
    monkeypatch.chdir(project)
    fake = FakeEngine(str(home / "run" / "engine.sock"))
    try:
        yield fake
    finally:
        fake.server.close()
        with contextlib.suppress(OSError):
            for path in sorted(home.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            home.rmdir()


CONTAINER = {"name": "shop-app-1", "id": "c0ffee", "state": "running", "health": "healthy",
             "exit_code": None, "ports": ["80/tcp"]}  # fmt: skip
SERVICE = {"name": "app", "state": "running", "health": None, "exit_code": None,
           "containers": [CONTAINER]}  # fmt: skip
STATUS = {"name": "shop", "state": "running", "services": [SERVICE]}
ME = {"identity": "master", "permissions": ["MASTER"], "engine_id": "e"}


def test_ps_is_answered_without_click(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.replies.append((200, STATUS))
    assert _fast.answer(["ps"]) == 0
    assert engine.requests == ["/api/workflows/shop/status"]
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "NAME        SERVICE  STATE    HEALTH   EXIT  PORTS",
        "shop-app-1  app      running  healthy  -     80/tcp",
    ]
    engine.replies.append((200, STATUS))
    assert _fast.answer(["ps", "-p", "other shop", "--services"]) == 0
    assert engine.requests[-1] == "/api/workflows/other%20shop/status"
    assert capsys.readouterr().out == "app\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["ps", "--nope"],
        ["top"],
        ["ps", "-f", "missing.yaml"],
        ["ps", "-f", "./compose.yaml"],
        ["ps", "--url", "https://node:7419", "--key", "k.pem"],
        ["ps", "--url", "http://node:7419"],  # no key: the click path names --key
        ["workflow", "list", "--insecure"],
    ],
)
def test_what_it_is_not_sure_of_goes_to_click_unasked_and_unprinted(
    engine: FakeEngine, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fast.answer(argv) is None
    assert engine.requests == []
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    "variable", ["DXFLOW_INSECURE", "DXFLOW_CA_CERT", "DXFLOW_BRIDGE", "_DXFLOW_COMPLETE"]
)
def test_variables_it_leaves_to_click(
    engine: FakeEngine, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "1")
    assert _fast.answer(["whoami"]) is None
    monkeypatch.setenv(variable, "")  # empty is unset, for click too
    engine.replies.append(
        (200, {"identity": "master", "permissions": ["MASTER"], "engine_id": "e"})
    )
    assert _fast.answer(["whoami"]) == 0


def test_no_cached_token_goes_to_click(engine: FakeEngine, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("DXFLOW_CACHE_DIR", str(tmp_path / "empty"))
    assert _fast.answer(["ping"]) is None
    assert engine.requests == []


def test_a_name_that_needs_yaml_goes_to_click(engine: FakeEngine) -> None:
    Path("compose.yaml").write_text("name: ${NAME:-shop}\n" + SIMPLE)
    assert _fast.answer(["ps"]) is None
    assert engine.requests == []


def test_an_error_is_asked_once_and_said_by_the_click_path(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = {"error": {"code": "not_found", "message": "workflow 'shop' not found"}}
    engine.replies.append((404, missing))
    with pytest.raises(SystemExit) as exit_:
        main(["ps"])
    assert exit_.value.code == 1
    assert engine.requests == ["/api/workflows/shop/status"]  # once: the click path reused it
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and "shop" in err


def test_output_click_would_change_goes_to_click(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    painted = {**STATUS, "services": [{**SERVICE, "name": "\x1b[31mapp"}]}
    engine.replies.append((200, painted))
    assert _fast.answer(["ps", "--services"]) is None  # click strips ANSI codes when piped
    assert capsys.readouterr() == ("", "")
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    assert _fast._write("app\n") is None  # click writes UTF-8 to an ASCII stream


def test_the_console_entry_loads_nothing_heavy() -> None:
    script = (
        "import sys\nimport dxflow._cli\n"
        "print(sorted(m for m in ('click', 'pydantic', 'httpx', 'yaml', 'typing', 'pathlib')"
        " if m in sys.modules))\n"
        "import dxflow\nassert dxflow.NotFound.__name__ == 'NotFound'\n"
        "from dxflow import Permission, DxflowError\nassert Permission.MASTER and DxflowError\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
