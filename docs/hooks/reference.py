"""mkdocs hook: generate the CLI and REST references from the code, so they never drift.

``<!-- dxflow:cli -->`` becomes the help of every ``dxflow`` command (walked from the
click group), ``<!-- dxflow:openapi -->`` every operation of the OpenAPI document, and
the document itself is published beside the pages as ``openapi.json``.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

# Document the work tree next to this file, whatever dxflow is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CLI_MARKER = "<!-- dxflow:cli -->"
API_MARKER = "<!-- dxflow:openapi -->"
COMPOSE_MARKER = "<!-- dxflow:compose-keys -->"
Schema = dict[str, Any]


def _cell(text: object) -> str:
    """Text that is safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, or nothing when there are no rows."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) if rows else ""


def _code(value: object) -> str:
    return "" if value is None else f"`{value}`"


def _subcommands(ctx: click.Context) -> list[tuple[str, click.Command]]:
    if not isinstance(ctx.command, click.Group):
        return []
    found = [(name, ctx.command.get_command(ctx, name)) for name in ctx.command.list_commands(ctx)]
    return [(name, sub) for name, sub in found if sub is not None and not sub.hidden]


def _walk(ctx: click.Context) -> Iterator[click.Context]:
    """`ctx` and the contexts of all its subcommands, depth first, by name."""
    yield ctx
    for name, sub in _subcommands(ctx):
        yield from _walk(click.Context(sub, info_name=name, parent=ctx))


def _param_row(ctx: click.Context, param: click.Parameter) -> list[str]:
    if not isinstance(param, click.Option):
        required = "Required." if param.required else ""
        return [f"`{param.human_readable_name}`", "argument", "", "", required]
    names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
    value = "flag" if param.is_flag else param.make_metavar(ctx)
    default = param.get_default(ctx, call=False) if param.show_default else None
    text = (param.help or "") + (" **Required.**" if param.required else "")
    return [names, value, _code(default), _code(param.envvar), text]


def cli_reference() -> str:
    from dxflow._cli import cli

    out: list[str] = []
    for ctx in _walk(click.Context(cli, info_name="dxflow")):
        command = ctx.command
        usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
        help_text = inspect.cleandoc(command.help or "")
        out += [f"## {ctx.command_path}", "", f"```\n{usage}\n```", "", help_text, ""]
        rows = [_param_row(ctx, p) for p in command.get_params(ctx) if "--help" not in p.opts]
        out += [_table(["Option", "Value", "Default", "Environment", "Description"], rows), ""]
        anchor = ctx.command_path.replace(" ", "-")
        links = [
            [f"[`{name}`](#{anchor}-{name})", sub.get_short_help_str(200)]
            for name, sub in _subcommands(ctx)
        ]
        out += [_table(["Command", "What it does"], links), ""]
    return "\n".join(out)


_LIMITS = {"minimum": "≥", "maximum": "≤", "minLength": "length ≥", "maxLength": "length ≤"}
_LIMITS["pattern"] = "matches"


def _ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _type(schema: Schema) -> str:
    """A JSON schema as a short phrase; models link to their section under Models."""
    if name := _ref_name(schema):
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array" and "prefixItems" in schema:
        return "[" + ", ".join(_type(item) for item in schema["prefixItems"]) + "]"
    if kind == "array":
        return "list of " + _type(schema.get("items", {}))
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)


def _describe(schema: Schema) -> str:
    options = [schema, *schema.get("anyOf", [])]
    limits = [f"{word} `{o[key]}`" for o in options for key, word in _LIMITS.items() if key in o]
    return "; ".join(filter(None, [schema.get("description", ""), ", ".join(limits)]))


def _row(name: str, schema: Schema, required: bool) -> list[str]:
    default = _code(json.dumps(schema["default"])) if "default" in schema else ""
    return [f"`{name}`", _type(schema), "yes" if required else "", default, _describe(schema)]


def _fields(schema: Schema) -> str:
    required = set(schema.get("required", []))
    properties = schema.get("properties", {})
    rows = [_row(name, prop, name in required) for name, prop in properties.items()]
    return _table(["Field", "Type", "Required", "Default", "Description"], rows) or "No fields."


def _operation(method: str, path: str, op: Schema, schemas: Schema) -> list[str]:
    permission = op.get("x-dxflow-permission") or "any identity"
    for field, needed in op.get("x-dxflow-also-requires", {}).items():
        permission += f"; also `{needed}` when `{field}` is set"
    mutating = op.get("x-dxflow-mutating")
    facts = [
        ["Operation", f"`{op['operationId']}`"],
        ["Permission", permission if op.get("security") else "none (public)"],
        ["Mutating", "yes (refused to READ_ONLY, audited)" if mutating else "no"],
        ["Kind", op.get("x-dxflow-kind", "call")],
    ]
    out = [f"### {method.upper()} {path}", "", op["summary"], ""]
    out += [_table(["Property", "Value"], facts), ""]
    if params := op.get("parameters"):
        headers = ["In", "Name", "Type", "Required", "Default", "Description"]
        rows = [[p["in"], *_row(p["name"], p["schema"], p.get("required", False))] for p in params]
        out += ["**Parameters**", "", _table(headers, rows), ""]
    if body := op.get("requestBody"):
        if "application/json" in body["content"]:
            schema = body["content"]["application/json"]["schema"]
            out += ["**Request body** (JSON object)", "", _fields(schema), ""]
        else:
            out += ["**Request body**: the bytes (`application/octet-stream`), streamed", ""]
    if "101" in op["responses"]:  # a WebSocket
        out += [
            "**Response** `101`: a WebSocket; see [the protocol](shells.md#websocket-protocol)",
            "",
        ]
        return out
    media, content = next(iter(op["responses"]["200"]["content"].items()))
    model = _ref_name(content["schema"])
    if model is None:  # bytes, not a model: a download
        out += [f"**Response** `200` (`{media}`): the bytes; `206` for a `Range`", ""]
        return [*out, "**Errors**: any status of the error tree, as the "
                "[error envelope](authentication.md#errors).", ""]  # fmt: skip
    each = ", one per line" if media == "application/x-ndjson" else ""
    out += [f"**Response** `200` (`{media}`{each}): [{model}](#{model.lower()})", ""]
    out += [_fields(schemas[model]), ""]
    codes = [f"`{code}`" for code in op["responses"] if code not in ("200", "default")]
    which = ", ".join(codes) if codes else "any status of the error tree"
    out += [f"**Errors**: {which}, as the [error envelope](authentication.md#errors).", ""]
    return out


def api_reference(document: Schema) -> str:
    schemas = document["components"]["schemas"]
    out: list[str] = []
    tag = None
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            if op["tags"][0] != tag:
                tag = op["tags"][0]
                out += [f"## {tag}", ""]
            out += _operation(method, path, op, schemas)
    out += ["## Models", "", "Every schema of `components.schemas`, by name.", ""]
    for name in sorted(schemas):
        schema = schemas[name]
        out += [f"### {name}", "", schema.get("description", ""), "", _fields(schema), ""]
    return "\n".join(out)


def _document() -> Schema:
    from dxflow_server._openapi import openapi_document

    return openapi_document()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    document = json.dumps(_document(), indent=2)
    files.append(File.generated(config, "openapi.json", content=document))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, api_reference(_document()))
    if COMPOSE_MARKER in markdown:
        from dxflow._core._compose._supported import markdown_table

        markdown = markdown.replace(COMPOSE_MARKER, markdown_table())
    return markdown
