"""`engine.keys`: the key registry (MASTER only), async and blocking."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import _operations as ops
from .._display import Listing
from .._keypairs import KeyPair, KeyType, generate_key_pair
from .._models import KeyInfo
from .._permissions import DEFAULT_PERMISSIONS, Permission
from ._base import Blocking
from ._connect import read_public_key

if TYPE_CHECKING:
    from ._protocol import AsyncEngineLike

__all__ = ["AsyncKeys", "Keys"]

Permissions = Permission | str | Iterable[str]


def _names(permissions: Permissions) -> Any:
    # Names are checked by the request model, so a bad one is an InvalidRequest naming
    # the field, the same in-process and over HTTP.
    return permissions.names if isinstance(permissions, Permission) else permissions


def _register(
    public_key: str | os.PathLike[str],
    identity: str,
    permissions: Permissions,
    run_as: str | None,
    workflow_policy: str | None,
) -> dict[str, Any]:
    return {
        "identity": identity,
        "public_key": read_public_key(public_key),
        "permissions": _names(permissions),
        "run_as": run_as,
        "workflow_policy": workflow_policy,
    }


def _update(
    identity: str,
    permissions: Permissions | None,
    run_as: str | None,
    workflow_policy: str | None,
) -> dict[str, Any]:
    fields = {"permissions": None if permissions is None else _names(permissions)}
    fields |= {"run_as": run_as, "workflow_policy": workflow_policy}
    return {"identity": identity} | {k: v for k, v in fields.items() if v is not None}


class _KeyGeneration:
    @staticmethod
    def generate(path: str | os.PathLike[str], type: KeyType = "rsa", bits: int = 2048) -> KeyPair:
        """Write a new key pair on this machine: `path` (0600) and `path`.pub.

        Runs locally and needs no engine: register the public half with `register`.
        """
        return generate_key_pair(path, type, bits)


class AsyncKeys(_KeyGeneration):
    def __init__(self, engine: AsyncEngineLike) -> None:
        self._engine = engine

    async def list(self) -> list[KeyInfo]:
        return Listing((await self._engine._call(ops.keys.LIST)).keys)  # a table in Jupyter

    async def get(self, identity: str) -> KeyInfo:
        return await self._engine._call(ops.keys.GET, identity=identity)

    async def register(
        self,
        public_key: str | os.PathLike[str],
        identity: str,
        permissions: Permissions = DEFAULT_PERMISSIONS,
        *,
        run_as: str | None = None,
        workflow_policy: str | None = None,
    ) -> KeyInfo:
        fields = _register(public_key, identity, permissions, run_as, workflow_policy)
        return await self._engine._call(ops.keys.REGISTER, **fields)

    async def update(
        self,
        identity: str,
        *,
        permissions: Permissions | None = None,
        run_as: str | None = None,
        workflow_policy: str | None = None,
    ) -> KeyInfo:
        """Change a key; "" resets run_as or workflow_policy to the engine's default."""
        fields = _update(identity, permissions, run_as, workflow_policy)
        return await self._engine._call(ops.keys.UPDATE, **fields)

    async def unregister(self, identity: str) -> KeyInfo:
        return await self._engine._call(ops.keys.UNREGISTER, identity=identity)

    async def rotate(self, identity: str, public_key: str | os.PathLike[str]) -> KeyInfo:
        return await self._engine._call(
            ops.keys.ROTATE, identity=identity, public_key=read_public_key(public_key)
        )


class Keys(_KeyGeneration, Blocking[AsyncKeys]):
    """The blocking twin of `AsyncKeys`."""

    def list(self) -> list[KeyInfo]:
        return self._run(self._async.list)

    def get(self, identity: str) -> KeyInfo:
        return self._run(self._async.get, identity)

    def register(
        self,
        public_key: str | os.PathLike[str],
        identity: str,
        permissions: Permissions = DEFAULT_PERMISSIONS,
        *,
        run_as: str | None = None,
        workflow_policy: str | None = None,
    ) -> KeyInfo:
        return self._run(self._async.register, public_key, identity, permissions,
                         run_as=run_as, workflow_policy=workflow_policy)  # fmt: skip

    def update(
        self,
        identity: str,
        *,
        permissions: Permissions | None = None,
        run_as: str | None = None,
        workflow_policy: str | None = None,
    ) -> KeyInfo:
        """Change a key; "" resets run_as or workflow_policy to the engine's default."""
        return self._run(self._async.update, identity, permissions=permissions, run_as=run_as,
                         workflow_policy=workflow_policy)  # fmt: skip

    def unregister(self, identity: str) -> KeyInfo:
        return self._run(self._async.unregister, identity)

    def rotate(self, identity: str, public_key: str | os.PathLike[str]) -> KeyInfo:
        return self._run(self._async.rotate, identity, public_key)
