"""`dxflow object ...` (alias `dxflow fs`): the engine's object store through the SDK."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .._durations import parse_duration
from ._common import Options, cli_message, engine_command, fail
from ._complete import object_paths
from ._output import emit_json, human_bytes, key_values, table

if TYPE_CHECKING:  # the models load with the SDK, when a command opens an engine
    from .._models import ObjectInfo, ObjectProgress, ObjectResult, ShareLink

__all__ = ["fs", "object_group"]

BIG = 8 << 20
"""Transfers of more bytes than this show a progress bar (on a terminal)."""

F = TypeVar("F", bound=Callable[..., Any])


@click.group("object")
def object_group() -> None:
    """Files and folders in the engine's storage (alias: `dxflow fs`).

    Paths are relative to the storage root; `..`, absolute paths and symlinks that
    leave it are refused.
    """


def _progress_option(function: F) -> F:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Force the progress bar on stderr on or off (default: on a terminal, not --json).",
    )(function)


class _Meter:
    """A one-line progress display on stderr, redrawn at most ten times a second."""

    def __init__(self, force: bool | None, as_json: bool, threshold: int = BIG) -> None:
        auto = not as_json and sys.stderr.isatty()
        self.enabled = auto if force is None else force
        self.threshold = threshold if force is None else 0
        self.done = 0
        self._started = time.monotonic()
        self._drawn = 0.0
        self._width = 0

    def __enter__(self) -> _Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._width:
            click.echo(err=True)

    def transfer(self, done: int, total: int | None) -> None:
        """`progress` of put/get: bytes done and in all."""
        self.done = done
        if not self.enabled or max(done, total or 0) <= self.threshold:
            return
        rate = human_bytes(done / max(time.monotonic() - self._started, 1e-3))
        text = f"{human_bytes(done)}  {rate}/s"
        if total:
            filled = min(30, 30 * done // total)
            text = f"[{'#' * filled:<30}] {100 * done // total:3d}%  {human_bytes(done)} / "
            text += f"{human_bytes(total)}  {rate}/s"
        self._draw(text, final=done == total)

    def archive(self, event: ObjectProgress) -> None:
        """`progress` of zip/unzip."""
        if self.enabled:
            text = f"{event.action} {event.path}: {_entries(event.entries)}, "
            self._draw(text + human_bytes(event.bytes), final=event.action == "done")

    def _draw(self, text: str, final: bool) -> None:
        now = time.monotonic()
        if not final and self._width and now - self._drawn < 0.1:
            return
        self._drawn, self._width = now, max(self._width, len(text))
        click.echo("\r" + text.ljust(self._width), nl=False, err=True)


def _entries(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"


@contextmanager
def _local_errors() -> Iterator[None]:
    """Local file errors (permissions, a file where a folder should be) as clean messages."""
    try:
        yield
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}")


def _print_infos(items: list[ObjectInfo], long: bool) -> None:
    if not long:
        for item in items:
            click.echo(item.path + ("/" if item.type == "directory" else ""))
        return
    rows = [
        (i.type, human_bytes(i.size) if i.type == "file" else "-", i.modified, i.path)
        for i in items
    ]
    table(rows, ["type", "size", "modified", "path"])


def _print_info(info: ObjectInfo, as_json: bool, message: str) -> None:
    if as_json:
        emit_json(info)
    else:
        click.echo(message)


@object_group.command()
@click.argument("path", default="", shell_complete=object_paths)
@click.option("--pattern", help="Only names matching this glob (`*.csv`).")
@click.option("--depth", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Levels to descend (1 to 64).")  # fmt: skip
@click.option("-a", "--all", "hidden", is_flag=True, help="Include hidden entries (`.name`).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many entries.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0),
              help="Skip this many entries first.")  # fmt: skip
@click.option("-l", "--long", is_flag=True, help="A table: type, size, modified, path.")
@engine_command
def ls(opts: Options, path: str, pattern: str | None, depth: int, hidden: bool,
       limit: int | None, offset: int, long: bool) -> None:  # fmt: skip
    """Entries of the folder PATH (default: the storage root)."""
    with opts.engine() as engine:
        page = engine.objects.listing(path, pattern, depth, hidden, limit, offset)
    if opts.json:
        return emit_json(page.items)
    _print_infos(page.items, long)
    rest = page.total - offset - len(page.items)
    if rest > 0:
        click.echo(f"... {rest} more (see --offset)", err=True)


@object_group.command()
@click.argument("path", shell_complete=object_paths)
@engine_command
def info(opts: Options, path: str) -> None:
    """Type, size and modification time of PATH."""
    with opts.engine() as engine:
        found = engine.objects.info(path)
    if opts.json:
        return emit_json(found)
    size = f"{human_bytes(found.size)} ({found.size} bytes)" if found.type == "file" else "-"
    key_values([("path", found.path), ("type", found.type), ("size", size),
                ("modified", found.modified), ("etag", found.etag)])  # fmt: skip


@object_group.command()
@click.argument("path", shell_complete=object_paths)
@click.option("--no-parents", is_flag=True, help="Fail when the parent folder is missing.")
@engine_command
def mkdir(opts: Options, path: str, no_parents: bool) -> None:
    """Create the folder PATH (and its parents)."""
    with opts.engine() as engine:
        made = engine.objects.mkdir(path, parents=not no_parents)
    _print_info(made, opts.json, f"created {made.path}/")


@object_group.command()
@click.argument("local", type=click.Path(exists=True))
@click.argument("remote", shell_complete=object_paths)
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
@_progress_option
@engine_command
def put(opts: Options, local: str, remote: str, overwrite: bool, progress: bool | None) -> None:
    """Upload the file or folder LOCAL (recursively) to REMOTE.

    A REMOTE ending in `/` is a folder to upload into.
    """
    if remote.endswith("/"):
        remote += Path(local).resolve().name
    with opts.engine() as engine, _Meter(progress, opts.json) as meter, _local_errors():
        stored = engine.objects.put(local, remote, overwrite=overwrite, progress=meter.transfer)
    _print_info(stored, opts.json, f"uploaded {local} -> {stored.path} ({human_bytes(meter.done)})")


@object_group.command()
@click.argument("remote", shell_complete=object_paths)
@click.argument("local", default=".", type=click.Path())
@_progress_option
@engine_command
def get(opts: Options, remote: str, local: str, progress: bool | None) -> None:
    """Download the file or folder REMOTE (recursively) to LOCAL (default: here).

    Into an existing local folder, REMOTE keeps its name.
    """
    target = Path(local).expanduser()
    with opts.engine() as engine, _Meter(progress, opts.json) as meter, _local_errors():
        found = engine.objects.info(remote)
        if found.type == "directory" and found.name and target.is_dir():
            target = target / found.name
        written = engine.objects.get(remote, target, progress=meter.transfer)
    if opts.json:
        return emit_json({**found.model_dump(mode="json"), "local": str(written)})
    click.echo(f"downloaded {found.path} -> {written} ({human_bytes(meter.done)})")


@object_group.command()
@click.argument("path", shell_complete=object_paths)
@click.option("--start", type=click.IntRange(min=0), help="First byte (0-based).")
@click.option("--end", type=click.IntRange(min=0), help="Stop before this byte (exclusive).")
@engine_command
def cat(opts: Options, path: str, start: int | None, end: int | None) -> None:
    """Write the bytes of the file PATH (or a range of them) to stdout, as they are.

    There is no JSON form: --json changes only how errors are printed.
    """
    with opts.engine() as engine:
        if engine.objects.info(path).type == "directory":  # its download is a zip
            fail(
                f"{path!r} is a folder: `dxflow object cat` prints files; "
                f"`dxflow object get {path}` downloads the folder (`object ls {path}` lists it)"
            )
        data = engine.objects.cat(path, start, end)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _rm_error(result: ObjectResult, recursive: bool) -> str:
    """A failed item's message in the CLI's words: a folder that is not empty (the one
    conflict of a removal) names -r, as the single-path error's `option` does."""
    from .._exceptions import error_from_code

    error = error_from_code(result.code or "error", result.error or "failed")
    if result.code == "conflict" and not recursive:
        error.details["option"] = "recursive"
    return cli_message(error)


