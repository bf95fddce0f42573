"""load_project: inputs, defaults, explain(), config_hash() and the YAML dialect."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dxflow._core._compose import KEYS, load_project, markdown_table
from dxflow._exceptions import InvalidRequest, NotFound

SIMPLE = "services:\n  web:\n    image: nginx:${TAG:-latest}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- inputs -------------------------------------------------------------------------------


def test_a_path_as_str_or_pathlike_sets_config_files_and_working_dir(tmp_path: Path) -> None:
    compose = write(tmp_path / "app" / "compose.yaml", SIMPLE)
    for given in (compose, str(compose)):
        project = load_project("app", given, process_env={}).project
        assert project.config_files == [str(compose)]
        assert project.working_dir == str(compose.parent)


def test_yaml_text_and_dicts_work_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    from_text = load_project("app", SIMPLE, process_env={}).project
    document: dict[str, Any] = {"services": {"web": {"image": "nginx:${TAG:-latest}"}}}
    from_dict = load_project("app", document, process_env={}).project
    assert from_text == from_dict
    assert from_text.working_dir == str(tmp_path)
    assert from_text.config_files == []
    assert from_text.services["web"].image == "nginx:latest"
    assert document == {"services": {"web": {"image": "nginx:${TAG:-latest}"}}}  # untouched


def test_an_explicit_working_dir_wins_and_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = write(tmp_path / "files" / "compose.yaml", "services: {web: {build: ./src}}\n")
    monkeypatch.chdir(tmp_path)
    project = load_project("app", compose, working_dir="elsewhere", process_env={}).project
    assert project.working_dir == str(tmp_path / "elsewhere")
    assert project.services["web"].build is not None
    assert project.services["web"].build.context == str(tmp_path / "elsewhere" / "src")


def test_a_missing_file_and_a_stray_word_are_explained(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"compose file not found: .*missing\.yaml"):
        load_project("app", tmp_path / "missing.yaml", process_env={})
    with pytest.raises(InvalidRequest, match="if this is a path, no such file exists"):
        load_project("app", "docker-compose", process_env={})


def test_the_process_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAG", "from-os")
    assert load_project("app", SIMPLE).project.services["web"].image == "nginx:from-os"
    assert load_project("app", SIMPLE, process_env={}).project.services["web"].image == (
        "nginx:latest"
    )


def test_the_default_env_file_is_the_dotenv_beside_the_compose_file(tmp_path: Path) -> None:
    compose = write(tmp_path / "compose.yaml", SIMPLE)
    write(tmp_path / ".env", "TAG=from-dotenv\n")
    other = write(tmp_path / "other.env", "TAG=from-other\n")

    def image(**kwargs: Any) -> str | None:
        return load_project("app", compose, process_env={}, **kwargs).project.services["web"].image

    assert image() == "nginx:from-dotenv"
    assert image(env_file=other) == "nginx:from-other"
    assert image(env_file=[]) == "nginx:latest"


def test_with_yaml_text_the_dotenv_of_an_explicit_working_dir_is_read(tmp_path: Path) -> None:
    write(tmp_path / ".env", "TAG=from-dotenv\n")
    loaded = load_project("app", SIMPLE, working_dir=tmp_path, process_env={})
    assert loaded.project.services["web"].image == "nginx:from-dotenv"


def test_the_workflow_name_wins_over_the_files_name() -> None:
    doc = "name: from-file\nservices: {web: {image: nginx}}\n"
    project = load_project("from-argument", doc, process_env={}).project
    assert project.name == "from-argument"
    assert project.networks["default"].name == "from-argument_default"
    for bad in ("Upper", "-dash", "has space", "", "dot.ted"):
        with pytest.raises(InvalidRequest, match="invalid project name") as caught:
            load_project(bad, doc, process_env={})
        assert caught.value.details["path"] == "name"


# --- host files: what is read, and what a reload watches -----------------------------------


def test_every_file_looked_at_is_stamped_and_a_change_is_seen(tmp_path: Path) -> None:
    own = write(tmp_path / "own.env", "A=1\n")
    document = {"services": {"web": {"image": "nginx", "env_file": [str(own)]}}}
    loaded = load_project("app", document, working_dir=tmp_path, process_env={})
    paths = [path for path, _ in loaded.files]
    assert paths == [str(tmp_path / ".env"), str(own)]  # the default .env, missing, too
    assert dict(loaded.files)[str(tmp_path / ".env")] is None
    assert loaded.unchanged()
    write(own, "A=22\n")  # the service's own env file: rewritten
    assert not loaded.unchanged()
    loaded = load_project("app", document, working_dir=tmp_path, process_env={})
    write(tmp_path / ".env", "B=1\n")  # the default .env: made since
    assert not loaded.unchanged()


def test_only_regular_files_on_a_disk_are_read_as_env_files(tmp_path: Path) -> None:
    """A FIFO would block the load; /proc/self/environ is the engine's own environment."""
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    for env_file in (fifo, tmp_path):
        document = {"services": {"web": {"image": "nginx", "env_file": str(env_file)}}}
        with pytest.raises(InvalidRequest, match="not a regular file"):
            load_project("app", document, process_env={})
    with pytest.raises(InvalidRequest, match="kernel's proc file system") as caught:
        load_project("app", SIMPLE, env_file=["/proc/self/environ"], process_env={})
    assert "PATH" not in caught.value.message


