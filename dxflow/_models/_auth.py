"""Models of authentication, keys and the audit log."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, field_validator

from .._permissions import DEFAULT_PERMISSIONS, Permission
from ._base import Request, Response

__all__ = [
    "AuditQuery",
    "AuditRecord",
    "AuditRecords",
    "Challenge",
    "KeyInfo",
    "KeyList",
    "KeyRef",
    "KeyRegister",
    "KeyRotate",
    "KeyUpdate",
    "Token",
    "TokenRequest",
    "Verify",
    "WhoAmI",
    "WorkflowPolicyName",
]

MIN_LIFETIME = 60
MAX_LIFETIME = 24 * 3600
Lifetime = Field(3600, ge=MIN_LIFETIME, le=MAX_LIFETIME, description="token lifetime in seconds")
_IDENTITY = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
_USER = r"^[a-z_][a-z0-9_-]{0,31}\$?$"
RunAs = Field(
    None,
    pattern=_USER,
    description="the OS user this key's host shells run as (default: the engine's run_as)",
)
WorkflowPolicyName = Literal["privileged", "baseline", "restricted"]
# The schema names the canonical form (upper-case names); the validator also takes
# "shell,object" and lower case, as the CLI and the SDK accept them.
PermissionNames = Annotated[
    list[str],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"enum": [p.name for p in Permission if p.name]},
            "description": "permission names",
        }
    ),
]
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _permissions(value: object) -> list[str]:
    if isinstance(value, Permission):
        return value.names
    if isinstance(value, str | list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("permissions must be names")
        return Permission.parse(value).names
    raise ValueError("permissions must be a list of names or a comma-separated string")


class Challenge(Response):
    nonce: str
    expires_at: datetime
    message: str = Field(description="the exact bytes to sign, UTF-8 encoded")


class Verify(Request):
    identity: str = Field(
        min_length=1,
        max_length=128,
        description="the key's registered identity, or its fingerprint (SHA256:...)",
    )
    nonce: str = Field(min_length=16, max_length=128)
    signature: str = Field(min_length=16, max_length=4096, description="base64 signature")
    lifetime: int = Lifetime


class TokenRequest(Request):
    lifetime: int = Lifetime


class Token(Response):
    token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name
    identity: str
    permissions: list[str]
    expires_at: datetime


class WhoAmI(Response):
    identity: str
    permissions: list[str]
    engine_id: str


class KeyInfo(Response):
    identity: str
    key_type: str
    fingerprint: str
    permissions: list[str]
    created_at: datetime
    rotated_at: datetime | None = None
    public_key: str
    run_as: str | None = None
    workflow_policy: str | None = None


class KeyList(Response):
    keys: list[KeyInfo]


class KeyRef(Request):
    identity: str = Field(min_length=1, max_length=128, pattern=_IDENTITY)


class KeyRegister(Request):
    identity: str = Field(min_length=1, max_length=128, pattern=_IDENTITY)
    public_key: str = Field(min_length=32, max_length=16384, description="PEM or OpenSSH text")
    permissions: PermissionNames = Field(default_factory=lambda: DEFAULT_PERMISSIONS.names)
    run_as: str | None = RunAs
    workflow_policy: WorkflowPolicyName | None = Field(
        None, description="the workflow policy profile (default: the engine's workflow_policy)"
    )

    @field_validator("permissions", mode="before")
    @classmethod
    def _parse_permissions(cls, value: object) -> list[str]:
        return _permissions(value)


class KeyUpdate(Request):
    """Change a registered key; a field left out keeps its value, "" resets it to the default."""

    identity: str = Field(min_length=1, max_length=128, pattern=_IDENTITY)
    permissions: PermissionNames | None = None
    run_as: str | None = Field(None, pattern=r"^$|" + _USER)
    workflow_policy: WorkflowPolicyName | Literal[""] | None = None

    @field_validator("permissions", mode="before")
    @classmethod
    def _parse_permissions(cls, value: object) -> list[str] | None:
        return None if value is None else _permissions(value)


class KeyRotate(Request):
    identity: str = Field(min_length=1, max_length=128, pattern=_IDENTITY)
    public_key: str = Field(min_length=32, max_length=16384)


class AuditQuery(Request):
    since: datetime | None = Field(None, description="ISO 8601 time")
    identity: str | None = None
    operation: str | None = None
    limit: int = Field(100, ge=1, le=10000)

    @field_validator("since", mode="before")
    @classmethod
    def _iso_only(cls, value: object) -> object:
        # pydantic would read "0.5" as epoch seconds; the documented form is ISO 8601.
        if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.match(value)):
            raise ValueError("expected an ISO 8601 time such as 2026-01-31T12:00:00Z")
        return value


class AuditRecord(Response):
    id: int
    time: datetime
    identity: str | None
    operation: str
    target: str | None
    outcome: str
    client: str | None
    detail: str | None = None


class AuditRecords(Response):
    records: list[AuditRecord]
