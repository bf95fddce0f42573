"""Share links name the server that really serves the home (issue 10).

Before, a link made in-process took its port from config.toml: with a server booted on
another port (`--port 0`, `DXFLOW_PORT`) it pointed at the wrong place, and with no
server at all it pointed at nothing. Now a link names the address the running server
bound, whichever door made it, and without a server it has no URL and a warning says to
run `dxflow boot up`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

import dxflow

from .conftest import Booted, boot
from .conftest import dxflow as run_cli

CONFIG_PORT = 9  # discard: nothing answers there, so a link naming it would never work


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'host = "127.0.0.1"\nport = {CONFIG_PORT}\n')
    yield home
    run_cli("boot", "down", "--home", home, check=False)


def _fetch(url: str) -> bytes:
    reply = httpx.get(url, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.content


def test_without_a_server_a_link_has_no_url_and_says_to_boot_one(home: Path) -> None:
    with dxflow.Engine(home=home) as engine:
        engine.objects.pipe("r/result.txt", b"forty-two\n")
        with pytest.warns(UserWarning, match="dxflow boot up") as caught:
            link = engine.objects.share("r/result.txt")
        assert link.url is None and link.id
        assert all(w.filename == "dxflow" for w in caught)  # no frame of the engine's loop
        assert [s.url for s in engine.objects.shares()] == [None]
        # Once a server serves the home (on a port of its own: 0), the same link works.
        booted = boot(home)
        assert not booted.url.endswith(f":{CONFIG_PORT}")
        (listed,) = engine.objects.shares()
        assert listed.id == link.id and listed.url is not None
        assert listed.url.startswith(booted.url + "/s/")
        assert _fetch(listed.url) == b"forty-two\n"


def _doors(booted: Booted) -> list[tuple[str, dict[str, object]]]:
    return [
        ("in-process", {"home": booted.home}),
        ("unix socket", {"url": f"unix://{booted.home / 'run' / 'engine.sock'}",
                         "key": booted.master_key}),
        ("tcp", {"url": booted.url, "key": booted.master_key}),
    ]  # fmt: skip


async def _share_async(options: dict[str, object]) -> dxflow.models.ShareLink:
    async with dxflow.AsyncEngine(**options) as engine:  # type: ignore[arg-type]
        return await engine.objects.share("r/result.txt")


@pytest.mark.parametrize("sdk", ["sync", "async"])
def test_a_link_names_the_running_server_whatever_door_made_it(home: Path, sdk: str) -> None:
    booted = boot(home)  # port 0: the port bound is not the one config.toml names
    assert not booted.url.endswith(f":{CONFIG_PORT}")
    with dxflow.Engine(home=home) as engine:
        engine.objects.pipe("r/result.txt", b"forty-two\n")
    for door, options in _doors(booted):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # a server runs: no warning
            if sdk == "async":
                link = anyio.run(_share_async, options)
            else:
                with dxflow.Engine(**options) as engine:  # type: ignore[arg-type]
                    link = engine.objects.share("r/result.txt")
        assert link.url is not None and link.url.startswith(booted.url + "/s/"), door
        assert _fetch(link.url) == b"forty-two\n", door


def test_a_server_on_every_interface_names_this_machine() -> None:
    """Nobody reaches 0.0.0.0 from elsewhere: the link names the machine instead."""
    import socket

    from dxflow._core._objects._shares import _reachable

    name = socket.gethostname()
    assert _reachable("http://0.0.0.0:7419") == f"http://{name}:7419"
    assert _reachable("https://[::]:7419") == f"https://{name}:7419"
    assert _reachable("http://127.0.0.1:7419") == "http://127.0.0.1:7419"
