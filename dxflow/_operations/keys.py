"""Keys: the registry of public keys that may call the engine (MASTER only)."""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import NoRequest, Operation

__all__ = ["GET", "LIST", "REGISTER", "ROTATE", "UNREGISTER", "UPDATE"]

_MASTER = Permission.MASTER

# fmt: off
LIST: Operation[NoRequest, m.KeyList] = Operation(
    "keys.list", "GET", "/api/keys", "Registered keys.", response=m.KeyList, permission=_MASTER)
GET: Operation[m.KeyRef, m.KeyInfo] = Operation(
    "keys.get", "GET", "/api/keys/{identity}", "One registered key.", request=m.KeyRef,
    response=m.KeyInfo, permission=_MASTER)
REGISTER: Operation[m.KeyRegister, m.KeyInfo] = Operation(
    "keys.register", "POST", "/api/keys", "Register a public key.", request=m.KeyRegister,
    response=m.KeyInfo, permission=_MASTER, mutating=True, idempotent=False, target="identity")
UNREGISTER: Operation[m.KeyRef, m.KeyInfo] = Operation(
    "keys.unregister", "DELETE", "/api/keys/{identity}",
    "Unregister a key; its tokens stop working at once.", request=m.KeyRef, response=m.KeyInfo,
    permission=_MASTER, mutating=True, target="identity")
UPDATE: Operation[m.KeyUpdate, m.KeyInfo] = Operation(
    "keys.update", "PATCH", "/api/keys/{identity}",
    "Change a key's permissions, run-as user or workflow policy.", request=m.KeyUpdate,
    response=m.KeyInfo, permission=_MASTER, mutating=True, target="identity")
ROTATE: Operation[m.KeyRotate, m.KeyInfo] = Operation(
    "keys.rotate", "POST", "/api/keys/{identity}/rotate",
    "Replace a key's public key; its tokens stop working at once.", request=m.KeyRotate,
    response=m.KeyInfo, permission=_MASTER, mutating=True, idempotent=False, target="identity")
# fmt: on