# --- the YAML dialect ---------------------------------------------------------------------


def test_yaml_scalars_follow_yaml_1_2_as_compose_does() -> None:
    doc = """
services:
  web:
    image: nginx
    restart: no
    user: 1000:1000
    hostname: 2024-01-01
    ports: [22:22]
    environment: {ON: on, OFF: off, YES: yes, OCT: 0o17, OLD_OCT: 0755, HEX: 0x1F}
"""
    web = load_project("app", doc, process_env={}).project.services["web"]
    assert web.restart == "no"
    assert web.user == "1000:1000"
    assert web.hostname == "2024-01-01"
    assert (web.ports[0].published, web.ports[0].target) == ("22", 22)
    assert web.environment == {
        "ON": "on",
        "OFF": "off",
        "YES": "yes",
        "OCT": "15",
        "OLD_OCT": "493",
        "HEX": "31",
    }


def test_anchors_aliases_and_merge_keys_work() -> None:
    doc = """
x-defaults: &defaults
  image: base
  environment: {A: "1"}
services:
  one: *defaults
  two:
    <<: *defaults
    image: other
"""
    services = load_project("app", doc, process_env={}).project.services
    assert services["one"].image == "base"
    assert (services["two"].image, services["two"].environment) == ("other", {"A": "1"})


# --- explain ------------------------------------------------------------------------------


@pytest.fixture
def explained(tmp_path: Path) -> Any:
    compose = write(
        tmp_path / "compose.yaml",
        """
services:
  web:
    image: nginx
    env_file: [svc.env, svc2.env]
    environment:
      OWN: set-in-service
      FROM_PROJECT_BARE:
      BARE_UNSET:
  other:
    image: nginx
""",
    )
    write(tmp_path / "svc.env", "IN_FILE=first\nBOTH_FILES=first\n")
    write(tmp_path / "svc2.env", "BOTH_FILES=second\nOWN=overridden by environment\n")
    first = write(tmp_path / "first.env", "A=file1\nB=file1\nC=file1\nD=file1\n")
    second = write(tmp_path / "second.env", "D=file2\nFROM_PROJECT_BARE=file2\n")
    loaded = load_project(
        "app",
        compose,
        env={"A": "explicit"},
        env_file=[first, second],
        process_env={"A": "process", "B": "process"},
    )
    return loaded, tmp_path


def test_explain_names_the_project_source_that_won(explained: Any) -> None:
    loaded, folder = explained
    assert loaded.explain("web", "A") == ("explicit", "env")
    assert loaded.explain("web", "B") == ("process", "process")
    assert loaded.explain("web", "C") == ("file1", f"env_file:{folder / 'first.env'}")
    assert loaded.explain("web", "D") == ("file2", f"env_file:{folder / 'second.env'}")
    assert loaded.explain("web", "NOWHERE") == (None, "unset")


