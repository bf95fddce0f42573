"""The short `ports:` syntax is read strictly: a malformed entry is an error, never a
wider binding (``127.0.0.1:18090:8000:9`` once published port 8000 on every address)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dxflow import InvalidRequest
from dxflow._core._compose import check_build_contexts, load_project


def _ports(*entries: object) -> list[tuple[str | None, str | None, int, str]]:
    document = {"services": {"web": {"image": "img", "ports": list(entries)}}}
    project = load_project("app", document, process_env={}).project
    return [(p.host_ip, p.published, p.target, p.protocol) for p in project.services["web"].ports]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (80, [(None, None, 80, "tcp")]),
        ("80", [(None, None, 80, "tcp")]),
        ("8080:80", [(None, "8080", 80, "tcp")]),
        ("8000:9", [(None, "8000", 9, "tcp")]),
        ("127.0.0.1:8080:80", [("127.0.0.1", "8080", 80, "tcp")]),
        ("127.0.0.1::80", [("127.0.0.1", None, 80, "tcp")]),
        ("127.0.0.1:53:53/udp", [("127.0.0.1", "53", 53, "udp")]),
        ("[::1]:8080:80", [("::1", "8080", 80, "tcp")]),
        ("::1:8080:80/sctp", [("::1", "8080", 80, "sctp")]),
        ("[::]:8080:80", [("::", "8080", 80, "tcp")]),
        ("9000-9001:80-81", [(None, "9000", 80, "tcp"), (None, "9001", 81, "tcp")]),
    ],
)
def test_accepted_forms(entry: object, expected: list[object]) -> None:
    assert _ports(entry) == expected


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("127.0.0.1:18090:8000:9", "bad host IP '127.0.0.1:18090'"),
        ("1.2.3.4.5:80:80", "bad host IP '1.2.3.4.5'"),
        ("localhost:80:80", "bad host IP 'localhost'"),
        (":80:80", "bad host IP ''"),
        (":80", "empty host port"),
        ("[127.0.0.1]:80:80", "not an IPv6 address"),
        ("[::1]:80", "bad port '[::1]:80'"),
        ("[::1:80:80", "bad port"),
        ("80:80:80:80", "bad host IP '80:80'"),
        ("http:80", "bad host port 'http'"),
        ("80:http", "bad container port 'http'"),
        ("0:80", "ports are 1-65535"),
        ("80:70000", "ports are 1-65535"),
        ("80/tcp/udp", "bad protocol"),
        ("9000-9002:80-81", "ranges differ in size"),
    ],
)
def test_malformed_entries_are_errors_naming_the_entry(entry: str, why: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _ports("8080:80", entry)
    assert caught.value.message.startswith("services.web.ports[1]: ")
    assert why in caught.value.message
    assert caught.value.details["path"] == "services.web.ports[1]"
    if "IP" in why or "bad port" in why or "empty" in why:
        assert "accepted: CONTAINER, HOST:CONTAINER, IP:HOST:CONTAINER" in caught.value.message


def test_long_syntax_host_ip_must_be_an_address() -> None:
    assert _ports({"target": 80, "published": "8080", "host_ip": "[::1]"})[0][0] == "::1"
    with pytest.raises(InvalidRequest, match=r"services.web.ports\[0\].host_ip: bad host IP"):
        _ports({"target": 80, "host_ip": "127.0.0.1:9"})


def test_a_missing_build_context_is_refused(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "file").write_text("")
    good = {"services": {"a": {"build": "./app"}, "b": {"build": "https://example.com/x.git"}}}
    check_build_contexts(load_project("p", good, working_dir=tmp_path, process_env={}).project)
    for context, why in (("./nodir", "does not exist"), ("./file", "is not a folder")):
        bad = {"services": {"a": {"build": {"context": context}}}}
        loaded = load_project("p", bad, working_dir=tmp_path, process_env={})  # still loads
        with pytest.raises(InvalidRequest) as caught:
            check_build_contexts(loaded.project)
        assert caught.value.details["path"] == "services.a.build.context"
        assert f"{tmp_path / context[2:]} {why}" in caught.value.message
