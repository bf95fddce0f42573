"""The look of the bridges' models (see `_display` for the machinery, `_views` for the rest).

Like `_views`, it reads attributes only: a field a newer engine adds changes nothing here.
A join token's secret never shows: it is a bearer credential (`.token` holds it).
"""

from __future__ import annotations

from typing import Any

from ._display import Block, human_bytes, human_time, register
from ._views import _ago, _join

__all__: list[str] = []

_LIST = ("name", "status", "seen", "rtt", "labels", "cpus", "memory", "gpus", "load")


def _labels(labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "-"


def _rtt(b: Any) -> str:
    return f"{b.rtt * 1000:.1f} ms" if b.rtt is not None else "-"


def _row(b: Any) -> tuple[Any, ...]:
    f = b.facts
    return (b.name, b.status, human_time(b.last_seen), _rtt(b), _labels(b.labels),
            f.cpus or "-", human_bytes(f.memory), f.gpus,
            f.load if f.load is not None else "-")  # fmt: skip


def _summary(b: Any) -> str:
    return f"{b.name} {b.status}" + (f" {_labels(b.labels)}" if b.labels else "")


def _blocks(b: Any) -> list[Block]:
    f = b.facts
    host = (f"{f.hostname or '-'}: {f.cpus or '-'} CPUs, {human_bytes(f.memory)}, "
            f"{f.gpus} GPUs, load {f.load if f.load is not None else '-'}")  # fmt: skip
    return [
        Block(
            [
                ("name", b.name),
                ("status", b.status),
                ("last seen", _ago(b.last_seen)),
                ("rtt", _rtt(b)),
                ("labels", _labels(b.labels)),
                ("allows", _join(b.allow)),
                ("drained", b.drained),
                ("host", host),
                ("engine", b.engine_id or "-"),
                ("address", b.address or "-"),
                ("joined", _ago(b.joined_at)),
            ]
        )
    ]


register("BridgeInfo", summary=_summary, blocks=_blocks, columns=_LIST, row=_row)
# The handles (`engine.bridges.list()` is a list of them) show as their info.
register(
    "Bridge",
    "AsyncBridge",
    summary=lambda h: _summary(h.info),
    blocks=lambda h: _blocks(h.info),
    columns=_LIST,
    row=lambda h: _row(h.info),
)
register(
    "BridgeList",
    summary=lambda v: f"{len(v.bridges)} agents: " + _join(b.name for b in v.bridges),
    blocks=lambda v: [Block([_row(b) for b in v.bridges], _LIST, "agents")],
)
register(
    "BridgeToken",
    summary=lambda t: (
        f"for {t.uses} agent(s) until {t.expires_at:%Y-%m-%d %H:%M} UTC, master {t.url}"
    ),
    blocks=lambda t: [
        Block(
            [
                ("token", "dxflow-join:… (a secret: `.token`)"),
                ("master", t.url),
                ("fingerprint", t.fingerprint),
                ("uses", t.uses),
                ("expires", _ago(t.expires_at)),
                ("labels", _labels(t.labels)),
            ]
        )
    ],
)
