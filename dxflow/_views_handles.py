"""The look of the SDK's handles (a list of workflows or shells is a table of their
infos) and of a resolved Compose project (`wf.config()`: a table of its services, not a
thousand-character repr). See `_display` for the machinery.

Handles show what they hold (`info`) and never do I/O to be shown.
"""

from __future__ import annotations

from typing import Any

from ._display import _VIEWS, Block, register
from ._views import _join

__all__: list[str] = []


def _info_look(name: str) -> dict[str, Any]:
    """A handle's look: its info's summary, and its row in a table of handles."""
    info = _VIEWS[name]
    return {
        "summary": lambda h: info.summary(h.info),
        "blocks": (lambda h: info.blocks(h.info)) if info.blocks else None,
        "columns": info.columns,
        "row": (lambda h: info.row(h.info)) if info.row else None,
    }


register("Workflow", "AsyncWorkflow", **_info_look("WorkflowInfo"))
register("Shell", "AsyncShell", **_info_look("ShellInfo"))


def _port(p: Any) -> str:
    host = f"{p.host_ip}:" if p.host_ip else ""
    published = f"{host}{p.published}->" if p.published else ""
    return f"{published}{p.target}/{p.protocol}"


def _source(s: Any) -> str:
    if s.build is not None:
        return f"build {s.build.context}"
    return str(s.image or "-")


def _depends(s: Any) -> str:
    short = {"service_started": "started", "service_healthy": "healthy",
             "service_completed_successfully": "completed"}  # fmt: skip
    return _join(
        f"{name} ({short.get(d.condition, d.condition)})" for name, d in s.depends_on.items()
    )


_SERVICES = ("service", "image", "command", "ports", "depends on", "health check", "mounts")


def _service_row(s: Any) -> tuple[Any, ...]:
    command = " ".join(s.command) if s.command else "-"
    mounts = _join(f"{m.source or m.type}:{m.target}" for m in s.volumes)
    check = "yes" if s.healthcheck is not None and s.healthcheck.test else "-"
    return (
        s.name,
        _source(s),
        command,
        _join(_port(p) for p in s.ports),
        _depends(s),
        check,
        mounts,
    )


def _project_blocks(p: Any) -> list[Block]:
    blocks = [Block([_service_row(s) for s in p.services.values()], _SERVICES, f"project {p.name}")]
    extra = [
        ("networks", _join(p.networks)),
        ("volumes", _join(p.volumes)),
        ("secrets", _join(p.secrets)),
        ("configs", _join(p.configs)),
        ("working dir", p.working_dir),
    ]
    blocks.append(Block([row for row in extra if row[1] and row[1] != "-"], ("", "")))
    return blocks


register(
    "ComposeProject",
    summary=lambda p: f"{p.name} services=[{_join(p.services)}]",
    blocks=_project_blocks,
)
