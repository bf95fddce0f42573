"""The pre-click fast path: everyday reads answered with the standard library alone.

`dxflow ps` used to spend most of its time importing: click, then the command modules,
before the lean path (`_lean`) sent its one request. A `docker ps` costs a Go binary's
start and a request, so here, before click is imported, the commands people type all
day are recognised in argv and answered:

    dxflow ps [-p NAME] [-f FILE] [--services] [-q] [--json] [ENGINE OPTIONS]
    dxflow workflow list [--json] [ENGINE OPTIONS]
    dxflow ping [--json] [ENGINE OPTIONS]
    dxflow whoami [--json] [ENGINE OPTIONS]

ENGINE OPTIONS are --url, --key and --home (and DXFLOW_URL, DXFLOW_KEY, DXFLOW_HOME,
COMPOSE_FILE and COMPOSE_PROJECT_NAME, an empty variable counting as unset, as for
click). The output is rendered by `_render`, as the click commands render theirs.

The rule is that the output never differs from the click path's: whatever this module is
not sure of returns None from `answer` and click runs the command as before, having
printed nothing. That is anything else in argv (an unknown or repeated option, a short
option cluster, a value that starts with `-`), --ca-cert/--insecure/--bridge or their
variables, shell completion, a path that pathlib would spell differently, no fresh
cached token, an https URL, a key file others can read, a compose file whose `name:`
needs YAML to read, an answer other than 200 with a JSON object, an error of any kind,
and output click would change (ANSI codes it strips, a stream it rewraps). When a reply
came but is not used here, it is handed to `_lean` so the click path does not ask twice.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import sys
import time

from .._token_file import read_token, token_file
from . import _lean, _render
from ._compose_file import compose_file_in, is_file, normalize_name, plain_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["answer"]

_ENGINE_VALUES = {"--url": "url", "--key": "key", "--home": "home"}
_PS_VALUES = {"-f": "file", "--file": "file", "-p": "project", "--project-name": "project"}
_PS_FLAGS = {"--services": "services", "-q": "quiet", "--quiet": "quiet"}
# The variables the options read when not given (click's envvar=)...
_ENVIRONMENT = {"url": "DXFLOW_URL", "key": "DXFLOW_KEY", "home": "DXFLOW_HOME",
                "file": "COMPOSE_FILE", "project": "COMPOSE_PROJECT_NAME"}  # fmt: skip
# ...and those of the options left to click, and click's shell completion: set, they send
# the command to click.
_NOT_HERE = ("DXFLOW_CA_CERT", "DXFLOW_INSECURE", "DXFLOW_BRIDGE", "_DXFLOW_COMPLETE")

_HTTP = re.compile(r"http://([A-Za-z0-9.-]+):([0-9]{1,5})")
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]+")  # what urllib.parse.quote leaves as it is


def answer(args: list[str]) -> int | None:
    """The exit code once `args` is answered here, or None: let click run it."""
    asked: list[tuple[Any, str, str, Any]] = []
    try:
        text = _answer(args, asked)
        code = None if text is None else _write(text)
    except KeyboardInterrupt:  # as the click path: a new line, 130
        sys.stderr.write("\n")
        return 130
    except Exception:  # the click path meets it again, and says it in its words
        code = None
    if code is None and asked:
        _lean.hand_over(*asked[0])
    return code


def _answer(args: list[str], asked: list[tuple[Any, str, str, Any]]) -> str | None:
    if any(os.environ.get(name) for name in _NOT_HERE):
        return None
    command, rest = (args[:2], args[2:]) if args[:1] == ["workflow"] else (args[:1], args[1:])
    if command == ["ps"]:
        given = _parse(rest, {**_ENGINE_VALUES, **_PS_VALUES}, _PS_FLAGS)
    elif command in (["workflow", "list"], ["ping"], ["whoami"]):
        given = _parse(rest, _ENGINE_VALUES, {})
    else:
        return None
    if given is None:
        return None
    for name, variable in _ENVIRONMENT.items():
        if name not in given and os.environ.get(variable):
            given[name] = os.environ[variable]
    project = _project(given) if command == ["ps"] else ""
    target = None if project is None else _target(given)
    if project is None or target is None:
        return None
    where, token = target
    if command == ["ps"]:
        name = project if _UNQUOTED.fullmatch(project) else _quote(project)
        path = _lean.LEAN["workflows.status"].replace("{name}", name)
    else:
        operation = {"workflow": "workflows.list", "ping": "engine.ping", "whoami": "auth.whoami"}
        path = _lean.LEAN[operation[command[0]]]
    started = time.perf_counter()
    reply = _lean.request(where, path, token)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if reply is None:
        return None
    asked.append((where, path, token, reply))
    status, _, body = reply
    data = json.loads(body) if status == 200 else None
    if not isinstance(data, dict):
        return None
    found = _lean.Record(data)
    as_json = bool(given.get("json"))
    if command == ["ps"]:
        only_services, quiet = bool(given.get("services")), bool(given.get("quiet"))
        return _render.ps_text(found, project, as_json, only_services, quiet)
    if command == ["ping"]:
        return _render.ping_text(found, elapsed_ms, as_json)
    if command == ["whoami"]:
        return _render.whoami_text(found, as_json)
    return _render.workflows_text(found.workflows, as_json)


def _parse(args: list[str], values: dict[str, str], flags: dict[str, str]) -> dict[str, Any] | None:
    """The options in `args` by name, or None for anything this module leaves to click."""
    given: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        option, equals, inline = arg.partition("=")
        value: Any = True
        if arg == "--json":
            name = "json"
        elif arg in flags:
            name = flags[arg]
        elif equals and option.startswith("--") and option in values:
            name, value = values[option], inline
        elif arg in values and index + 1 < len(args):
            index += 1
            name, value = values[arg], args[index]
        else:
            return None
        if name in given or value == "" or (value is not True and value.startswith("-")):
            return None  # click's rules for these are click's to apply
        given[name] = value
        index += 1
    return given


def _target(given: dict[str, Any]) -> tuple[tuple[str, Any], str] | None:
    """Where the engine is and the cached token, as `_lean._target` and `TokenCache` find
    them; None when the lean path would not be taken or this module is not sure."""
    url, key = given.get("url"), given.get("key")
    if key is not None and not _path_option_ok(key):
        return None
    if url:
        if not key:
            return None
        url = _lean.normalize_url(url)
    else:
        root = _home(given.get("home"))
        if root is None:
            return None
        url = "unix://" + os.path.join(root, "run", "engine.sock")
        key = key or os.path.join(root, "keys", "master.pem")
    where = _address(url)
    if where is None:
        return None
    key_file = os.path.expanduser(key)
    if os.stat(key_file).st_mode & 0o077:
        return None  # the SDK's loader says what to fix
    with open(key_file, "rb") as handle:
        cached = read_token(token_file(url, handle.read()))
    return (where, cached[0]) if cached is not None else None


def _home(given: str | None) -> str | None:
    """The engine home's path as `Home.resolve` spells it, if pathlib would spell it the
    same (the socket's URL names the token file): no `.`, `..`, `//` or trailing `/`."""
    user_home = os.path.expanduser("~")
    if not given and user_home.startswith("~"):
        return None  # no home to be found: Path.home() raises, the click path says so
    root = os.path.expanduser(given or os.path.join(user_home, ".dxflow"))
    if not os.path.isabs(root):
        root = os.path.join(os.getcwd(), root)
    return root if _plain_path(root) else None


def _plain_path(path: str) -> bool:
    return not path.startswith("//") and os.path.normpath(path) == path


def _address(url: str) -> tuple[str, Any] | None:
    """`_lean.address(url)` for the URLs spelled plainly (no urllib.parse needed), else None."""
    if url.startswith("unix://"):
        path = url[len("unix://") :]
        plain = path.startswith("/") and not any(c in path for c in "%?#\t\r\n")
        return ("unix", path) if plain else None
    found = _HTTP.fullmatch(url)
    if found is None or not 0 < int(found.group(2)) < 65536:
        return None
    return "tcp", (found.group(1).lower(), int(found.group(2)))


def _path_option_ok(value: str) -> bool:
    """What click.Path(dir_okay=False) accepts: missing, or a readable non-folder."""
    try:
        st = os.stat(value)
    except OSError:
        return True
    return not stat.S_ISDIR(st.st_mode) and os.access(value, os.R_OK)


def _project(given: dict[str, Any]) -> str | None:
    """The project name as `Project.resolve` finds it (-p, else the compose file's
    `name:`, else its folder), or None when unsure or when click would fail."""
    file = given.get("file")
    cwd = os.getcwd()
    path: str | None
    if file is not None:
        path = os.path.join(cwd, file)
        if not (_plain_path(file) and _path_option_ok(file) and is_file(path)):
            return None
    else:
        path = compose_file_in(cwd)  # looked up even with -p, as the click path does
    if given.get("project"):
        return str(given["project"])
    if path is None:
        return None
    try:
        with open(path) as handle:  # Path.read_text's defaults
            known, declared = plain_name(handle.read())
    except (OSError, UnicodeDecodeError):
        known, declared = True, None
    if not known:
        return None
    return normalize_name(declared or os.path.basename(os.path.dirname(path))) or None


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _write(text: str) -> int | None:
    """Print `text` as click.echo would, or None when click would print it otherwise."""
    out = sys.stdout
    encoding, errors = getattr(out, "encoding", None), getattr(out, "errors", None)
    if not isinstance(out, io.TextIOBase) or encoding is None or errors is None:
        return None  # click wraps such a stream its own way
    if "\x1b" in text:
        return None  # click strips ANSI codes from output that is not a terminal
    try:
        import codecs

        if codecs.lookup(encoding).name == "ascii":
            return None  # click writes UTF-8 there instead
        text.encode(encoding, errors)
    except (LookupError, UnicodeError):
        return None
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:  # `dxflow ps | head`: as the click path, quietly, exit 1
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 1
    except Exception as exc:  # part may be out: no second try, the click path's last word
        from ._main import internal_error

        internal_error(exc)
    return 0
