"""Shell completion of names the engine knows: workflows, services, shells, objects.

Each function is a click `shell_complete` callback. It opens the engine the command
would open (its --url/--key/--home as typed so far, or their environment variables),
asks for names, and answers nothing on any error: completion must never print a
traceback into the user's prompt or hang it (the engine is asked with a short timeout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import click
from click.shell_completion import CompletionItem

__all__ = ["object_paths", "service_names", "shell_names", "workflow_names"]


def _engine(ctx: click.Context) -> Any:
    from ._common import Options

    params = ctx.params
    opts = Options(
        json=False,
        url=params.get("url"),
        key=params.get("key"),
        home=params.get("home"),
        verify=False if params.get("insecure") else (params.get("ca_cert") or True),
    )
    return opts.engine(timeout=5.0)


def _answer(
    ctx: click.Context, incomplete: str, names: Callable[[Any], Iterable[str]]
) -> list[CompletionItem]:
    with contextlib.suppress(Exception), _engine(ctx) as engine:
        return [CompletionItem(n) for n in sorted(names(engine)) if n.startswith(incomplete)]
    return []


def workflow_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return _answer(ctx, incomplete, lambda e: (wf.name for wf in e.workflows.list()))


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
    return _answer(ctx, incomplete, lambda e: e.workflows.get(name).info.services)


def shell_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return _answer(ctx, incomplete, lambda e: (s.name for s in e.shells.list()))


def object_paths(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Entries of the folder typed so far (`data/ra` lists `data/`), folders with a `/`."""
    folder, _, _ = incomplete.rpartition("/")

    def names(engine: Any) -> Iterable[str]:
        prefix = f"{folder}/" if folder else ""
        for entry in engine.objects.ls(folder):
            yield prefix + entry.name + ("/" if entry.type == "directory" else "")

    return _answer(ctx, incomplete, names)
