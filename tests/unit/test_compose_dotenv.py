"""Dotenv files as Compose reads them."""

from __future__ import annotations

import pytest

from dxflow._core._compose._dotenv import DotenvError, parse_dotenv


def test_definitions_comments_and_blank_lines() -> None:
    text = (
        "\ufeff# a comment\n"
        "\n"
        "PLAIN=value\n"
        "  SPACED = padded value  \n"
        "export EXPORTED=yes\n"
        "EMPTY=\n"
        "INLINE=kept # this comment goes\n"
        "HASH=a#b\n"
        "EQUALS=a=b=c\n"
        "dotted.key-name=ok\r\n"
    )
    assert parse_dotenv(text) == {
        "PLAIN": "value",
        "SPACED": "padded value",
        "EXPORTED": "yes",
        "EMPTY": "",
        "INLINE": "kept",
        "HASH": "a#b",
        "EQUALS": "a=b=c",
        "dotted.key-name": "ok",
    }


def test_quotes() -> None:
    text = (
        "SINGLE='literal $HOME \\n # not a comment'\n"
        'DOUBLE="tab\\there\\nnew \\"quoted\\" \\\\ \\$HOME"\n'
        "SPACES='  kept  '   # comment after the quote\n"
        'MULTI="first\n'
        'second"\n'
        "MULTI_SINGLE='a\n"
        "b'\n"
        'UNKNOWN_ESCAPE="\\d"\n'
    )
    assert parse_dotenv(text) == {
        "SINGLE": "literal $HOME \\n # not a comment",
        "DOUBLE": 'tab\there\nnew "quoted" \\ $HOME',
        "SPACES": "  kept  ",
        "MULTI": "first\nsecond",
        "MULTI_SINGLE": "a\nb",
        "UNKNOWN_ESCAPE": "\\d",
    }


def test_values_are_interpolated_against_earlier_variables() -> None:
    text = "A=1\nB=${A}2\nC=\"${B}3\"\nD='${A}'\nE=${UNSET:-fallback}\nF=$$A\n"
    assert parse_dotenv(text) == {
        "A": "1",
        "B": "12",
        "C": "123",
        "D": "${A}",
        "E": "fallback",
        "F": "$A",
    }


def test_lookup_wins_and_defaults_fill_in() -> None:
    lookup = {"A": "outer"}.get
    defaults = {"EARLIER": "from an earlier file"}.get
    text = "A=inner\nB=${A}\nC=${EARLIER}\nBARE_FOUND\nBARE_MISSING\n"
    env = {"BARE_FOUND": "looked up", **{"A": "outer"}}
    assert parse_dotenv(text, env.get, defaults) == {
        "A": "inner",
        "B": "outer",
        "C": "from an earlier file",
        "BARE_FOUND": "looked up",
    }
    assert parse_dotenv("B=${A}\n", lookup) == {"B": "outer"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("GOOD=1\nnot a definition\n", 2, "expected KEY=VALUE"),
        ("=value\n", 1, "expected KEY=VALUE"),
        ("1KEY=value\n", 1, "expected KEY=VALUE"),
        ("KEY='unterminated\nstill\n", 1, "missing closing ' quote"),
        ('KEY="a" trailing\n', 1, "unexpected text after the closing quote"),
        ("A=1\n\nB=${UNSET:?needed}\n", 3, "a required variable has no value"),
        ("A=${broken\n", 1, "invalid variable reference"),
    ],
)
def test_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(DotenvError) as caught:
        parse_dotenv(text)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n",
        "KEY='MIIEvQIBADANBgkq' MIIEvQIBADANBgkq\n",
        "KEY=${MIIEvQIBADANBgkq:?MIIEvQIBADANBgkq}\n",
        "KEY=${MIIEvQIBADANBgkq\n",
    ],
)
def test_errors_never_quote_the_file(text: str) -> None:
    """Any file may be given as an env file: a parse error names the line, not its text."""
    with pytest.raises(DotenvError) as caught:
        parse_dotenv(text)
    assert "BEGIN" not in str(caught.value) and "MIIE" not in str(caught.value)
    assert str(caught.value).startswith("line 1: ")
