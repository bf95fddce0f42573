"""Proxies: expose services of the engine's host over HTTP, WebSocket and TCP (PROXY).

A key sees and changes only the proxies it made (MASTER: every one). A proxy to a
workflow service needs WORKFLOW too. The data plane (`/p/{name}/...` and the proxies'
own ports) is not in this table: each connection is admitted by the dispatcher against
the proxy's access rules (`Dispatcher.admit_proxy`).
"""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import NoRequest, Operation

__all__ = ["CREATE", "GET", "LINK", "LINKS", "LIST", "REMOVE", "STATS", "UNLINK", "UPDATE"]

PROXY_PREFIX = "/p/"
"""Where the engine's listener serves HTTP proxies: `/p/{name}/...`."""

_PROXY = Permission.PROXY
_WORKFLOW = (("workflow", Permission.WORKFLOW),)

# fmt: off
LIST: Operation[NoRequest, m.ProxyList] = Operation(
    "proxies.list", "GET", "/api/proxies", "Your proxies (MASTER: every one).",
    response=m.ProxyList, permission=_PROXY)
GET: Operation[m.ProxyRef, m.ProxyInfo] = Operation(
    "proxies.get", "GET", "/api/proxies/{name}", "One proxy: its spec, URL and pool.",
    request=m.ProxyRef, response=m.ProxyInfo, permission=_PROXY)
CREATE: Operation[m.ProxyCreate, m.ProxyInfo] = Operation(
    "proxies.create", "POST", "/api/proxies",
    "Expose a pool of targets over HTTP or TCP; it persists across engine restarts.",
    request=m.ProxyCreate, response=m.ProxyInfo, permission=_PROXY, mutating=True,
    idempotent=False, target="name", also_requires=_WORKFLOW)
UPDATE: Operation[m.ProxyUpdate, m.ProxyInfo] = Operation(
    "proxies.update", "PATCH", "/api/proxies/{name}",
    "Change a proxy's targets or rules; open connections finish on the old spec.",
    request=m.ProxyUpdate, response=m.ProxyInfo, permission=_PROXY, mutating=True,
    target="name", also_requires=_WORKFLOW)
REMOVE: Operation[m.ProxyRef, m.ProxyInfo] = Operation(
    "proxies.remove", "DELETE", "/api/proxies/{name}",
    "Remove a proxy: its listener closes and its open connections end.",
    request=m.ProxyRef, response=m.ProxyInfo, permission=_PROXY, mutating=True, target="name")
STATS: Operation[m.ProxyRef, m.ProxyStats] = Operation(
    "proxies.stats", "GET", "/api/proxies/{name}/stats",
    "Requests, answers, bytes, connections and latency, per proxy and per target.",
    request=m.ProxyRef, response=m.ProxyStats, permission=_PROXY)
LINK: Operation[m.ProxyLinkCreate, m.ProxyLink] = Operation(
    "proxies.link", "POST", "/api/proxies/{name}/links",
    "An expiring, revocable access link to a proxy with auth=\"link\".",
    request=m.ProxyLinkCreate, response=m.ProxyLink, permission=_PROXY, mutating=True,
    idempotent=False, target="name")
LINKS: Operation[m.ProxyRef, m.ProxyLinkList] = Operation(
    "proxies.links", "GET", "/api/proxies/{name}/links", "A proxy's access links.",
    request=m.ProxyRef, response=m.ProxyLinkList, permission=_PROXY)
UNLINK: Operation[m.ProxyLinkRef, m.ProxyLink] = Operation(
    "proxies.unlink", "DELETE", "/api/proxies/{name}/links/{id}",
    "Revoke an access link: requests carrying it are refused at once.",
    request=m.ProxyLinkRef, response=m.ProxyLink, permission=_PROXY, mutating=True, target="id")
# fmt: on
