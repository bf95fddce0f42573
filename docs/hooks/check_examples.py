"""Run every example of the README and the documentation, as a reader would.

    python docs/hooks/check_examples.py [PAGE.md ...]     # default: README.md, docs/*.md
    DOCS_VERBOSE=1 python docs/hooks/check_examples.py PAGE.md   # and what the samples print

Every fenced block is of a kind this checker knows, or the page fails:

- ```` ```bash ```` and ```` ```python ```` blocks are **executed**, in the order of the
  page, in one shell (``set -euo pipefail``): bash blocks as they are (a variable or a
  ``cd`` carries over to the next block), each python block as its own program. A python
  block that reads the environment (``from_env``, ``DXFLOW_URL``) runs twice: in-process,
  as a reader without ``DXFLOW_URL`` has it, and against the booted engine over HTTP.
- ```` ```console ```` blocks are transcripts of **output only**: a ``$`` prompt in one is
  an error (the commands belong in a ``bash`` block before it, which runs).
- ```` ```text ````, ```` ```json ````, ```` ```toml ```` and ```` ```yaml ```` blocks are
  **data**: json, toml and yaml must parse.
- Any other fence (``py``, ``sh``, ``shell``, none at all, ...) is an error.

An executed block can be excused only one at a time, with a reason, by the line before it:
``<!-- docs: not run: REASON -->`` (for the commands that set up the machine or run this
very suite). Every excused block is listed in the output.

Each page runs in a **fresh home**: a ``DXFLOW_HOME`` in a temporary folder with an engine
booted from it on a free port (``DXFLOW_PORT=0``, so a sample's own ``dxflow boot up`` takes
a free port too), ``HOME`` pointing at a temporary folder, no ``DXFLOW_URL``/``DXFLOW_KEY``,
and the ``dxflow`` of this Python first on ``PATH``. The working folder is a scratch copy
of the clone (links to its files, and ``.venv``), so ``examples/...`` and ``.venv/bin/...``
resolve as they do for a reader. Samples read ``DXFLOW_HOME``/``DXFLOW_URL`` or use the
defaults: an executed block that hard-codes ``~/.dxflow`` or ``127.0.0.1:7419`` fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TIMEOUT = 420  # one page; the workflow pages build images and bring projects up

EXECUTED = frozenset({"bash", "python"})
DATA = frozenset({"console", "text", "json", "toml", "yaml"})
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_NOT_RUN = re.compile(r"^\s*<!--\s*docs:\s*not run:\s*(?P<reason>\S.*?)\s*-->\s*$")
_PROMPT = re.compile(r"^\s*(\$|>>>) ")
# What a sample must not assume: the default home and port of one particular machine.
_HARD_CODED = ("~/.dxflow", "$HOME/.dxflow", "127.0.0.1:7419", "localhost:7419")
_READS_ENV = ("from_env", "DXFLOW_URL")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None = None  # the reason, for an excused executed block

    @property
    def label(self) -> str:
        return f"{self.page}:{self.line} {self.lang}"


class PageError(ValueError):
    """A page with a block the checker cannot accept."""


def parse(text: str, page: str) -> list[Block]:
    """The fenced blocks of a Markdown page; PageError for one of an unknown kind."""
    lines = text.split("\n")
    blocks: list[Block] = []
    problems: list[str] = []
    number = 0
    while number < len(lines):
        opened = _FENCE.match(lines[number])
        if not opened:
            number += 1
            continue
        fence, lang = opened["fence"], opened["info"].strip().split(" ")[0].lower()
        end = number + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        indent = len(opened["indent"])
        inside = lines[number + 1 : end]
        body = [line[indent:] if line[:indent].isspace() else line for line in inside]
        previous = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        excused = _NOT_RUN.match(previous)
        block = Block(page, number + 1, lang, "\n".join(body) + "\n",
                      excused["reason"] if excused else None)  # fmt: skip
        problems += _problems(block)
        blocks.append(block)
        number = end + 1
    if problems:
        raise PageError("\n".join(problems))
    return blocks


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and not stripped.lstrip(fence[0])


def _problems(block: Block) -> list[str]:
    where = f"{block.page}:{block.line}"
    if block.lang not in EXECUTED | DATA:
        kinds = ", ".join(sorted(EXECUTED))
        return [
            f"{where}: a ```{block.lang or '(no language)'} block: name its kind, ```{kinds} "
            f"(executed) or ```{', '.join(sorted(DATA))} (data, output)"
        ]
    if block.not_run is not None and block.lang not in EXECUTED:
        return [f"{where}: 'not run' excuses bash and python blocks only"]
    if block.lang == "console":
        prompts = [line for line in block.code.splitlines() if _PROMPT.match(line)]
        if prompts:
            return [
                f"{where}: a console block shows output only, not commands "
                f"({prompts[0].strip()!r}): put the commands in a ```bash block before it "
                "(executed)"
            ]
    if block.lang in EXECUTED and block.not_run is None:
        code = "\n".join(_without_comment(line) for line in block.code.splitlines())
        found = [value for value in _HARD_CODED if value in code]
        if found:
            return [
                f"{where}: hard-codes {found[0]!r}: read DXFLOW_HOME / DXFLOW_URL (or "
                "`dxflow boot status --json`), or use the defaults"
            ]
    return _parse_data(block)


def _without_comment(line: str) -> str:
    """The code of a bash or python line, without a trailing comment (the naive way)."""
    stripped = line.lstrip()
    if stripped.startswith("#"):
        return ""
    return line.split(" # ", 1)[0].split("  #", 1)[0]


def _parse_data(block: Block) -> list[str]:
    loaders: dict[str, Callable[[str], object]] = {"json": _json, "toml": tomllib.loads}
    if block.lang == "yaml":
        import yaml

        loaders["yaml"] = yaml.safe_load
    loader = loaders.get(block.lang)
    if loader is None:
        return []
    try:
        loader(block.code)
    except Exception as exc:  # any parser's error: the block is not what it says
        return [f"{block.page}:{block.line}: this ```{block.lang} block does not parse: {exc}"]
    return []


def _json(text: str) -> object:
    """One JSON document, or NDJSON (one per line, as streams send them)."""
    try:
        return json.loads(text)
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- running -------------------------------------------------------------------------------


def _dxflow(*args: str, env: dict[str, str]) -> str:
    command = [sys.executable, "-m", "dxflow", *args]
    return subprocess.run(
        command, env=env, check=True, capture_output=True, text=True, timeout=120
    ).stdout


def _scratch_clone(folder: Path) -> Path:
    """A folder that looks like the clone to a sample: links to its files, and `.venv`."""
    clone = folder / "clone"
    clone.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "site"}:
            (clone / entry.name).symlink_to(entry)
    if not (clone / ".venv").exists():  # a work tree without its own: this Python's
        with contextlib.suppress(FileExistsError):
            (clone / ".venv").unlink(missing_ok=True)
        (clone / ".venv").symlink_to(Path(sys.prefix))
    return clone


def _script(blocks: list[Block], scratch: Path) -> str:
    """The page as one bash script, its blocks in order, each announced in the trace."""
    parts = ['exec 3>>"$DOCS_TRACE"']
    for n, block in enumerate(blocks):
        if block.lang not in EXECUTED or block.not_run is not None:
            continue
        parts.append(f"echo {shlex.quote(block.label)} >&3")
        if block.lang == "bash":
            parts.append(block.code)
            continue
        program = scratch / f"block{n}.py"
        program.write_text(block.code)
        parts.append(f'"$DOCS_PYTHON" {shlex.quote(str(program))}')
        if any(word in block.code for word in _READS_ENV):
            parts.append(f"echo {shlex.quote(block.label + ' (DXFLOW_URL)')} >&3")
            parts.append(
                'DXFLOW_URL=$(dxflow boot status --home "$DOCS_HOME" --json | jq -r .url) '
                'DXFLOW_KEY="$DOCS_HOME/keys/master.pem" '
                f'"$DOCS_PYTHON" {shlex.quote(str(program))}'
            )
    parts.append("echo done >&3")
    return "\n".join(parts) + "\n"


def check_page(page: Path) -> bool:
    name = page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name
    try:
        blocks = parse(page.read_text(), name)
    except PageError as error:
        print(f"FAIL {error}")
        return False
    for block in blocks:
        if block.not_run is not None:
            print(f"not run  {block.label}: {block.not_run}")
    if not any(b.lang in EXECUTED and b.not_run is None for b in blocks):
        print(f"ok   {name} (no executed blocks)")
        return True
    scratch = Path(tempfile.mkdtemp(prefix="dxflow-docs-"))
    home, user_home, temp = scratch / "home", scratch / "user", scratch / "tmp"
    user_home.mkdir()
    temp.mkdir()  # what samples make with mktemp goes where it is removed
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DXFLOW_URL", "DXFLOW_KEY", "DXFLOW_PROFILE", "DXFLOW_PORT"}
    }
    env |= {
        "DXFLOW_HOME": str(home),
        "DXFLOW_PORT": "0",
        "HOME": str(user_home),
        "TMPDIR": str(temp),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "DOCS_HOME": str(home),
        "DOCS_PYTHON": sys.executable,
        "DOCS_TRACE": str(scratch / "trace"),
    }
    _dxflow("boot", "up", "--daemon", env=env)
    try:
        return _run_page(name, blocks, scratch, env)
    finally:
        # This page's engine, and any its samples booted on homes of their own.
        for pidfile in [home / "run" / "engine.pid", *temp.glob("*/run/engine.pid")]:
            if pidfile.exists():
                with contextlib.suppress(subprocess.SubprocessError):
                    _dxflow("boot", "down", "--home", str(pidfile.parent.parent), env=env)
        _stop_holders(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _run_page(name: str, blocks: list[Block], scratch: Path, env: dict[str, str]) -> bool:
    clone = _scratch_clone(scratch)
    script = _script(blocks, scratch)
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], env=env, cwd=clone,
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        failed, output = done.returncode != 0, done.stdout[-3000:] + done.stderr[-3000:]
    except subprocess.TimeoutExpired:
        failed, output = True, f"timed out after {TIMEOUT} s"
    if os.environ.get("DOCS_VERBOSE") and not failed:  # what the samples printed
        print(done.stdout + done.stderr)
    trace = (scratch / "trace").read_text().splitlines()
    ran = [line for line in trace if line != "done"]
    for label in ran[:-1] if failed else ran:
        print(f"ok   {label}")
    if failed:
        print(f"FAIL {ran[-1] if ran else name}\n{output}")
    return not failed


def _stop_holders(scratch: Path) -> None:
    """SIGTERM to the shell holders a page's samples left running (sessions outlive engines)."""
    marker = str(scratch).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if marker in command and b"_holder" in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGTERM)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def main(argv: list[str]) -> int:
    chosen = [Path(p).resolve() for p in argv] or pages()
    results = [check_page(page) for page in chosen]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