def _rm_many(opts: Options, paths: tuple[str, ...], recursive: bool) -> None:
    with opts.engine() as engine:
        results = engine.objects.rm_many(paths, recursive=recursive)
    if opts.json:
        emit_json(results)
    else:
        for result in results:
            if result.ok:
                click.echo(f"removed {result.path}")
            else:
                click.echo(f"error: {result.path}: {_rm_error(result, recursive)}", err=True)
    if not all(result.ok for result in results):
        sys.exit(1)


@object_group.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, shell_complete=object_paths)
@click.option("-r", "--recursive", is_flag=True, help="Remove folders with what they hold.")
@engine_command
def rm(opts: Options, paths: tuple[str, ...], recursive: bool) -> None:
    """Remove files or folders; with several, the others go on when one fails (exit 1)."""
    if len(paths) > 1:
        return _rm_many(opts, paths, recursive)
    with opts.engine() as engine:
        engine.objects.rm(paths[0], recursive=recursive)
    if opts.json:
        from .._models import ObjectResult

        return emit_json(ObjectResult(path=paths[0], ok=True))
    click.echo(f"removed {paths[0]}")


def _transfer(verb: str, done: str, doc: str) -> None:
    @object_group.command(verb, help=doc)
    @click.argument("src", shell_complete=object_paths)
    @click.argument("dst", shell_complete=object_paths)
    @click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
    @engine_command
    def command(opts: Options, src: str, dst: str, overwrite: bool) -> None:
        with opts.engine() as engine:
            result = getattr(engine.objects, verb)(src, dst, overwrite=overwrite)
        _print_info(result, opts.json, f"{done} {src} -> {result.path}")


