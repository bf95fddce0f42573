"""Base classes of the wire models: requests forbid unknown fields, responses ignore them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Request", "Response"]


class Request(BaseModel):
    """A request body or query: an unknown field is an error naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Response(BaseModel):
    """A response: unknown fields are ignored so old clients keep working on newer engines."""

    model_config = ConfigDict(extra="ignore", defer_build=True)
