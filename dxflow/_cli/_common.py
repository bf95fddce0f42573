"""What every command shares: --json, --url, --key, --home, TLS trust, opening the
engine through the SDK (with a cached token), and turning dxflow errors into one
`error: ...` line that names the command line's own flags.

Nothing here imports pydantic, httpx or cryptography: a command pays for them only
when it opens an engine.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from .._exceptions import ApiError, DxflowError, UsageError
from ._lean import normalize_url

__all__ = [
    "Options",
    "check_since",
    "cli_message",
    "engine_command",
    "fail",
    "handle_errors",
    "normalize_url",
]

F = TypeVar("F", bound=Callable[..., Any])

# The SDK argument an error's `option` detail names -> what to type instead.
_FLAGS = {"overwrite": "--overwrite", "recursive": "-r", "parents": "leave out --no-parents"}
_SDK_HINT = re.compile(r"\s*\(pass [^)]*\)")


@dataclass
class Options:
    json: bool
    url: str | None
    key: str | None
    home: str | None
    verify: bool | str
    bridge: str | None = None
    """An agent of the engine named: the command acts on it, through that master."""

    def engine(self, timeout: float = 30.0) -> Any:
        """The engine named by --url/--key/--home, reusing a cached token."""
        from .._api.engine import Engine

        if self.url:
            url = normalize_url(self.url)
            if not self.key:
                raise UsageError(
                    f"--url {self.url} needs a key to sign in with: add --key FILE "
                    "(a private key the engine has registered) or set DXFLOW_KEY"
                )
            key = self.key
        else:
            from .._api._connect import home_args

            args = home_args(self.home)
            url, key = args["url"], self.key or str(args["key"])
        transport = _transport(url, key, self.verify, timeout)
        if self.bridge:
            transport = transport.bridged(self.bridge)
            url = f"{url}/api/bridges/{self.bridge}"
        return Engine(url, transport=transport)


def _transport(url: str, key: str, verify: bool | str, timeout: float) -> Any:
    from .._tokens import DeferredKey, TokenCache, read_key_bytes
    from .._transports._http import HttpTransport

    key_bytes = read_key_bytes(key)
    signer = DeferredKey(key)
    if os.stat(signer.path).st_mode & 0o077:  # let the key loader say what to fix
        signer.load()
    return HttpTransport(
        url, signer, verify=verify, timeout=timeout, token_cache=TokenCache.of(url, key_bytes)
    )


def check_since(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback for `--since`: an ISO 8601 time or a duration ago, else a usage
    error naming both forms (the value itself goes on to the SDK unchanged)."""
    if value is None:
        return None
    from .._durations import since_datetime

    try:
        since_datetime(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a time (2026-01-31T12:00:00) nor how long ago (90s, 15m, 1h, 2d)"
        ) from None
    return value


# A request field the engine refused -> the option of the running command that set it,
# where the names differ (a project command sends its -p as the workflow's `name`).
_FIELD_PARAMS = {"name": "project"}
# pydantic's wording -> a person's: "Input should be greater than or equal to 60"
_PYDANTIC = ((re.compile(r"^(Input|Value|String) should be "), "must be "),
             (re.compile(r"^String should match pattern '\^\[a-z0-9\]\[a-z0-9_-\]\*\$'$"),
              "must be lowercase letters, digits, '-' and '_', starting with a letter or digit"),
             (re.compile(r"^String should "), "must "))  # fmt: skip


def _in_flags(message: str, errors: list[Any]) -> str:
    """`invalid request: lifetime: Input should be ...` as `--lifetime 0: must be ...`
    when the refused field is an option of the command being run (else unchanged)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return message
    params = {param.name: param for param in ctx.command.params}
    parts = []
    for error in errors:
        field, text = str(error.get("field", "")), str(error.get("message", ""))
        param = params.get(field) or params.get(_FIELD_PARAMS.get(field, ""))
        if param is None or param.name is None:
            return message  # a field the user did not type: the engine's words stand
        for pattern, replacement in _PYDANTIC:
            text = pattern.sub(replacement, text)
        flag = max(param.opts, key=len) if isinstance(param, click.Option) else param.name.upper()
        value = ctx.params.get(param.name)
        parts.append(
            f"{flag} {value}: {text}" if value not in (None, (), "") else f"{flag}: {text}"
        )
    return "; ".join(parts) + f" (see `{ctx.command_path} --help`)"


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {_strip_error(message)}", err=True)
    sys.exit(code)


def _strip_error(message: str) -> str:
    """No `error: error: ...`: a message that says it is an error already loses that."""
    while message.lower().startswith("error:"):
        message = message[len("error:") :].lstrip()
    return message


def cli_message(exc: DxflowError, home: str | None = None) -> str:
    """The error's message in the command line's words: its flags, not SDK arguments."""
    message = exc.message
    details = exc.details if isinstance(exc, ApiError) else {}
    option = details.get("option")
    if isinstance(option, str) and option in _FLAGS:
        message = f"{_SDK_HINT.sub('', message)} ({_FLAGS[option]})"
    if isinstance(details.get("errors"), list):
        message = _in_flags(message, details["errors"])
    if details.get("reason") == "unreachable":
        message += (
            "; is the engine running there (`dxflow boot status` on its machine, "
            "`dxflow boot up` starts it) and is --url right?"
        )
    if details.get("reason") == "tls_verify":
        from .._config import Home

        cert = Home.resolve(home).tls_dir / "cert.pem"
        head = message.split("; pass the engine's certificate", 1)[0]
        message = (
            f"{head}; trust the engine's certificate with --ca-cert {cert} (or DXFLOW_CA_CERT; "
            "copy it from the engine's home when it runs elsewhere), or skip the check "
            "with --insecure"
        )
    return message


@contextmanager
def handle_errors(as_json: bool, home: str | None = None) -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        fail(cli_message(exc, home), 2)
    except ApiError as exc:
        if as_json:
            from .._wire import envelope

            click.echo(__import__("json").dumps(envelope(exc)), err=True)
            sys.exit(1)
        fail(cli_message(exc, home))
    except DxflowError as exc:
        fail(cli_message(exc, home))


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
        "--ca-cert",
        envvar="DXFLOW_CA_CERT",
        type=click.Path(exists=True, dir_okay=False),
        help="Trust this CA for https (an engine's own: <home>/tls/cert.pem).",
    )
    @click.option("--insecure", is_flag=True, envvar="DXFLOW_INSECURE",
                  help="Skip TLS certificate verification.")  # fmt: skip
    @click.option("--bridge", envvar="DXFLOW_BRIDGE", metavar="AGENT",
                  help="Act on this agent of the engine, through it (its master).")  # fmt: skip
    @functools.wraps(function)
    def wrapper(
        as_json: bool,
        url: str | None,
        key: str | None,
        home: str | None,
        ca_cert: str | None,
        insecure: bool,
        bridge: str | None,
        **kwargs: Any,
    ) -> Any:
        verify: bool | str = False if insecure else (ca_cert or True)
        opts = Options(as_json, url, key, home, verify, bridge)
        with handle_errors(as_json, home):
            return function(opts, **kwargs)

    return wrapper  # type: ignore[return-value]
