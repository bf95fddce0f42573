"""The look of the proxies' models (see `_display` for the machinery, `_views` for the rest).

Like `_views`, it reads attributes only: a field a newer engine adds changes nothing here.
"""

from __future__ import annotations

from typing import Any

from ._display import Block, human_bytes, human_time, register
from ._views import _ago, _join

__all__: list[str] = []


def _where(p: Any) -> str:
    """What the proxy forwards to: its addresses, or a workflow service's containers."""
    if p.workflow:
        return f"workflow {p.workflow}/{p.service}:{p.service_port}"
    return _join(p.targets)


def _state(p: Any) -> str:
    return f"{p.state}: {p.error}" if p.error else p.state


def _access(p: Any) -> str:
    """ "token (PROXY)", "link", "none (public)"."""
    if p.auth == "token":
        return f"token ({p.permission})"
    return "none (public)" if p.auth == "none" else p.auth


def _listen(p: Any) -> str:
    if p.port is None:
        return "the engine's listener"
    return f"{p.host}:{p.port}" + (" (TLS)" if p.tls else "")


def _health(p: Any) -> str:
    h = p.health
    if h is None:
        return "passive (a target failing 3 times in a row is out for 10 s)"
    check = f"GET {h.path}" if h.path else "TCP connect"
    return f"{check} every {h.interval:g} s, out after {h.unhealthy}, back after {h.healthy}"


def _rate(p: Any) -> str:
    if not p.rate:
        return "-"
    burst = f", burst {p.burst}" if p.burst else ""
    return f"{p.rate} per {'client address' if p.rate_key == 'client' else 'identity'}{burst}"


def _limits(p: Any) -> str:
    cap = f"{p.max_connections} connections" if p.max_connections else "no connection cap"
    return (
        f"{cap}, timeout {p.timeout:g} s, connect {p.connect_timeout:g} s, "
        f"{p.retries} retries, verify {'on' if p.verify else 'off'}"
    )


_POOL = ("target", "address", "health", "open", "error")


def _info_blocks(p: Any) -> list[Block]:
    blocks = [
        Block(
            [
                ("name", p.name),
                ("url", p.url),
                ("protocol", p.protocol),
                ("state", _state(p)),
                ("targets", _where(p)),
                ("balance", p.balance),
                ("health", _health(p)),
                ("listen", _listen(p)),
                ("auth", _access(p)),
                ("allow", _join(p.allow)),
                ("deny", _join(p.deny)),
                ("rate", _rate(p)),
                ("limits", _limits(p)),
                ("created", _ago(p.created_at)),
                ("by", p.created_by),
            ],
            title=f"proxy {p.name}",
        )
    ]
    pool = [(t.target, t.address, t.health, t.open_connections, t.error) for t in p.pool]
    if pool:
        blocks.append(Block(pool, _POOL, "pool"))
    return blocks


_LIST = ("name", "protocol", "url", "targets", "auth", "state")


def _info_row(p: Any) -> tuple[Any, ...]:
    return (p.name, p.protocol, p.url, _where(p), _access(p), _state(p))


def _info_summary(p: Any) -> str:
    return f"{p.name} {p.protocol} {p.state} {p.url or '-'} -> {_where(p)}"


register(
    "ProxyInfo",
    summary=_info_summary,
    blocks=_info_blocks,
    columns=_LIST,
    row=_info_row,
)
# The handles (`engine.proxies.list()` is a list of them) show as their info's rows.
register(
    "Proxy",
    "AsyncProxy",
    summary=lambda h: _info_summary(h.info),
    columns=_LIST,
    row=lambda h: _info_row(h.info),
)
register(
    "ProxyList",
    summary=lambda v: f"{len(v.proxies)} proxies: " + _join(p.name for p in v.proxies),
    blocks=lambda v: [Block([_info_row(p) for p in v.proxies], _LIST, "proxies")],
)
register(
    "ProxyTargetState",
    summary=lambda t: f"{t.target} {t.health} at {t.address or '-'}",
    columns=_POOL,
    row=lambda t: (t.target, t.address, t.health, t.open_connections, t.error),
)

# -- stats ---------------------------------------------------------------------------------


def _latency(values: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.1f} ms" for k, v in values.items()) or "-"


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "-"


_TARGETS = ("target", "address", "health", "requests", "failures", "responses", "open", "in",
            "out", "latency")  # fmt: skip


def _target_row(t: Any) -> tuple[Any, ...]:
    return (t.target, t.address, t.health, t.requests, t.failures, _counts(t.responses),
            t.open_connections, human_bytes(t.bytes_in), human_bytes(t.bytes_out),
            _latency(t.latency_ms))  # fmt: skip


def _stats_blocks(s: Any) -> list[Block]:
    blocks = [
        Block(
            [
                ("requests", s.requests),
                ("refused", _counts(s.refused)),
                ("responses", _counts(s.responses)),
                ("open", s.open_connections),
                ("bytes in", human_bytes(s.bytes_in)),
                ("bytes out", human_bytes(s.bytes_out)),
                ("latency", _latency(s.latency_ms)),
                ("since", _ago(s.since)),
            ],
            title=f"proxy {s.name}",
        )
    ]
    if s.targets:
        blocks.append(Block([_target_row(t) for t in s.targets], _TARGETS, "targets"))
    return blocks


def _stats_summary(s: Any) -> str:
    p50 = s.latency_ms.get("p50")
    latency = f", p50 {p50:.1f} ms" if p50 is not None else ""
    return (
        f"{s.name}: {s.requests} requests, {sum(s.refused.values())} refused, "
        f"{s.open_connections} open, {human_bytes(s.bytes_in)} in, "
        f"{human_bytes(s.bytes_out)} out{latency}"
    )


register("ProxyStats", summary=_stats_summary, blocks=_stats_blocks)
register(
    "ProxyTargetStats",
    summary=lambda t: f"{t.target} {t.health}: {t.requests} requests, {t.failures} failures",
    columns=_TARGETS,
    row=_target_row,
)

# -- access links ----------------------------------------------------------------------------


def _link_state(k: Any) -> str:
    return "revoked" if k.revoked else f"expires {human_time(k.expires_at)}"


_LINKS = ("id", "proxy", "state", "by", "created")


def _link_row(k: Any) -> tuple[Any, ...]:
    return (k.id, k.proxy, _link_state(k), k.created_by, human_time(k.created_at))


# The URL carries the link's secret: print() and Jupyter show it to whoever asked for it,
# a repr (which ends up in logs and tracebacks) never does (as share links).
register(
    "ProxyLink",
    summary=lambda k: f"{k.id} {k.proxy} {_link_state(k)}",
    blocks=lambda k: [
        Block(
            [
                ("url", k.url),
                ("proxy", k.proxy),
                ("state", "revoked" if k.revoked else "active"),
                ("expires", _ago(k.expires_at)),
                ("id", k.id),
                ("created", _ago(k.created_at)),
                ("by", k.created_by),
            ]
        )
    ],
    columns=_LINKS,
    row=_link_row,
)
register(
    "ProxyLinkList",
    summary=lambda v: f"{len(v.links)} links: " + _join(k.id for k in v.links),
    blocks=lambda v: [Block([_link_row(k) for k in v.links], _LINKS, "access links")],
)
