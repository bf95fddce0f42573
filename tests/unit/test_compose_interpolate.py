"""Compose variable interpolation: every operator, escapes, nesting, errors."""

from __future__ import annotations

import pytest

from dxflow._core._compose._interpolate import InterpolationError, interpolate, interpolate_tree
from dxflow._exceptions import InvalidRequest

VARS = {"SET": "value", "EMPTY": "", "OTHER": "other"}


def sub(text: str, variables: dict[str, str] | None = None) -> str:
    return interpolate(text, (VARS if variables is None else variables).get)


@pytest.mark.parametrize(
    ("template", "result"),
    [
        ("plain text", "plain text"),
        ("$SET", "value"),
        ("${SET}", "value"),
        ("$SET-suffix and $SET.x", "value-suffix and value.x"),
        ("${SET}suffix", "valuesuffix"),
        ("[$UNSET]", "[]"),
        ("[${UNSET}]", "[]"),
        ("[${EMPTY}]", "[]"),
        # :- default when unset or empty; - default only when unset
        ("${SET:-d}", "value"),
        ("${EMPTY:-d}", "d"),
        ("${UNSET:-d}", "d"),
        ("${SET-d}", "value"),
        ("[${EMPTY-d}]", "[]"),
        ("${UNSET-d}", "d"),
        # :+ alternative when set and non-empty; + when set
        ("${SET:+alt}", "alt"),
        ("[${EMPTY:+alt}]", "[]"),
        ("[${UNSET:+alt}]", "[]"),
        ("${SET+alt}", "alt"),
        ("${EMPTY+alt}", "alt"),
        ("[${UNSET+alt}]", "[]"),
        # ? / :? give the value when it is there
        ("${SET:?err}", "value"),
        ("${SET?err}", "value"),
        ("[${EMPTY?err}]", "[]"),
        # $$ is a literal $, never the start of a variable
        ("$$", "$"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("a $$ b $$$SET", "a $ b $value"),
        # nested words
        ("${UNSET:-${OTHER}}", "other"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-a-${SET}-b}", "a-value-b"),
        ("${UNSET:-$SET}", "value"),
        ("${SET:+[${OTHER}]}", "[other]"),
        ("${UNSET:-with $$ dollar}", "with $ dollar"),
        ("${UNSET:-}", ""),
        ("${UNSET:-a:b-c?d+e}", "a:b-c?d+e"),
        ("${UNSET:-{json}}", "{json}"),
        ("${lower_case}", ""),
        ("${_under9}", ""),
    ],
)
def test_interpolation(template: str, result: str) -> None:
    assert sub(template) == result


def test_words_are_evaluated_lazily_like_a_shell() -> None:
    assert sub("${SET:-${UNSET:?never raised}}") == "value"
    assert sub("${UNSET:+${UNSET:?never raised}}") == ""


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${UNSET:?set it please}", "required variable UNSET is missing a value: set it please"),
        ("${EMPTY:?no empties}", "required variable EMPTY is missing a value: no empties"),
        ("${UNSET?needed}", "required variable UNSET is missing a value: needed"),
        ("${UNSET:?}", "required variable UNSET is missing a value"),
        ("${UNSET:?needs ${SET}}", "required variable UNSET is missing a value: needs value"),
        ("${UNSET:-${INNER:?inner missing}}", "required variable INNER is missing a value"),
    ],
)
def test_required_variables(template: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$")) as caught:
        sub(template)
    assert caught.value.variable in ("UNSET", "EMPTY", "INNER")


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("${", "must be followed by a variable name"),
        ("${}", "must be followed by a variable name"),
        ("${SET", "missing '}'"),
        ("${SET:-unclosed", "missing '}'"),
        ("${UNSET:-${NESTED}", "missing '}'"),
        ("${SET:x}", "unexpected ':'"),
        ("${SET x}", "unexpected ' '"),
        ("${1ABC}", "must be followed by a variable name"),
        ("price 5$", "'$' must be followed by a name"),
        ("$1", "'$' must be followed by a name"),
        ("a $ b", "'$' must be followed by a name"),
    ],
)
def test_malformed_templates(template: str, why: str) -> None:
    with pytest.raises(InterpolationError, match="invalid interpolation format") as caught:
        sub(template)
    assert why in str(caught.value)


def test_the_tree_interpolates_values_never_keys_and_names_the_path() -> None:
    doc = {"services": {"${SET}": {"image": "${SET}", "command": ["a", "$OTHER", 1, None]}}}
    assert interpolate_tree(doc, VARS.get) == {
        "services": {"${SET}": {"image": "value", "command": ["a", "other", 1, None]}}
    }
    with pytest.raises(InvalidRequest) as caught:
        interpolate_tree({"services": {"web": {"ports": ["80", "${P:?port}"]}}}, VARS.get)
    assert caught.value.details == {"path": "services.web.ports[1]", "variable": "P"}
    assert str(caught.value) == (
        "services.web.ports[1]: required variable P is missing a value: port"
    )
