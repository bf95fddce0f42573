"""A proxy's spec: defaults filled, an update merged, its shape checked, its rules compiled.

Every refusal is an `InvalidRequest` whose message starts with the field at fault and
says what to write instead. Nothing here touches sockets or the state.
"""

from __future__ import annotations

from typing import Any

from ..._exceptions import InvalidRequest
from ..._models import ProxyCreate, ProxyUpdate
from ..._permissions import Permission
from ._live import Rules
from ._rules import Buckets, Networks, parse_networks, parse_rate

__all__ = ["DEFAULTS", "check_shape", "compile_rules", "merged", "normalized"]

DEFAULTS: dict[str, Any] = {
    "balance": "round_robin",
    "allow": [],
    "deny": [],
    "auth": "token",
    "permission": "PROXY",
    "rate_key": "client",
    "max_connections": 0,
    "timeout": 60.0,
    "connect_timeout": 5.0,
    "verify": True,
    "retries": 1,
}
_KEEP_ON_UPDATE = ("name", "protocol", "port", "host", "tls", "tls_cert", "tls_key")


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {message}", field=field)


def normalized(request: ProxyCreate) -> ProxyCreate:
    """The spec as stored: every default filled in (a TCP proxy's auth is "none": TCP
    carries no HTTP credentials), `exist_ok` dropped, `rate=""` meaning none."""
    values = request.model_dump()
    values["exist_ok"] = False
    for key, default in DEFAULTS.items():
        if values.get(key) is None:
            values[key] = "none" if key == "auth" and request.protocol == "tcp" else default
    values["targets"] = values.get("targets") or []
    values["rate"] = values.get("rate") or None
    return ProxyCreate.model_validate(values)


def merged(stored: ProxyCreate, update: ProxyUpdate | ProxyCreate) -> ProxyCreate:
    """`stored` with what `update` sets (None keeps a value). Targets replace a workflow
    service and the other way round."""
    changes = {
        key: value
        for key, value in update.model_dump(exclude_unset=True).items()
        if value is not None and key not in (*_KEEP_ON_UPDATE, "exist_ok")
    }
    if changes.get("targets"):
        changes.update(workflow=None, service=None, service_port=None)
    elif "workflow" in changes:
        changes["targets"] = []
    values = {**stored.model_dump(), **changes}
    values["rate"] = values.get("rate") or None
    if values.get("rate") is None:
        values["burst"] = changes.get("burst")  # a burst belongs with the rate it shaped
    return ProxyCreate.model_validate(values)


def check_shape(spec: ProxyCreate) -> None:
    """Refuse a spec that cannot work, naming the field and the fix."""
    _check_targets(spec)
    if spec.protocol == "tcp":
        if spec.port is None:
            raise _invalid("port", "a tcp proxy listens on a port of its own: give port=0 to "
                           "pick a free one (CLI: --port 0), or a port number")  # fmt: skip
        if spec.auth != "none":
            raise _invalid("auth", f"auth={spec.auth!r} does not fit a tcp proxy: TCP carries "
                           "no HTTP credentials; restrict who connects with allow/deny, or "
                           "use tls, and leave auth out (or auth=\"none\")")  # fmt: skip
        if spec.health is not None and spec.health.path is not None:
            raise _invalid("health.path", "a tcp proxy checks its targets by connecting: "
                           "leave path out (None)")  # fmt: skip
    if spec.tls and spec.port is None:
        raise _invalid("tls", "TLS under /p/ is the engine's own listener's (`dxflow boot "
                       "up --tls`); a proxy terminates TLS on a port of its own: add "
                       "port=0")  # fmt: skip
    if bool(spec.tls_cert) != bool(spec.tls_key):
        missing = "tls_cert" if not spec.tls_cert else "tls_key"
        raise _invalid(missing, "tls_cert and tls_key go together (object store paths of "
                       "PEM files)")  # fmt: skip
    if spec.tls_cert and not spec.tls:
        raise _invalid("tls", "tls_cert and tls_key are used with tls=True")
    if spec.burst is not None and spec.rate is None:
        raise _invalid("burst", 'a burst shapes a rate: give rate too, like rate="100/min"')
    compile_rules(spec)  # the CIDRs, the rate and the permission parse


def _check_targets(spec: ProxyCreate) -> None:
    service = (spec.workflow, spec.service, spec.service_port)
    if spec.targets and any(v is not None for v in service):
        raise _invalid("targets", "give targets or a workflow service (workflow, service, "
                       "service_port), not both")  # fmt: skip
    if not spec.targets and spec.workflow is None:
        named = [
            n
            for n, v in zip(("service", "service_port"), service[1:], strict=True)
            if v is not None
        ]
        if named:
            raise _invalid("workflow", f"{' and '.join(named)} name a workflow service: give "
                           "workflow=\"NAME\" too")  # fmt: skip
        raise _invalid("targets", "a proxy needs targets (like \"127.0.0.1:8888\") or a "
                       "workflow service: workflow=, service= and service_port=")  # fmt: skip
    if spec.workflow is not None:
        for name, value in (("service", spec.service), ("service_port", spec.service_port)):
            if value is None:
                raise _invalid(name, f"a workflow target needs {name} too (workflow, service "
                               "and service_port go together)")  # fmt: skip


def compile_rules(spec: ProxyCreate) -> Rules:
    try:
        allow = parse_networks(spec.allow or [], "allow")
        deny = parse_networks(spec.deny or [], "deny")
    except ValueError as exc:
        field = str(exc).partition(":")[0]
        raise InvalidRequest(str(exc), field=field) from None
    buckets = None
    if spec.rate:
        try:
            count, per = parse_rate(spec.rate)
        except ValueError as exc:
            raise _invalid("rate", str(exc)) from None
        buckets = Buckets(count, per, spec.burst)
    return Rules(
        networks=Networks(allow, deny),
        auth=spec.auth or "token",
        permission=_permission(spec.permission or "PROXY"),
        buckets=buckets,
        rate_key=spec.rate_key or "client",
        max_connections=spec.max_connections or 0,
    )


def _permission(name: str) -> Permission:
    try:
        permission = Permission.parse(name)
    except ValueError as exc:
        raise _invalid("permission", str(exc)) from None
    if len(permission.names) != 1 or permission is Permission.READ_ONLY:
        raise _invalid("permission", f"{name!r}: name one permission a caller must have, "
                       "like \"PROXY\" (the default) or \"WORKFLOW\"")  # fmt: skip
    return permission
