"""Walk the whole operation table with keys of every permission set, through the REST
door and the in-process door: 401 without credentials, 403 naming what is missing,
otherwise allowed (the call may still fail for its own reasons, e.g. 422 or 404).

The matrix is built from the table, so it grows by itself as operations are added.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest

from dxflow import Permission, PermissionDenied, Unauthenticated
from dxflow._core import Context, EngineCore
from dxflow._exceptions import ApiError
from dxflow._keypairs import load_private_key
from dxflow._operations import OPERATIONS, Operation
from dxflow._operations.bridges import LINK_PATH
from dxflow.models import ShellRef

from ..conftest import KeyFactory, RestClient

SINGLE = [
    Permission.SHELL,
    Permission.OBJECT,
    Permission.WORKFLOW,
    Permission.PROXY,
    Permission.BRIDGE,
    Permission.PLATFORM,
]
DEFAULT = Permission.parse("PROXY,BRIDGE,SHELL,OBJECT,PLATFORM,WORKFLOW")
PERMISSION_SETS: list[Permission | None] = [
    None,
    Permission(0),
    *SINGLE,
    *(p | Permission.READ_ONLY for p in SINGLE),
    DEFAULT,
    DEFAULT | Permission.READ_ONLY,
    Permission.MASTER,
    Permission.MASTER | Permission.READ_ONLY,
]


def expected(op: Operation, granted: Permission | None) -> int | None:
    """The rule, as the issue states it: None means allowed."""
    if op.public:
        return None
    if granted is None:
        return 401
    if op.mutating and Permission.READ_ONLY in granted:
        return 403
    if Permission.MASTER in granted:
        return None
    if op.permission is None or op.permission in granted:
        return None
    return 403


def _path(op: Operation) -> str:
    path = op.path
    for name in op.path_params:
        path = path.replace("{" + name + "}", "nobody")
    return path


@pytest.mark.parametrize("granted", PERMISSION_SETS, ids=str)
def test_rest_door(
    rest: RestClient, core: EngineCore, make_key: KeyFactory, granted: Permission | None
) -> None:
    headers = {}
    if granted is not None:
        pair = make_key(granted)
        record = core.keys.get(pair.private.stem)
        assert record is not None
        headers["Authorization"] = f"Bearer {core.auth.issue(record, 600).token}"
    for op in OPERATIONS.values():
        kwargs = {"headers": headers} if op.body_in_query else {"headers": headers, "json": {}}
        if op.kind == "channel":
            status, body = _channel_status(str(rest.base_url), _path(op), headers)
        else:
            status, body = rest.status(op.method, _path(op), **kwargs)
        want = expected(op, granted)
        if want is None and op.path.startswith("/s/"):
            # The link is the credential: a made-up one is refused whoever asks.
            assert status == 403 and b"share link" in body, (op.name, status, body)
        elif want is None:
            assert status not in (401, 403), (op.name, str(granted), status, body)
        else:
            assert status == want, (op.name, str(granted), status, body)
            if op.method == "HEAD":  # the status is all a HEAD answer carries
                continue
            error = json.loads(body)["error"]
            if want == 403:
                assert error["code"] == "permission_denied"
                assert granted is not None
                read_only = op.mutating and Permission.READ_ONLY in granted
                missing = "READ_ONLY" if read_only else str(op.permission)
                assert missing in error["message"], (op.name, error["message"])
            else:
                assert error["code"] == "unauthenticated"


def _channel_status(base: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A WebSocket's answer as (status, error envelope): refusals close with 4000 + status."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect("ws" + base.rstrip("/")[4:] + path, additional_headers=headers) as ws:
        if path == LINK_PATH:  # an agent's link: the agent speaks first, with its hello
            ws.send(b"{}")
        first = json.loads(ws.recv(timeout=5))
        if first.get("type") != "error":
            return 101, b""
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        body = json.dumps({"error": {k: first[k] for k in ("code", "message", "details")}})
        return closed.value.rcvd.code - 4000, body.encode()


async def _call(core: EngineCore, ctx: Context, op: Operation) -> None:
    if op.kind == "channel":
        async with core.dispatcher.channel(ctx, op, {"name": "nobody"}):
            pass
    elif op.kind == "stream":
        items: AsyncIterator[object] = core.dispatcher.stream(
            ctx, op, {"count": 1} if op.request else {}
        )
        async for _ in items:
            break
        await items.aclose()  # type: ignore[attr-defined]
    else:
        await core.dispatcher.call(ctx, op, {})


@pytest.mark.parametrize("granted", PERMISSION_SETS, ids=str)
def test_in_process_door(
    core: EngineCore, make_key: KeyFactory, granted: Permission | None
) -> None:
    identity = None
    if granted is not None:
        identity = core.auth.identity_for_key(load_private_key(make_key(granted).private).public)
        assert identity.permissions == granted
    ctx = Context(identity, client="local")
    for op in OPERATIONS.values():
        want = expected(op, granted)
        try:
            anyio.run(_call, core, ctx, op)
        except Unauthenticated:
            assert want == 401, op.name
        except PermissionDenied as exc:
            assert want == 403, (op.name, exc.message)
            assert exc.details["operation"] == op.name
        except ApiError as exc:
            assert want is None, (op.name, exc)
        else:
            assert want is None, op.name


def test_denials_are_audited(rest: RestClient, core: EngineCore, make_key: KeyFactory) -> None:
    pair = make_key(Permission.PLATFORM)
    record = core.keys.get(pair.private.stem)
    assert record is not None
    token = core.auth.issue(record, 600).token
    response = rest.get("/api/keys", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    rows = core.state.query("SELECT identity, operation, outcome, client FROM audit")
    denied = [r for r in rows if tuple(r)[:3] == (record.identity, "keys.list", "denied")]
    assert len(denied) == 1 and denied[0]["client"].startswith("127.0.0.1:")


CONDITIONAL = [
    (op, field, needed) for op in OPERATIONS.values() for field, needed in op.also_requires
]


def _probe(op: Operation, field: str) -> dict[str, object]:
    """A request that sets `field` and is otherwise valid (the check comes before the
    handler, which may then refuse it for its own reasons)."""
    assert op.request is not None
    payload: dict[str, object] = {field: "probe"}
    if op.name == "shells.create" and field == "workflow":
        payload["service"] = "probe"
    # The other required fields (a proxy's name), so that the request validates: the
    # matrix then grows by itself with operations whose requests need more than `field`.
    for name, spec in op.request.model_fields.items():
        if spec.is_required() and name not in op.path_params and name not in payload:
            payload[name] = "probe"
    return payload


def _in_process(op: Operation, payload: dict[str, object]) -> dict[str, object]:
    """The REST door takes path parameters from the path; in process they are fields."""
    return {**payload, **{name: "nobody" for name in op.path_params}}


@pytest.mark.parametrize(
    ("op", "field", "needed"), CONDITIONAL, ids=[f"{o.name}:{f}" for o, f, _ in CONDITIONAL]
)
def test_conditional_requirements(
    rest: RestClient, core: EngineCore, make_key: KeyFactory, op: Operation, field: str,
    needed: Permission,
) -> None:  # fmt: skip
    """`also_requires`: setting the field needs the extra permission, at both doors."""
    assert op.permission is not None
    for granted, refused in [
        (op.permission, True),
        (op.permission | needed, False),
        (Permission.MASTER, False),
    ]:
        pair = make_key(granted)
        identity = core.auth.identity_for_key(load_private_key(pair.private).public)
        record = core.keys.get(identity.name)
        assert record is not None
        headers = {"Authorization": f"Bearer {core.auth.issue(record, 600).token}"}
        body_fields = {k: v for k, v in _probe(op, field).items() if k not in op.path_params}
        status, body = rest.status(op.method, _path(op), headers=headers, json=body_fields)
        try:
            payload = _in_process(op, _probe(op, field))
            anyio.run(_call_with, core, Context(identity, client="local"), op, payload)
        except PermissionDenied as exc:
            assert refused and exc.details["permission"] == str(needed), (op.name, exc)
            assert f"with {field} needs {needed}" in exc.message
        except ApiError:
            assert not refused, op.name
        else:
            assert not refused, op.name
        if refused:
            assert status == 403 and str(needed) in json.loads(body)["error"]["message"]
        else:
            assert status not in (401, 403), (op.name, str(granted), status, body)
    for leftover in core.shells.list(core.local_context(), None).shells:
        anyio.run(core.shells.remove, core.local_context(), ShellRef(name=leftover.name))


async def _call_with(core: EngineCore, ctx: Context, op: Operation, payload: object) -> None:
    await core.dispatcher.call(ctx, op, payload)
