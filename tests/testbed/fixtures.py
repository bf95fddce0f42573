"""pytest fixtures of the test bed; a conftest.py imports them by name (as
tests/bridges/conftest.py does) to use them.

- `testbed_ready` (session): root, `ip netns`, `nsenter` and `iptables` work. Not a skip:
  the suite's test command runs as root with `scripts/setup.sh --dev` done, so a machine
  where this fails is a broken set-up, reported as a failure that says what is missing.
- `fabric` (per test): a factory, `fabric(["master", "a1", "a2"])` -> a started `Fabric`;
  every fabric made is closed at the test's end (processes killed, namespaces deleted).
- `make_ns_engine` (per test): a factory, `make_ns_engine(host)` -> a started `NsEngine`
  on a fresh home under `tmp_path` (`start=False`: not started); every engine is stopped
  at the test's end, before the fabrics are closed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .engines import NsEngine
from .netns import Fabric, Host, sh

__all__ = ["fabric", "make_ns_engine", "testbed_ready"]

FabricFactory = Callable[..., Fabric]
EngineFactory = Callable[..., NsEngine]


@pytest.fixture(scope="session")
def testbed_ready() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "the network-namespace test bed needs root (ip netns, veth pairs, iptables): "
            "run the tests as root"
        )
    missing = [tool for tool in ("ip", "iptables", "nsenter") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"the test bed needs {', '.join(missing)}: run `scripts/setup.sh --dev` "
            "(apt-get install -y iproute2 iptables util-linux)"
        )
    try:
        sh("ip", "netns", "list")
    except Exception as exc:
        pytest.fail(f"`ip netns list` does not work here: {exc}")


@pytest.fixture
def fabric(testbed_ready: None) -> Iterator[FabricFactory]:
    made: list[Fabric] = []

    def make(hosts: Sequence[str], subnet: str = "10.213.4") -> Fabric:
        fab = Fabric(hosts, subnet)
        made.append(fab)
        return fab.start()

    yield make
    for fab in reversed(made):
        fab.close()


@pytest.fixture
def make_ns_engine(fabric: FabricFactory, tmp_path: Path) -> Iterator[EngineFactory]:
    engines: list[NsEngine] = []

    def make(host: Host, *, start: bool = True, name: str | None = None, **kw: Any) -> NsEngine:
        home = tmp_path / (name or host.name)
        if home.exists():
            raise ValueError(f"an engine home {home} exists already: pass another name=")
        engine = NsEngine(host, home, **kw)
        engines.append(engine)
        if start:
            engine.start().wait_healthy()
        return engine

    yield make
    for engine in engines:
        engine.stop(timeout=10)
