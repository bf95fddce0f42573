"""Key commands: generate (local), register, list, unregister, rotate (MASTER)."""

from __future__ import annotations

from pathlib import Path

import click

from .._config import Home
from .._permissions import DEFAULT_PERMISSIONS, Permission
from ._common import Options, engine_command, handle_errors
from ._complete import key_identities
from ._output import emit_json, key_values, table

__all__ = ["key"]


@click.group()
def key() -> None:
    """Key pairs and the engine's key registry."""


@key.command()
@click.argument("name")
@click.option(
    "--type", "key_type", type=click.Choice(["rsa", "ed25519"]), default="rsa", show_default=True
)
@click.option("--bits", default=2048, show_default=True, help="RSA key size (>= 2048).")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Where to write (default <home>/keys).",
)
@click.option("--home", envvar="DXFLOW_HOME", help="Engine home (default ~/.dxflow).")
@click.option("--json", "as_json", is_flag=True)
def generate(
    name: str, key_type: str, bits: int, directory: str | None, home: str | None, as_json: bool
) -> None:
    """Write a new key pair NAME.pem (0600) and NAME.pub. Needs no engine."""
    from .._keypairs import generate_key_pair

    folder = Path(directory) if directory else Home.resolve(home).keys_dir
    with handle_errors(as_json):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        pair = generate_key_pair(folder / f"{name}.pem", key_type, bits)  # type: ignore[arg-type]
    if as_json:
        return emit_json(
            {
                "private": str(pair.private),
                "public": str(pair.public),
                "fingerprint": pair.fingerprint,
            }
        )
    key_values(
        [("private", pair.private), ("public", pair.public), ("fingerprint", pair.fingerprint)]
    )


_RUN_AS = click.option(
    "--run-as", help="OS user the key's host shells run as (default: the engine's run_as)."
)
_POLICY = click.option(
    "--workflow-policy",
    type=click.Choice(["privileged", "baseline", "restricted", ""]),
    help="Workflow policy profile (default: the engine's workflow_policy; MASTER: privileged).",
)


def _parse_permissions(permissions: str) -> Permission:
    try:
        return Permission.parse(permissions)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--permissions") from None


def _show(info: object, as_json: bool) -> None:
    from .._models import KeyInfo

    assert isinstance(info, KeyInfo)
    if as_json:
        return emit_json(info)
    key_values(
        [
            ("identity", info.identity),
            ("type", info.key_type),
            ("fingerprint", info.fingerprint),
            ("permissions", info.permissions),
            ("run as", info.run_as or "(engine default)"),
            ("workflow policy", info.workflow_policy or "(engine default)"),
            ("created", info.created_at),
            ("rotated", info.rotated_at),
        ]
    )


@key.command()
@click.argument("public_key")
@click.option("--identity", required=True, help="The name this key authenticates as.")
@click.option(
    "--permissions",
    default=str(DEFAULT_PERMISSIONS),
    show_default=True,
    help="Comma-separated: SHELL, OBJECT, WORKFLOW, PROXY, BRIDGE, PLATFORM, READ_ONLY, MASTER.",
)
@_RUN_AS
@_POLICY
@engine_command
def register(
    opts: Options,
    public_key: str,
    identity: str,
    permissions: str,
    run_as: str | None,
    workflow_policy: str | None,
) -> None:
    """Register PUBLIC_KEY (a .pub file or PEM text) as IDENTITY."""
    parsed = _parse_permissions(permissions)
    with opts.engine() as engine:
        info = engine.keys.register(
            public_key, identity, parsed, run_as=run_as, workflow_policy=workflow_policy
        )
        _show(info, opts.json)


@key.command()
@click.argument("identity", shell_complete=key_identities)
@click.option("--permissions", help="The new permissions, comma-separated.")
@_RUN_AS
@_POLICY
@engine_command
def update(
    opts: Options,
    identity: str,
    permissions: str | None,
    run_as: str | None,
    workflow_policy: str | None,
) -> None:
    """Change IDENTITY's permissions, run-as user or workflow policy ("" resets one).

    Its open shells and streams are closed when its permissions change.
    """
    parsed = None if permissions is None else _parse_permissions(permissions)
    with opts.engine() as engine:
        info = engine.keys.update(
            identity, permissions=parsed, run_as=run_as, workflow_policy=workflow_policy
        )
        _show(info, opts.json)


@key.command("list")
@engine_command
def list_keys(opts: Options) -> None:
    """Registered keys."""
    with opts.engine() as engine:
        keys = engine.keys.list()
    if opts.json:
        return emit_json(keys)
    table(
        [(k.identity, k.key_type, k.fingerprint, k.permissions, k.created_at) for k in keys],
        ["identity", "type", "fingerprint", "permissions", "created"],
    )


@key.command()
@click.argument("identity", shell_complete=key_identities)
@engine_command
def unregister(opts: Options, identity: str) -> None:
    """Unregister IDENTITY; its tokens stop working at once."""
    with opts.engine() as engine:
        _show(engine.keys.unregister(identity), opts.json)


@key.command()
@click.argument("identity", shell_complete=key_identities)
@click.argument("new_public_key")
@engine_command
def rotate(opts: Options, identity: str, new_public_key: str) -> None:
    """Give IDENTITY a new public key; tokens of the old one stop working at once."""
    with opts.engine() as engine:
        _show(engine.keys.rotate(identity, new_public_key), opts.json)
