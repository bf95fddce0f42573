"""Ownership rules of an engine on a shared Docker Engine, and where secret files go."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from dxflow import Conflict, PermissionDenied
from dxflow._core._compose import load_project
from dxflow._core._docker import Container
from dxflow._core._workflows._files import plan_files, remove_files
from dxflow._core._workflows._owners import Owners

ME = "dxf-mine"
OTHER = "dxf-other"
COMPOSE = {"com.docker.compose.project": "shop", "com.docker.compose.version": "2.29.1"}


def _row(name: str, **labels: str) -> Container:
    labels = {"com.docker.compose.project": "shop", **labels}
    return Container.from_row({"Id": name, "Names": [f"/{name}"], "Labels": labels})


@pytest.mark.parametrize(
    ("labels", "owned"),
    [
        ({"io.dxflow.engine": ME}, True),
        ({"io.dxflow.engine": OTHER}, False),
        ({"io.dxflow.engine": OTHER, "io.dxflow.workflow": "shop"}, False),
        ({"io.dxflow.workflow": "shop"}, True),  # made by dxflow before ownership labels
        ({"io.dxflow.workflow": "other"}, False),
        ({}, False),  # plain docker compose, or any other tool
        ({"com.docker.compose.version": "2.29.1"}, False),
    ],
)
def test_which_containers_an_engine_owns(labels: dict[str, str], owned: bool) -> None:
    assert Owners(ME).owns({"com.docker.compose.project": "shop", **labels}, "shop") is owned


@pytest.mark.parametrize(
    ("labels", "external", "owned"),
    [
        ({"io.dxflow.engine": ME}, False, True),
        ({"io.dxflow.engine": ME}, True, True),
        ({"io.dxflow.engine": OTHER}, False, False),
        ({"com.docker.compose.project": "shop"}, False, True),  # dxflow, before labels
        ({"com.docker.compose.project": "shop"}, True, False),  # external: never by name
        (COMPOSE, False, False),  # docker compose's
        ({"com.docker.compose.project": "other"}, False, False),
        ({}, True, False),  # `docker volume create data`: share it with a label
    ],
)
def test_which_networks_and_volumes_an_engine_owns(
    labels: dict[str, str], external: bool, owned: bool
) -> None:
    assert Owners(ME).owns_resource(labels, "shop", external) is owned


def test_foreign_containers_of_the_project_are_a_conflict_unless_master() -> None:
    owners = Owners(ME)
    rows = [_row("shop-web-1", **{"io.dxflow.engine": ME}), _row("shop-db-1", **COMPOSE)]
    with pytest.raises(Conflict) as caught:
        owners.check_project(False, "shop", rows)
    message = caught.value.message
    assert "'shop'" in message and "docker compose" in message and "shop-db-1" in message
    assert "another workflow name" in message
    assert owners.check_project(True, "shop", rows) == rows  # MASTER: Compose's rule
    mine = [rows[0]]
    assert owners.check_project(False, "shop", mine) == mine


def test_a_foreign_volume_is_refused_naming_the_key_and_the_fix() -> None:
    owners = Owners(ME)
    spec = SimpleNamespace(name="other_data", external=True)
    found = {"io.dxflow.engine": OTHER}
    with pytest.raises(PermissionDenied) as caught:
        owners.check_resource(False, "shop", "volume", "data", spec, found)
    assert caught.value.message.startswith("volumes.data: the volume 'other_data' belongs to")
    assert f"io.dxflow.engine={ME}" in caught.value.message
    owners.check_resource(True, "shop", "volume", "data", spec, found)  # MASTER may


def test_project_listing_owner() -> None:
    owners = Owners(ME)
    assert owners.owner({"io.dxflow.engine": OTHER}, True) == OTHER
    assert owners.owner({"io.dxflow.workflow": "shop"}, True) == ME
    assert owners.owner({"io.dxflow.workflow": "shop"}, False) is None
    assert owners.owner(COMPOSE, False) is None


def test_secrets_and_configs_plan(tmp_path: Path) -> None:
    (tmp_path / "db.txt").write_text("file secret")
    document = {
        "services": {
            "app": {
                "image": "img",
                "secrets": ["db", {"source": "token", "target": "tok", "mode": 0o400}],
                "configs": [{"source": "inline", "target": "/etc/app.ini"}, "from_env"],
            }
        },
        "secrets": {"db": {"file": "./db.txt"}, "token": {"environment": "TOKEN"}},
        "configs": {"inline": {"content": "x = ${X:-1}\n"}, "from_env": {"environment": "CFG"}},
    }
    loaded = load_project(
        "shop", document, env={"TOKEN": "t0k", "CFG": "c"}, working_dir=tmp_path, process_env={}
    )
    root = tmp_path / "private"
    files = plan_files(loaded, root)
    written = root / "shop" / "app"
    assert files.mounts["app"] == [
        (str(tmp_path / "db.txt"), "/run/secrets/db"),
        (str(written / "secrets" / "1-token"), "/run/secrets/tok"),
        (str(written / "configs" / "0-inline"), "/etc/app.ini"),
        (str(written / "configs" / "1-from_env"), "/from_env"),
    ]
    files.write()
    assert (written / "secrets" / "1-token").read_text() == "t0k"
    assert (written / "configs" / "0-inline").read_text() == "x = 1\n"
    assert stat.S_IMODE((written / "secrets" / "1-token").stat().st_mode) == 0o400
    assert stat.S_IMODE((written / "configs" / "0-inline").stat().st_mode) == 0o444
    for folder in (root, root / "shop", written, written / "secrets"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    remove_files(root, "shop")
    assert not (root / "shop").exists()


def test_an_unset_secret_variable_is_refused_at_load() -> None:
    from dxflow import InvalidRequest

    document = {
        "services": {"app": {"image": "img", "secrets": ["token"]}},
        "secrets": {"token": {"environment": "HOME"}},
    }
    with pytest.raises(InvalidRequest, match=r"secrets\.token\.environment: variable HOME"):
        load_project("shop", document, process_env={})  # not MASTER: no engine environment
    load_project("shop", document, process_env={"HOME": "/root"})