_transfer("mv", "moved", "Move or rename SRC to DST.")
_transfer("cp", "copied", "Copy the file or folder SRC to DST.")


@object_group.command()
@click.argument("path", shell_complete=object_paths)
@engine_command
def checksum(opts: Options, path: str) -> None:
    """The sha256 of the file PATH (as `sha256sum` prints it)."""
    with opts.engine() as engine:
        digest = engine.objects.checksum(path)
    if opts.json:
        return emit_json({"path": path, "algorithm": "sha256", "digest": digest})
    click.echo(f"{digest}  {path}")


def _archive(verb: str, doc: str) -> None:
    @object_group.command(verb, help=doc)
    @click.argument("path", shell_complete=object_paths)
    @click.argument("dest", required=False, shell_complete=object_paths)
    @click.option("--overwrite", is_flag=True, help="Replace what exists at DEST.")
    @_progress_option
    @engine_command
    def command(opts: Options, path: str, dest: str | None, overwrite: bool,
                progress: bool | None) -> None:  # fmt: skip
        with opts.engine() as engine, _Meter(progress, opts.json, threshold=0) as meter:
            done = getattr(engine.objects, verb)(path, dest, overwrite, progress=meter.archive)
        if opts.json:
            return emit_json(done)
        click.echo(f"{verb}ped {path} -> {done.dest} "
                   f"({_entries(done.entries)}, {human_bytes(done.bytes)})")  # fmt: skip


_archive("zip", "Archive the file or folder PATH into DEST (default: PATH.zip).")
_archive("unzip", "Extract the archive PATH into DEST (default: its name without .zip).")


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@object_group.command()
@click.argument("path", shell_complete=object_paths)
@click.option("--expires", default="1h", show_default=True, callback=_duration,
              help="Lifetime of the link (30m, 2h, 7d).")  # fmt: skip
@click.option(
    "--writable",
    is_flag=True,
    help="A drop box: the link uploads to PATH (and no longer downloads it).",
)
@click.option("--readable", is_flag=True, help="With --writable: the link downloads PATH too.")
@click.option("--max-uses", type=click.IntRange(min=1), help="Stop working after N uses.")
@engine_command
def share(opts: Options, path: str, expires: str, writable: bool, readable: bool,
          max_uses: int | None) -> None:  # fmt: skip
    """A link to PATH that works without a key; prints its URL."""
    if readable and not writable:
        raise click.UsageError("--readable goes with --writable (a read link downloads anyway)")
    with opts.engine() as engine:
        link = engine.objects.share(path, expires=expires, writable=writable, max_uses=max_uses,
                                    readable=readable)  # fmt: skip
    if opts.json:
        return emit_json(link)
    click.echo(link.url)


@object_group.command()
@engine_command
def shares(opts: Options) -> None:
    """Share links, with their uses and state."""
    with opts.engine() as engine:
        links = engine.objects.shares()
    if opts.json:
        return emit_json(links)
    now = time.time()

    def state(revoked: bool, expires: float) -> str:
        return "revoked" if revoked else "expired" if expires <= now else "active"

    def mode(link: ShareLink) -> str:
        return ("rw" if link.readable else "w") if link.writable else "r"

    table(
        [(s.id, s.path, state(s.revoked, s.expires_at.timestamp()), mode(s),
          f"{s.uses}/{s.max_uses or '-'}", s.expires_at, s.created_by or "-") for s in links],
        ["id", "path", "state", "mode", "uses", "expires", "by"],
    )  # fmt: skip


@object_group.command()
@click.argument("share_id", metavar="ID")
@engine_command
def revoke(opts: Options, share_id: str) -> None:
    """Revoke the share link ID: it stops working at once."""
    with opts.engine() as engine:
        link = engine.objects.revoke(share_id)
    if opts.json:
        return emit_json(link)
    click.echo(f"revoked {link.id} ({link.path})")


fs = click.Group(
    "fs", commands=object_group.commands, hidden=True, help="Alias of `dxflow object`."
)