def test_explain_names_the_services_own_sources_first(explained: Any) -> None:
    loaded, folder = explained
    assert loaded.explain("web", "OWN") == ("set-in-service", "service.environment")
    assert loaded.explain("web", "IN_FILE") == ("first", f"service.env_file:{folder / 'svc.env'}")
    assert loaded.explain("web", "BOTH_FILES") == (
        "second",
        f"service.env_file:{folder / 'svc2.env'}",
    )
    # a bare entry takes the project's value, and its source
    assert loaded.explain("web", "FROM_PROJECT_BARE") == (
        "file2",
        f"env_file:{folder / 'second.env'}",
    )
    assert loaded.explain("web", "BARE_UNSET") == (None, "unset")
    assert loaded.project.services["web"].environment["BARE_UNSET"] is None
    # another service does not see web's own variables
    assert loaded.explain("other", "OWN") == (None, "unset")
    with pytest.raises(NotFound, match="no service 'nope'"):
        loaded.explain("nope", "A")


# --- config_hash --------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "services": {
        "web": {"image": "nginx:1.25", "ports": ["8080:80"], "depends_on": ["db"]},
        "db": {"image": "postgres:16"},
    }
}


def hashes(document: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    loaded = load_project("app", document, process_env={}, **kwargs)
    return {name: loaded.config_hash(name) for name in loaded.project.services}


def changed(**web: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(BASE))
    doc["services"]["web"].update(web)
    return doc


def test_config_hash_is_a_stable_sha256_of_the_canonical_service() -> None:
    loaded = load_project("app", BASE, process_env={})
    swarm_only = {"mode", "placement", "update_config", "rollback_config", "restart_policy",
                  "endpoint_mode", "labels"}  # fmt: skip
    data = loaded.project.services["db"].model_dump(
        mode="json",
        exclude={"depends_on": True, "profiles": True, "deploy": {"replicas", *swarm_only}},
    )
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert loaded.config_hash("db") == hashlib.sha256(canonical.encode()).hexdigest()
    assert hashes(BASE) == hashes(json.loads(json.dumps(BASE)))
    reordered = {"services": {"db": BASE["services"]["db"], "web": BASE["services"]["web"]}}
    assert hashes(reordered) == hashes(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"image": "nginx:1.26"},
        {"ports": ["8081:80"]},
        {"environment": {"A": "1"}},
        {"command": "nginx -g 'daemon off;'"},
        {"deploy": {"resources": {"limits": {"memory": "1g"}}}},
        {"healthcheck": {"test": "true"}},
        {"labels": ["a=b"]},
    ],
)
def test_config_hash_changes_with_the_services_config(change: dict[str, Any]) -> None:
    before, after = hashes(BASE), hashes(changed(**change))
    assert before["web"] != after["web"]
    assert before["db"] == after["db"]


def test_config_hash_follows_interpolated_values() -> None:
    doc = changed(image="nginx:${TAG}")
    assert hashes(doc, env={"TAG": "1"})["web"] != hashes(doc, env={"TAG": "2"})["web"]
    assert hashes(doc, env={"TAG": "1"})["web"] == hashes(doc, env={"TAG": "1"})["web"]


@pytest.mark.parametrize(
    "change",
    [
        {"deploy": {"replicas": 3}},
        {"scale": 2},
        {"depends_on": []},
        {"profiles": ["x"]},
        {"deploy": {"mode": "replicated-job", "endpoint_mode": "dnsrr", "labels": ["a=b"]}},
        {"deploy": {"placement": {"constraints": ["node.role == worker"]}}},
        {"deploy": {"update_config": {"order": "start-first"}, "rollback_config": {}}},
        {"deploy": {"restart_policy": {"condition": "none"}}},
    ],
)
def test_config_hash_ignores_what_never_recreates_a_container(change: dict[str, Any]) -> None:
    assert hashes(BASE)["web"] == hashes(changed(**change), profiles=["x"])["web"]


