"""Shell completion of names the engine knows: workflows, services, shells, objects, keys,
proxies.

Each function is a click `shell_complete` callback. It reaches the engine the command
would reach (its --url/--key/--home as typed so far, or their environment variables),
asks for names, and answers nothing on any error: completion must never print a
traceback into the user's prompt or hang it. A Tab press is a fresh process, so the
question goes through the lean path (one request with the cached token, see _lean.py)
and falls back to the SDK with a short timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import click
from click.shell_completion import CompletionItem

__all__ = [
    "key_identities",
    "object_paths",
    "proxy_names",
    "service_names",
    "shell_names",
    "workflow_names",
]


def _options(ctx: click.Context) -> Any:
    from ._common import Options

    params = ctx.params
    return Options(
        json=False,
        url=params.get("url"),
        key=params.get("key"),
        home=params.get("home"),
        verify=False if params.get("insecure") else (params.get("ca_cert") or True),
    )


def _ask(ctx: click.Context, operation: str, **params: Any) -> Any:
    """The answer of a read-only operation (a Record or the response model)."""
    from ._lean import lean_call

    opts = _options(ctx)
    answer = lean_call(opts, operation, **params)
    if answer is not None:
        return answer
    from .._operations import OPERATIONS

    with opts.engine(timeout=5.0) as engine:
        return engine._call(OPERATIONS[operation], **params)


def _answer(
    ctx: click.Context,
    incomplete: str,
    names: Callable[[], Iterable[str]],
) -> list[CompletionItem]:
    with contextlib.suppress(Exception):
        return [CompletionItem(n) for n in sorted(names()) if n.startswith(incomplete)]
    return []


def workflow_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return _answer(ctx, incomplete, lambda: (w.name for w in _ask(ctx, "workflows.list").workflows))


def _workflow_of(ctx: click.Context) -> str | None:
    """The workflow a service belongs to: the NAME argument, or the folder's project."""
    name = ctx.params.get("name") or ctx.params.get("project")
    return str(name) if name else None


def service_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    name = _workflow_of(ctx)
    if name is None:
        return []
    return _answer(ctx, incomplete, lambda: _ask(ctx, "workflows.get", name=name).services)


def shell_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return _answer(ctx, incomplete, lambda: (s.name for s in _ask(ctx, "shells.list").shells))


def proxy_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return _answer(ctx, incomplete, lambda: (p.name for p in _ask(ctx, "proxies.list").proxies))


def key_identities(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return _answer(ctx, incomplete, lambda: (k.identity for k in _ask(ctx, "keys.list").keys))


def object_paths(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Entries of the folder typed so far (`data/ra` lists `data/`), folders with a `/`."""
    folder, _, _ = incomplete.rpartition("/")
    prefix = f"{folder}/" if folder else ""

    def names() -> Iterable[str]:
        for entry in _ask(ctx, "objects.list", path=folder, limit=1000).items:
            yield prefix + entry.name + ("/" if entry.type == "directory" else "")

    return _answer(ctx, incomplete, names)
