"""Base classes of the wire models: requests forbid unknown fields, responses ignore them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Request", "Response"]


class Request(BaseModel):
    """A request body or query: an unknown field is an error naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Response(BaseModel):
    """A response: unknown fields are ignored so old clients keep working on newer engines.

    The ones people look at show as one short line (repr), as the CLI's text (print) and
    as an HTML table (Jupyter): see `dxflow._display`; the others look as pydantic's do.
    """

    model_config = ConfigDict(extra="ignore", defer_build=True)

    def __repr__(self) -> str:
        from .._display import summary_of

        return summary_of(self) or super().__repr__()

    def __str__(self) -> str:
        from .._display import text_of

        return text_of(self) or super().__str__()

    def _repr_html_(self) -> str | None:
        from .._display import html_of

        return html_of(self)