def test_config_hashes_are_what_they_were_before_the_cluster_deploy_keys() -> None:
    """The swarm-only deploy keys are left out: an upgrade recreates no container."""
    doc = json.loads(json.dumps(BASE))
    doc["services"]["web"]["deploy"] = {"resources": {"limits": {"memory": "1g", "cpus": "0.5"}}}
    doc["services"]["db"].update(restart="always", healthcheck={"test": "true", "interval": "5s"})
    assert hashes(doc) == {  # computed by the release before those keys existed
        "web": "77e1528002aac5156c12f6be2b235f2303c8400ca648d0e33308700229064234",
        "db": "ec18d24dc0e5180611ce41edf4927facf5605cd714f715ef0d142ffd7e15f05a",
    }


def test_config_hash_of_an_unknown_service_is_not_found() -> None:
    with pytest.raises(NotFound):
        load_project("app", BASE, process_env={}).config_hash("nope")


# --- the key table ------------------------------------------------------------------------


def test_the_key_table_is_well_formed_and_makes_the_docs_table() -> None:
    paths = [key.path for key in KEYS]
    assert len(paths) == len(set(paths))
    kinds = {"string", "integer", "number", "boolean", "list", "mapping", "null"}
    for key in KEYS:
        assert key.doc and set(key.types) <= kinds, key
    table = markdown_table()
    for key in KEYS:
        assert f"| `{key.path}` |" in table


def test_extension_keys_are_accepted_everywhere_and_dropped() -> None:
    doc = {
        "x-top": 1,
        "services": {
            "x-svc": {"anything": True},
            "web": {
                "image": "nginx",
                "x-web": [1],
                "healthcheck": {"test": "true", "x-h": 1},
                "deploy": {"x-d": 1, "resources": {"x-r": 1, "limits": {"x-l": 1}}},
            },
        },
        "networks": {"x-n": 1, "front": {"x-f": 1}},
    }
    project = load_project("app", doc, process_env={}).project
    assert list(project.services) == ["web"]
    assert list(project.networks) == ["front", "default"]
    assert os.path.isabs(project.working_dir)


def test_extension_keys_among_user_chosen_names_are_dropped_too() -> None:
    doc = {
        "services": {
            "web": {
                "image": "nginx",
                "ulimits": {"x-note": 5, "nofile": 10},
                "depends_on": {"x-note": {}},
                "networks": {"x-note": None, "default": None},
            }
        }
    }
    web = load_project("app", doc, process_env={}).project.services["web"]
    assert list(web.ulimits) == ["nofile"]
    assert web.depends_on == {}
    assert list(web.networks) == ["default"]


def test_alias_bombs_cycles_and_deep_nesting_are_refused_quickly() -> None:
    lines = ['a0: &a0 ["$X"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 20)]
    bomb = "\n".join(lines) + "\nservices: {web: {image: x}}\n"
    with pytest.raises(InvalidRequest, match="too large"):
        load_project("app", bomb, process_env={})
    cyclic: dict[str, Any] = {"services": {"web": {"image": "x"}}}
    cyclic["services"]["web"]["labels"] = cyclic
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        load_project("app", cyclic, process_env={})
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        load_project("app", "[" * 5000, process_env={})


def test_tilde_is_the_read_environments_home_only(tmp_path: Path) -> None:
    """A project that may not read the engine's environment (a non-MASTER caller's) does
    not learn the engine user's home through `~` either: it stays a relative path."""
    doc = {"services": {"web": {"image": "img", "volumes": ["~/data:/data"]}}}
    unread = load_project("app", doc, working_dir=tmp_path, process_env={}).project
    assert unread.services["web"].volumes[0].source == str(tmp_path / "~" / "data")
    read = load_project("app", doc, working_dir=tmp_path, process_env={"HOME": "/home/u"})
    assert read.project.services["web"].volumes[0].source == "/home/u/data"
