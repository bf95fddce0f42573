"""The GIL hand-over while projects are parsed beside the event loop."""

from __future__ import annotations

import sys

from dxflow._core._workflows._parsing import LoopFirst


def test_short_interval_while_parsing_then_the_previous_one() -> None:
    before = sys.getswitchinterval()
    loop_first = LoopFirst()
    with loop_first():
        assert sys.getswitchinterval() <= 0.001
        with loop_first():  # a second parse at once keeps it short
            assert sys.getswitchinterval() <= 0.001
        assert sys.getswitchinterval() <= 0.001  # the first one still runs
    assert sys.getswitchinterval() == before


def test_a_failed_parse_restores_the_interval() -> None:
    before = sys.getswitchinterval()
    try:
        with LoopFirst()():
            raise ValueError("bad YAML")
    except ValueError:
        pass
    assert sys.getswitchinterval() == before
