"""The depends_on graph: start-up waves and cycles."""

from __future__ import annotations

import pytest

from dxflow._core._compose import load_project
from dxflow._core._compose._graph import find_cycle, waves
from dxflow._exceptions import InvalidRequest


def test_independent_services_form_one_wave() -> None:
    assert waves({"c": [], "a": [], "b": []}) == [["a", "b", "c"]]


def test_waves_follow_dependencies() -> None:
    graph = {
        "web": ["api", "static"],
        "api": ["db", "cache"],
        "worker": ["db"],
        "db": [],
        "cache": [],
        "static": [],
    }
    assert waves(graph) == [["cache", "db", "static"], ["api", "worker"], ["web"]]


def test_a_diamond_waits_for_its_longest_branch() -> None:
    graph = {"top": ["left", "right"], "left": ["base"], "right": ["mid"], "mid": ["base"]}
    graph["base"] = []
    assert waves(graph) == [["base"], ["left", "mid"], ["right"], ["top"]]


def test_dependencies_outside_the_graph_are_ignored() -> None:
    assert waves({"a": ["gone"], "b": ["a"]}) == [["a"], ["b"]]


def test_cycles_are_found_and_named() -> None:
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> a"):
        waves({"a": ["b"], "b": ["a"], "c": []})


def test_a_loaded_project_orders_its_services() -> None:
    loaded = load_project(
        "shop",
        {
            "services": {
                "web": {"image": "w", "depends_on": {"api": {"condition": "service_healthy"}}},
                "api": {"image": "a", "depends_on": ["db"]},
                "db": {"image": "d"},
                "cache": {"image": "c"},
                "vpn": {"image": "v"},
                "tunnel": {"image": "t", "network_mode": "service:vpn"},
            }
        },
        process_env={},
    )
    assert loaded.order() == [["cache", "db", "vpn"], ["api", "tunnel"], ["web"]]


def test_a_cycle_is_rejected_at_load_naming_it() -> None:
    doc = {
        "services": {
            "a": {"image": "x", "depends_on": ["c"]},
            "b": {"image": "x", "depends_on": ["a"]},
            "c": {"image": "x", "depends_on": ["b"]},
        }
    }
    with pytest.raises(InvalidRequest) as caught:
        load_project("loop", doc, process_env={})
    assert str(caught.value) == "services.a.depends_on: dependency cycle: a -> c -> b -> a"
    assert caught.value.details["path"] == "services.a.depends_on"
    assert caught.value.details["cycle"] == ["a", "c", "b", "a"]
