"""YAML as Compose reads it: YAML 1.2 scalars, anchors, ``<<`` merges, no duplicate keys.

PyYAML speaks YAML 1.1, where ``no`` is false, ``22:22`` is the integer 1342 and
``2024-01-01`` is a date. Compose (go-yaml v3) reads those as strings, so this loader
resolves only the YAML 1.2 core schema: ``true``/``false``, ``null``/``~``, decimal,
``0o``/``0x`` and (like go-yaml) ``0755``-style octal integers, and floats.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ._errors import invalid

__all__ = ["parse_yaml"]

_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.startswith("0o"):
        return sign * int(body[2:], 8)
    if body.startswith("0x"):
        return sign * int(body[2:], 16)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body, 8)
    return sign * int(body)


_RESOLVERS: list[tuple[str, str, str]] = [
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", "~nN"),
    (
        "tag:yaml.org,2002:int",
        r"[-+]?(?:0|[1-9][0-9]*)|[-+]?0[0-7]+|0o[0-7]+|0x[0-9a-fA-F]+",
        "-+0123456789",
    ),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+.0123456789",
    ),
    (_MERGE, r"<<", "<"),
]
for _tag, _pattern, _first in _RESOLVERS:
    _Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), [*_first])
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile("^$"), [""])
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def parse_yaml(text: str) -> Any:
    """The document in `text`; InvalidRequest with the line and column when it is not YAML."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed document"
        if mark is None:
            raise invalid("", f"invalid YAML: {problem}") from None
        line, column = mark.line + 1, mark.column + 1
        raise invalid(
            "", f"invalid YAML at line {line}, column {column}: {problem}", line=line, column=column
        ) from None
    except yaml.YAMLError as exc:
        raise invalid("", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise invalid("", "invalid YAML: the document is nested too deeply") from None
