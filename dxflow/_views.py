"""The look of each model people look at (see `_display` for the machinery).

Each view is keyed by the model's class name, so this module imports no model: it reads
attributes only, and a field a newer engine adds changes nothing here.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from ._display import (
    Block,
    clip,
    human_bytes,
    human_duration,
    human_time,
    local_time,
    log_html,
    log_text,
    register,
    short_id,
    table_of,
)

__all__: list[str] = []


def _ago(when: Any) -> str:
    return f"{local_time(when)} ({human_time(when)})" if when else "-"


def _join(values: Any) -> str:
    return ", ".join(str(v) for v in values) or "-"


# -- workflows -----------------------------------------------------------------------------


def _state(state: str, health: str | None, exit_code: int | None) -> str:
    """ "running (healthy)", "exited (0)": the STATUS column of `docker compose ps`."""
    if health:
        return f"{state} ({health})"
    if exit_code is not None and state in ("exited", "dead", "stopped"):
        return f"{state} ({exit_code})"
    return state


def _container_rows(service: Any) -> list[tuple[Any, ...]]:
    if not service.containers:
        return [("-", service.name, "-", _state(service.state, service.health, None), "")]
    return [
        (
            c.name,
            service.name,
            short_id(c.id),
            _state(c.state, c.health, c.exit_code),
            ", ".join(c.ports),
        )
        for c in service.containers
    ]


_PS = ("name", "service", "id", "status", "ports")


def _service_summary(s: Any) -> str:
    return f"{s.name} {_state(s.state, s.health, s.exit_code)}"


register(
    "WorkflowStatus",
    summary=lambda s: f"{s.name} {s.state}: " + (_join(map(_service_summary, s.services))),
    blocks=lambda s: [
        Block(
            [r for svc in s.services for r in _container_rows(svc)],
            _PS,
            f"workflow {s.name}: {s.state}",
        )
    ],
)
register(
    "ServiceStatus",
    summary=lambda s: f"{_service_summary(s)}, {len(s.containers)}/{s.replicas} containers",
    blocks=lambda s: [Block(_container_rows(s), _PS)],
    columns=("service", "status", "containers"),
    row=lambda s: (
        s.name,
        _state(s.state, s.health, s.exit_code),
        f"{len(s.containers)}/{s.replicas}",
    ),
)
register(
    "ContainerState",
    summary=lambda c: f"{c.name} {short_id(c.id)} {_state(c.state, c.health, c.exit_code)}",
    columns=("name", "id", "status", "ports"),
    row=lambda c: (
        c.name,
        short_id(c.id),
        _state(c.state, c.health, c.exit_code),
        ", ".join(c.ports),
    ),
)
register(
    "WorkflowInfo",
    summary=lambda w: f"{w.name} services=[{_join(w.services)}] created {human_time(w.created_at)}",
    blocks=lambda w: [
        Block(
            [
                ("name", w.name),
                ("services", _join(w.services)),
                ("profiles", _join(w.profiles)),
                ("created", _ago(w.created_at)),
                ("working dir", w.working_dir),
            ]
        )
    ],
    columns=("name", "services", "created", "working dir"),
    row=lambda w: (w.name, _join(w.services), human_time(w.created_at), w.working_dir),
)
for _name in (
    "WorkflowList",
    "ShellList",
    "KeyList",
    "ShareList",
    "AuditRecords",
    "ComposeProjectList",
):
    _field = {
        "WorkflowList": "workflows",
        "ShellList": "shells",
        "KeyList": "keys",
        "ShareList": "shares",
        "AuditRecords": "records",
        "ComposeProjectList": "projects",
    }[_name]
    register(
        _name,
        summary=lambda v, f=_field: f"{len(getattr(v, f))} {f}",
        blocks=lambda v, f=_field: [table_of(getattr(v, f)) or Block([], ("(none)",))],
    )


def _usage(used: int, limit: int) -> str:
    return f"{human_bytes(used)} / {human_bytes(limit)}"


_STATS = ("container", "cpu %", "mem usage / limit", "mem %", "net i/o", "block i/o", "pids")


def _stats_row(c: Any) -> tuple[Any, ...]:
    return (
        c.container,
        f"{c.cpu_percent:.2f}%",
        _usage(c.memory_usage, c.memory_limit),
        f"{c.memory_percent:.2f}%",
        _usage(c.network_rx, c.network_tx),
        _usage(c.block_read, c.block_write),
        c.pids,
    )


register(
    "WorkflowStats",
    summary=lambda s: (
        f"{s.name}: {len(s.containers)} containers, cpu "
        f"{sum(c.cpu_percent for c in s.containers):.1f}%, memory "
        f"{human_bytes(sum(c.memory_usage for c in s.containers))}"
    ),
    blocks=lambda s: [Block([_stats_row(c) for c in s.containers], _STATS, f"workflow {s.name}")],
)
register(
    "ContainerStats",
    summary=lambda c: (
        f"{c.container} cpu {c.cpu_percent:.1f}% memory {human_bytes(c.memory_usage)}"
    ),
    columns=_STATS,
    row=_stats_row,
)


def _top_blocks(top: Any) -> list[Block]:
    return [Block(c.processes, c.titles, f"{c.container} ({c.service})") for c in top.containers]


register(
    "WorkflowTop",
    summary=lambda t: (
        f"{sum(len(c.processes) for c in t.containers)} processes in {len(t.containers)} containers"
    ),
    blocks=_top_blocks,
)
register(
    "ContainerTop",
    summary=lambda c: f"{c.container}: {len(c.processes)} processes",
    blocks=lambda c: [Block(c.processes, c.titles, f"{c.container} ({c.service})")],
)


def _line_summary(line: Any) -> str:
    return f"{line.container or line.service} {line.stream}: {line.line!r}"


register(
    "LogLine",
    summary=_line_summary,
    text=lambda line: log_text([line]),
    html=lambda line: log_html([line]),
)


def _event_text(e: Any) -> str:
    """One line as `dxflow workflow up` prints it: time, who, what."""
    who = e.container or e.service or e.workflow
    extra = f" (exit {e.exit_code})" if e.exit_code is not None else ""
    detail = f"  {e.detail}" if e.detail else ""
    return f"{e.time.astimezone():%H:%M:%S}  {who}  {e.action}{extra}{detail}"


register(
    "WorkflowEvent",
    summary=lambda e: clip(_event_text(e)),
    text=_event_text,
    html=lambda e: f"<code>{html.escape(_event_text(e))}</code>",
    columns=("time", "workflow", "service", "container", "action", "detail"),
    row=lambda e: (e.time, e.workflow, e.service, e.container, e.action, e.detail),
)


def _result_text(r: Any) -> str:
    output = r.output.rstrip("\n")
    return output if r.exit_code == 0 else f"{output}\n[exit code {r.exit_code}]".lstrip("\n")


def _result_html(r: Any) -> str:
    colour = "#2ca02c" if r.exit_code == 0 else "#c00"
    return (
        f'<div class="dxflow"><div style="color:{colour};font-size:11px">exit code '
        f'{r.exit_code}</div><pre style="margin:2px 0">{html.escape(r.output)}</pre></div>'
    )


register(
    "ExecResult",
    "ShellResult",
    summary=lambda r: f"exit {r.exit_code}: {r.output.strip()!r}",
    text=_result_text,
    html=_result_html,
)
register(
    "EnvExplanation",
    summary=lambda e: f"{e.variable}={e.value!r} from {e.source}",
    blocks=lambda e: [Block([("variable", e.variable), ("value", e.value), ("source", e.source)])],
)
register(
    "ComposeProjectSummary",
    summary=lambda p: (
        f"{p.name} {p.state} services=[{_join(p.services)}]{'' if p.managed else ' (not dxflow)'}"
    ),
    columns=("name", "state", "services", "managed", "working dir"),
    row=lambda p: (p.name, p.state, _join(p.services), "yes" if p.managed else "no", p.working_dir),
)

# -- objects -------------------------------------------------------------------------------


def _size(o: Any) -> str:
    return human_bytes(o.size) if o.type == "file" else "-"


_LS = ("type", "size", "modified", "path")


def _ls_row(o: Any) -> tuple[Any, ...]:
    return (
        o.type,
        _size(o),
        local_time(o.modified),
        o.path + ("/" if o.type == "directory" else ""),
    )


register(
    "ObjectInfo",
    summary=lambda o: f"{o.type} {o.path or '/'} {_size(o)} modified {human_time(o.modified)}",
    columns=_LS,
    row=_ls_row,
)


def _listing_blocks(listing: Any) -> list[Block]:
    shown = len(listing.items)
    note = f"{shown} of {listing.total} entries" if listing.total != shown else None
    return [Block([_ls_row(o) for o in listing.items], _LS, f"{listing.path or '/'}", note)]


register(
    "ObjectListing",
    summary=lambda v: f"{v.path or '/'}: {len(v.items)} of {v.total} entries",
    blocks=_listing_blocks,
)
register(
    "ObjectProgress",
    summary=lambda p: (
        f"{p.action} {p.path}: {p.entries} entries, {human_bytes(p.bytes)}"
        + (f" -> {p.dest}" if p.dest else "")
    ),
)
register(
    "ObjectChecksum",
    summary=lambda c: f"{c.path} {c.algorithm}:{c.digest[:12]} {human_bytes(c.size)}",
    blocks=lambda c: [
        Block([("path", c.path), (c.algorithm, c.digest), ("size", human_bytes(c.size))])
    ],
)


def _share_access(s: Any) -> str:
    if not s.writable:
        return "read"
    return "read+write" if s.readable else "write (drop box)"


def _uses(s: Any) -> str:
    return f"{s.uses}/{s.max_uses}" if s.max_uses else str(s.uses)


def _share_state(s: Any) -> str:
    return "revoked" if s.revoked else f"expires {human_time(s.expires_at)}"


# The URL is the link itself (a credential): print() and Jupyter show it to whoever asked
# for it, a repr (which ends up in logs and tracebacks) never does.
register(
    "ShareLink",
    summary=lambda s: f"{s.id} {s.path} {_share_access(s)}, {_share_state(s)}, {_uses(s)} uses",
    blocks=lambda s: [
        Block(
            [
                ("url", s.url),
                ("path", s.path),
                ("access", _share_access(s)),
                ("expires", _ago(s.expires_at)),
                ("uses", _uses(s)),
                ("state", "revoked" if s.revoked else "active"),
                ("id", s.id),
                ("created", _ago(s.created_at)),
                ("by", s.created_by),
            ]
        )
    ],
    columns=("id", "path", "access", "expires", "uses", "state"),
    row=lambda s: (
        s.id,
        s.path,
        _share_access(s),
        human_time(s.expires_at),
        _uses(s),
        "revoked" if s.revoked else "active",
    ),
)

# -- shells --------------------------------------------------------------------------------


def _shell_state(s: Any) -> str:
    if s.state == "running":
        return f"running pid {s.pid}"
    code = f" {s.exit_code}" if s.exit_code is not None else ""
    return f"{s.state}{code}"


def _where(s: Any) -> str:
    return f"{s.workflow}/{s.service}" if s.workflow else "host"


register(
    "ShellInfo",
    summary=lambda s: f"{s.name} {_shell_state(s)} {' '.join(s.command)!r} on {_where(s)}",
    blocks=lambda s: [
        Block(
            [
                ("name", s.name),
                ("state", _shell_state(s)),
                ("command", " ".join(s.command)),
                ("on", _where(s)),
                ("created", _ago(s.created)),
                ("exited", _ago(s.exited)),
                ("clients", s.clients),
                ("size", f"{s.cols}x{s.rows}"),
                ("owner", s.owner),
                ("user", s.user),
                ("error", s.error),
            ]
        )
    ],
    columns=("name", "state", "command", "on", "created", "clients"),
    row=lambda s: (
        s.name,
        _shell_state(s),
        clip(" ".join(s.command), 40),
        _where(s),
        human_time(s.created),
        s.clients,
    ),
)

# -- keys, tokens, audit -------------------------------------------------------------------


def _fingerprint(value: str) -> str:
    """`SHA256:` and its first 12 characters: enough to tell keys apart at a glance."""
    kind, _, digest = value.partition(":")
    return f"{kind}:{digest[:12]}…" if digest else value[:20]


# Never a PEM block: the fingerprint names the key, `.public_key` holds the text.
register(
    "KeyInfo",
    summary=lambda k: (
        f"{k.identity} {k.key_type} {_fingerprint(k.fingerprint)} [{_join(k.permissions)}]"
    ),
    blocks=lambda k: [
        Block(
            [
                ("identity", k.identity),
                ("type", k.key_type),
                ("fingerprint", k.fingerprint),
                ("permissions", _join(k.permissions)),
                ("created", _ago(k.created_at)),
                ("rotated", _ago(k.rotated_at)),
                ("run as", k.run_as),
                ("workflow policy", k.workflow_policy),
                ("public key", f"{len(k.public_key)} characters (.public_key)"),
            ]
        )
    ],
    columns=("identity", "type", "fingerprint", "permissions", "created"),
    row=lambda k: (
        k.identity,
        k.key_type,
        k.fingerprint,
        _join(k.permissions),
        human_time(k.created_at),
    ),
)
# The token is a credential: neither a repr nor print() shows it (`.token` does).
register(
    "Token",
    summary=lambda t: f"{t.token_type} for {t.identity}, expires {human_time(t.expires_at)}",
    blocks=lambda t: [
        Block(
            [
                ("identity", t.identity),
                ("permissions", _join(t.permissions)),
                ("expires", _ago(t.expires_at)),
                ("token", "(.token)"),
            ]
        )
    ],
)
register(
    "WhoAmI",
    summary=lambda w: f"{w.identity} on {w.engine_id} [{_join(w.permissions)}]",
    blocks=lambda w: [
        Block(
            [
                ("identity", w.identity),
                ("permissions", _join(w.permissions)),
                ("engine", w.engine_id),
            ]
        )
    ],
)
_AUDIT = ("id", "time", "identity", "operation", "target", "outcome", "client", "detail")
register(
    "AuditRecord",
    summary=lambda r: (
        f"#{r.id} {local_time(r.time)} {r.identity or '-'} {r.operation} "
        f"{r.target or '-'} {r.outcome}"
    ),
    columns=_AUDIT,
    row=lambda r: (
        r.id,
        r.time,
        r.identity,
        r.operation,
        r.target,
        r.outcome,
        r.client,
        clip(r.detail, 80) if r.detail else None,
    ),
)

# -- the engine ----------------------------------------------------------------------------

register(
    "Health",
    summary=lambda h: f"{h.status}, version {h.version}",
    blocks=lambda h: [Block([("status", h.status), ("version", h.version)])],
)
register(
    "Pong",
    summary=lambda p: f"{p.engine_id} as {p.identity} at {local_time(p.time)}",
    blocks=lambda p: [
        Block([("engine", p.engine_id), ("identity", p.identity), ("time", local_time(p.time))])
    ],
)


def _info_blocks(i: Any) -> list[Block]:
    docker = (
        f"{i.docker.version} (API {i.docker.api_version})"
        if i.docker.available
        else f"unavailable: {i.docker.error}"
    )
    cpu = f"{i.cpu.count} x {i.cpu.model or 'unknown'}"
    blocks = [
        Block(
            [
                ("engine", i.engine_id),
                ("name", i.name),
                ("version", i.version),
                ("started", _ago(i.started_at)),
                ("home", i.home),
                ("host", f"{i.host.hostname}: {i.host.os} ({i.host.arch}, kernel {i.host.kernel})"),
                ("python", i.host.python),
                ("cpu", cpu),
                (
                    "memory",
                    f"{human_bytes(i.memory.available)} free of {human_bytes(i.memory.total)}",
                ),
                ("docker", docker),
                ("gpus", ", ".join(f"{g.index}: {g.name}" for g in i.gpus) or "none"),
            ],
            title=f"engine {i.name}",
        )
    ]
    disks = [
        (d.mount, d.device, d.fstype, human_bytes(d.total), human_bytes(d.free)) for d in i.disks
    ]
    if disks:
        blocks.append(Block(disks, ("mount", "device", "fs", "size", "free"), "disks"))
    return blocks


register(
    "EngineInfo",
    summary=lambda i: (
        f"{i.name} {i.engine_id} version {i.version} on {i.host.hostname}, "
        f"up {human_duration((datetime.now(UTC) - i.started_at).total_seconds())}"
    ),
    blocks=_info_blocks,
)


def _stats_blocks(s: Any) -> list[Block]:
    mem = s.memory
    load = " ".join(f"{v:.2f}" for v in s.cpu.load_average)
    blocks = [
        Block(
            [
                ("time", local_time(s.time)),
                ("cpu", f"{s.cpu.percent:.1f}% of {len(s.cpu.per_core)} cores, load {load}"),
                (
                    "memory",
                    f"{human_bytes(mem.used)} used of {human_bytes(mem.total)}"
                    f" ({mem.percent:.0f}%)",
                ),
                ("swap", f"{human_bytes(mem.swap_used)} used of {human_bytes(mem.swap_total)}"),
            ]
        )
    ]
    disks = [
        (d.mount, human_bytes(d.used), human_bytes(d.total), f"{d.percent:.0f}%") for d in s.disks
    ]
    if disks:
        blocks.append(Block(disks, ("mount", "used", "size", "use"), "disks"))
    net = [
        (
            n.interface,
            human_bytes(n.bytes_recv),
            human_bytes(n.bytes_sent),
            n.errors_in + n.errors_out,
        )
        for n in s.network
    ]
    if net:
        blocks.append(Block(net, ("interface", "received", "sent", "errors"), "network"))
    return blocks


register(
    "EngineStats",
    summary=lambda s: (
        f"cpu {s.cpu.percent:.1f}%, memory {s.memory.percent:.0f}% "
        f"({human_bytes(s.memory.used)} of {human_bytes(s.memory.total)}) at {local_time(s.time)}"
    ),
    blocks=_stats_blocks,
)
