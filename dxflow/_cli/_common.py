"""What every command shares: --json, --url, --key, --home, --profile, TLS trust,
opening the engine through the SDK, and turning dxflow errors into exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .._exceptions import ApiError, DxflowError
from .._wire import envelope

__all__ = ["Options", "engine_command", "fail", "handle_errors"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    json: bool
    url: str | None
    key: str | None
    home: str | None
    verify: bool | str

    def engine(self) -> Any:
        from .._api.engine import Engine

        if self.url:
            return Engine(self.url, key=self.key, verify=self.verify)
        overrides = {"key": self.key} if self.key else {}
        return Engine.from_home(self.home, verify=self.verify, **overrides)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def handle_errors(as_json: bool) -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        if as_json:
            click.echo(__import__("json").dumps(envelope(exc)), err=True)
            sys.exit(1)
        fail(exc.message)
    except DxflowError as exc:
        fail(exc.message)


def engine_command(function: F) -> F:
    """Add the common options; the command receives `opts: Options` first."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
    @click.option(
        "--url", envvar="DXFLOW_URL", help="Engine URL (default: the local engine's socket)."
    )
    @click.option(
        "--key", envvar="DXFLOW_KEY", type=click.Path(dir_okay=False), help="Private key file."
    )
    @click.option("--home", envvar="DXFLOW_HOME", help="Engine home (default ~/.dxflow).")
    @click.option(
        "--ca-cert", type=click.Path(exists=True, dir_okay=False), help="Trust this CA for https."
    )
    @click.option("--insecure", is_flag=True, help="Skip TLS certificate verification.")
    @functools.wraps(function)
    def wrapper(
        as_json: bool,
        url: str | None,
        key: str | None,
        home: str | None,
        ca_cert: str | None,
        insecure: bool,
        **kwargs: Any,
    ) -> Any:
        verify: bool | str = False if insecure else (ca_cert or True)
        opts = Options(as_json, url, key, home, verify)
        with handle_errors(as_json):
            return function(opts, **kwargs)

    return wrapper  # type: ignore[return-value]
