"""Turn request payloads into request models, with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ._exceptions import InvalidRequest
from ._models import Request

__all__ = ["invalid_request", "validate_request"]


def _field(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(body)"


def invalid_request(exc: ValidationError, what: str = "request") -> InvalidRequest:
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        field = _field(error["loc"])
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        message = message.removeprefix("Value error, ")  # our validators speak for themselves
        errors.append({"field": field, "message": message})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return InvalidRequest(f"invalid {what}: {summary}", errors=errors)


def validate_request(model: type[Request] | None, payload: Any) -> Request | None:
    """Validate `payload` (a mapping, a model or None) against `model`."""
    if isinstance(payload, Request):
        payload = payload.model_dump(exclude_unset=True)
    if model is None:
        if payload:
            fields = ", ".join(sorted(payload)) if isinstance(payload, Mapping) else "(body)"
            raise InvalidRequest(
                f"invalid request: {fields}: unknown field (this operation takes no parameters)",
                errors=[{"field": f, "message": "unknown field"} for f in sorted(payload or {})],
            )
        return None
    if payload is not None and not isinstance(payload, Mapping):
        raise InvalidRequest("invalid request: (body): must be a JSON object")
    try:
        return model.model_validate(payload or {})
    except ValidationError as exc:
        raise invalid_request(exc) from None
