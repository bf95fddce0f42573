"""The workflow policy table: every Compose key and value the policy rules on, per profile.

Each row is a service (merged over a service that satisfies `restricted`) or a whole
document, and the expected outcome under privileged, baseline and restricted: allowed
(None) or refused with (key path, message fragment). Real files in a temporary engine
home; no Docker.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from dxflow import InvalidRequest, Permission, PermissionDenied
from dxflow._core._compose import load_project
from dxflow._core._context import Identity
from dxflow._core._workflows._policy import (
    MAX_MESSAGE,
    FileGuard,
    PolicyRoots,
    Violation,
    admit,
    check_exec_user,
    profile_for,
    refusal,
)

PROFILES = ("privileged", "baseline", "restricted")
SAFE = {
    "image": "busybox",
    "user": "1000:1000",
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
}
SECRET = "-----BEGIN PRIVATE KEY----- topsecret"
OK = None
OUTSIDE = "is outside the storage root and the engine's host_paths"
BIND = "is a bind mount; bind mounts are not allowed"
LEADS_OUT = "leads out of the storage root through a link"

Expected = tuple[str, str] | None


def _same(outcome: Expected, privileged: Any = OK) -> dict[str, Expected]:
    """Allowed under privileged, `outcome` under baseline and restricted."""
    return {"privileged": privileged, "baseline": outcome, "restricted": outcome}


# Allowed by the policy; the loader may still refuse the file's content (a key is no
# dotenv file): that is MASTER reading its own file, not a policy question.
READ = "read"


def _restricted(outcome: Expected) -> dict[str, Expected]:
    """Allowed under privileged and baseline, `outcome` under restricted."""
    return {"privileged": OK, "baseline": OK, "restricted": outcome}


def _bind(baseline: Expected, path: str = "services.s.volumes[0]") -> dict[str, Expected]:
    return {"privileged": OK, "baseline": baseline, "restricted": (path, BIND)}


ALLOWED = {"privileged": OK, "baseline": OK, "restricted": OK}
S = "services.s"

# (id, service keys merged over SAFE, expected by profile)
SERVICE_CASES: list[tuple[str, dict[str, Any], dict[str, Expected]]] = [
    ("plain", {}, ALLOWED),
    ("privileged", {"privileged": True}, _same((f"{S}.privileged", "True is not allowed"))),
    ("privileged-false", {"privileged": False}, ALLOWED),
    ("network-host", {"network_mode": "host"}, _same((f"{S}.network_mode", "host's network"))),
    (
        "network-container",
        {"network_mode": "container:other"},
        _same((f"{S}.network_mode", "does not own")),
    ),
    ("network-by-name", {"network_mode": "othernet"}, _same((f"{S}.network_mode", "by name"))),
    ("network-none", {"network_mode": "none"}, ALLOWED),
    ("network-bridge", {"network_mode": "bridge"}, ALLOWED),
    (
        "cap-sys-admin",
        {"cap_add": ["SYS_ADMIN"]},
        _same((f"{S}.cap_add[0]", "'SYS_ADMIN' is not")),
    ),
    ("cap-all", {"cap_add": ["ALL"]}, _same((f"{S}.cap_add[0]", "'ALL' is not"))),
    ("cap-prefixed", {"cap_add": ["cap_sys_ptrace"]}, _same((f"{S}.cap_add[0]", "is not"))),
    (
        "cap-default-chown",
        {"cap_add": ["CHOWN"]},
        _restricted((f"{S}.cap_add[0]", "only NET_BIND_SERVICE")),
    ),
    ("cap-net-raw", {"cap_add": ["NET_RAW"]}, _restricted((f"{S}.cap_add[0]", "only NET_BIND"))),
    ("cap-net-bind", {"cap_add": ["NET_BIND_SERVICE"]}, ALLOWED),
    ("devices", {"devices": ["/dev/sda"]}, _same((f"{S}.devices[0]", "maps a host device"))),
    ("gpus", {"gpus": "all"}, ALLOWED),
    (
        "gpu-reservation",
        {"deploy": {"resources": {"reservations": {"devices": [{"capabilities": ["gpu"]}]}}}},
        ALLOWED,
    ),
    ("bind-root", {"volumes": ["/:/host:ro"]}, _bind((f"{S}.volumes[0]", f"'/' {OUTSIDE}"))),
    (
        "bind-root-long",
        {"volumes": [{"type": "bind", "source": "/", "target": "/host"}]},
        _bind((f"{S}.volumes[0]", OUTSIDE)),
    ),
    (
        "bind-home",
        {"volumes": ["{home}:/h"]},
        _bind((f"{S}.volumes[0]", "contains the engine home")),
    ),
    (
        "bind-keys",
        {"volumes": ["{home}/keys:/k"]},
        _bind((f"{S}.volumes[0]", "inside the engine home")),
    ),
    ("bind-state", {"volumes": ["{home}/state.db:/s"]}, _bind((f"{S}.volumes[0]", "engine home"))),
    ("bind-storage", {"volumes": ["{storage}/data:/d"]}, _bind(OK)),
    ("bind-storage-root", {"volumes": ["{storage}:/d"]}, _bind((f"{S}.volumes[0]", "private"))),
    ("bind-private", {"volumes": ["{storage}/.dxflow:/p"]}, _bind((f"{S}.volumes[0]", "private"))),
    (
        "bind-missing",
        {"volumes": ["{storage}/nothing:/d"]},
        _bind((f"{S}.volumes[0]", "never created")),
    ),
    (
        "bind-symlink-out",
        {"volumes": ["{storage}/out:/d"]},
        _bind((f"{S}.volumes[0]", "resolves to")),
    ),
    ("bind-nul", {"volumes": ["{storage}/a\0b:/d"]}, _bind((f"{S}.volumes[0]", "NUL byte"))),
    ("env-file-nul", {"env_file": "{storage}/a\0b"}, _same((f"{S}.env_file", "NUL"), READ)),
    ("bind-host-path", {"volumes": ["{host_path}:/d"]}, _bind(OK)),
    ("bind-outside", {"volumes": ["{outside}:/d"]}, _bind((f"{S}.volumes[0]", OUTSIDE))),
    (
        "docker-socket",
        {"volumes": ["/var/run/docker.sock:/s"]},
        _bind((f"{S}.volumes[0]", "Docker socket")),
    ),
    (
        "docker-socket-run",
        {"volumes": ["/run/docker.sock:/s"]},
        _bind((f"{S}.volumes[0]", "Docker socket")),
    ),
    ("socket-folder", {"volumes": ["/var/run:/r"]}, _bind((f"{S}.volumes[0]", "Docker socket"))),
    ("named-volume", {"volumes": ["data:/d"]}, ALLOWED),
    ("tmpfs", {"tmpfs": ["/t"]}, ALLOWED),
    ("tmpfs-long", {"volumes": [{"type": "tmpfs", "target": "/t"}]}, ALLOWED),
    ("build-storage", {"build": "{storage}/ctx"}, ALLOWED),
    ("build-home", {"build": "{home}"}, _same((f"{S}.build.context", "contains the engine home"))),
    (
        "build-keys",
        {"build": "{home}/keys"},
        _same((f"{S}.build.context", "inside the engine home")),
    ),
    ("build-outside", {"build": "{outside}"}, _same((f"{S}.build.context", OUTSIDE))),
    (
        "build-dockerfile-out",
        {"build": {"context": "{storage}/ctx", "dockerfile": "../../keys/x"}},
        _same((f"{S}.build.dockerfile", "outside the build context")),
    ),
    ("build-remote", {"build": "https://example.com/repo.git"}, ALLOWED),
    ("build-missing", {"build": "{storage}/nodir"}, _same((f"{S}.build.context", "never created"))),
    (
        "seccomp-unconfined",
        {"security_opt": ["no-new-privileges:true", "seccomp=unconfined"]},
        _same((f"{S}.security_opt[1]", "unconfines")),
    ),
    (
        "apparmor-unconfined",
        {"security_opt": ["no-new-privileges:true", "apparmor=unconfined"]},
        _same((f"{S}.security_opt[1]", "unconfines")),
    ),
    (
        "label-disable",
        {"security_opt": ["no-new-privileges:true", "label=disable"]},
        _same((f"{S}.security_opt[1]", "unconfines")),
    ),
    (
        "label-disable-colon",
        {"security_opt": ["no-new-privileges:true", "label:disable"]},
        _same((f"{S}.security_opt[1]", "unconfines")),
    ),
    (
        "systempaths-unconfined",
        {"security_opt": ["no-new-privileges:true", "systempaths=unconfined"]},
        _same((f"{S}.security_opt[1]", "unconfines")),
    ),
    (
        "apparmor-default",
        {"security_opt": ["no-new-privileges:true", "apparmor=docker-default"]},
        ALLOWED,
    ),
    (
        "nnp-false",
        {"security_opt": ["no-new-privileges:false"]},
        _restricted((f"{S}.security_opt", "must include no-new-privileges")),
    ),
    ("nnp-missing", {"security_opt": []}, _restricted((f"{S}.security_opt", "no-new-privileges"))),
    ("nnp-bare", {"security_opt": ["no-new-privileges"]}, ALLOWED),
    ("user-missing", {"user": None}, _restricted((f"{S}.user", "must be set to a non-root user"))),
    ("user-root", {"user": "root"}, _restricted((f"{S}.user", "'root' is root"))),
    ("user-zero", {"user": "0"}, _restricted((f"{S}.user", "is root"))),
    ("user-zero-group", {"user": "0:1000"}, _restricted((f"{S}.user", "is root"))),
    ("user-named", {"user": "app"}, ALLOWED),
    ("user-group-zero", {"user": "1000:0"}, ALLOWED),
    ("cap-drop-missing", {"cap_drop": []}, _restricted((f"{S}.cap_drop", "must drop ALL"))),
    ("cap-drop-some", {"cap_drop": ["NET_RAW"]}, _restricted((f"{S}.cap_drop", "must drop ALL"))),
    ("env-file-storage", {"env_file": "{storage}/app.env"}, ALLOWED),
    (
        "env-file-key",
        {"env_file": "{home}/keys/master.pem"},
        _same((f"{S}.env_file", "engine home"), READ),
    ),
    (
        "env-file-key-list",
        {"env_file": ["{storage}/app.env", "{home}/keys/master.pem"]},
        _same((f"{S}.env_file[1]", "inside the engine home"), READ),
    ),
    (
        "env-file-long",
        {"env_file": [{"path": "{outside}/x.env", "required": True}]},
        _same((f"{S}.env_file[0]", OUTSIDE)),
    ),
    # privileged: the loader refuses a file of /proc (422), whoever names it
    ("env-file-proc", {"env_file": "/proc/self/environ"}, _same((f"{S}.env_file", OUTSIDE), READ)),
    (
        "env-file-symlink",  # a link in storage is never followed out of it, even privileged
        {"env_file": "{storage}/key.env"},
        _same((f"{S}.env_file", "resolves to"), (f"{S}.env_file", LEADS_OUT)),
    ),
    ("ports", {"ports": ["127.0.0.1:8080:80"]}, ALLOWED),
    ("ulimits", {"ulimits": {"nofile": 1024}}, ALLOWED),
    ("extra-hosts", {"extra_hosts": ["a:10.0.0.1"]}, ALLOWED),
    # The engine's own labels (owner, project): a key other than MASTER never sets them.
    (
        "label-engine",
        {"labels": {"io.dxflow.engine": "other"}},
        _same((f"{S}.labels.io.dxflow.engine", "'other' is a reserved label")),
    ),
    (
        "label-engine-empty",  # "nobody's": out of reach of its own engine's down
        {"labels": ["io.dxflow.engine="]},
        _same((f"{S}.labels.io.dxflow.engine", "'' is a reserved label")),
    ),
    (
        "label-workflow",
        {"labels": ["io.dxflow.workflow=theirs"]},
        _same((f"{S}.labels.io.dxflow.workflow", "reserved")),
    ),
    (
        "label-compose-project",
        {"labels": {"com.docker.compose.project": "theirs"}},
        _same((f"{S}.labels.com.docker.compose.project", "reserved")),
    ),
    (
        "label-compose-version",  # what tells docker compose's resources apart
        {"labels": {"com.docker.compose.version": "2.29.1"}},
        _same((f"{S}.labels.com.docker.compose.version", "reserved")),
    ),
    (
        "label-upper-case",
        {"labels": {"IO.DXFLOW.ENGINE": "other"}},
        _same((f"{S}.labels.IO.DXFLOW.ENGINE", "reserved")),
    ),
    ("label-own", {"labels": {"app.tier": "web", "io.dxflowish": "x", "io.dxflow": "x"}}, ALLOWED),
    (
        "label-service-engine",  # the Swarm service's labels say who owns it too
        {"deploy": {"labels": {"io.dxflow.engine": "other"}}},
        _same((f"{S}.deploy.labels.io.dxflow.engine", "'other' is a reserved label")),
    ),
    ("label-service-own", {"deploy": {"labels": ["app.tier=web"]}}, ALLOWED),
]

# (id, whole document, create options, expected by profile)
DOCUMENT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Expected]]] = [
    (
        "network-service-mode",
        {"services": {"s": {**SAFE, "network_mode": "service:t"}, "t": SAFE}},
        {},
        ALLOWED,
    ),
    (
        "network-driver-host",
        {"services": {"s": {**SAFE, "networks": ["n"]}}, "networks": {"n": {"driver": "host"}}},
        {},
        _same(("networks.n.driver", "host's network")),
    ),
    (
        "network-driver-macvlan",
        {
            "services": {"s": {**SAFE, "networks": ["n"]}},
            "networks": {"n": {"driver": "macvlan", "driver_opts": {"parent": "eth0"}}},
        },
        {},
        _same(("networks.n.driver", "host interface")),
    ),
    (
        "network-driver-bridge",
        {"services": {"s": {**SAFE, "networks": ["n"]}}, "networks": {"n": {"driver": "bridge"}}},
        {},
        ALLOWED,
    ),
    (
        "network-external-host",
        {
            "services": {"s": {**SAFE, "networks": ["n"]}},
            "networks": {"n": {"external": True, "name": "host"}},
        },
        {},
        _same(("networks.n.name", "host's network")),
    ),
    (
        "volume-driver-bind",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {"v": {"driver_opts": {"type": "none", "o": "bind", "device": "/"}}},
        },
        {},
        {
            "privileged": OK,
            "baseline": ("volumes.v.driver_opts.device", OUTSIDE),
            "restricted": ("volumes.v.driver_opts", BIND),
        },
    ),
    (
        "volume-driver-bind-storage",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {
                "v": {"driver_opts": {"type": "none", "o": "bind", "device": "{storage}/data"}}
            },
        },
        {},
        _restricted(("volumes.v.driver_opts", BIND)),
    ),
    (
        "volume-block-device",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {"v": {"driver_opts": {"type": "ext4", "device": "/dev/sda1"}}},
        },
        {},
        _same(("volumes.v.driver_opts.type", "'ext4' mounts a host device")),
    ),
    (
        "volume-overlay",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {
                "v": {"driver_opts": {"type": "overlay", "o": "lowerdir=/,upperdir=/u,workdir=/w"}}
            },
        },
        {},
        _same(("volumes.v.driver_opts.type", "'overlay' mounts a host device or folder")),
    ),
    (
        "volume-rbind",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {"v": {"driver_opts": {"type": "ext4", "o": "rbind,ro", "device": "/"}}},
        },
        {},
        {
            "privileged": OK,
            "baseline": ("volumes.v.driver_opts.device", OUTSIDE),
            "restricted": ("volumes.v.driver_opts", BIND),
        },
    ),
    (
        "volume-nfs",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {
                "v": {"driver_opts": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/export"}}
            },
        },
        {},
        ALLOWED,
    ),
    (
        "volume-tmpfs",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {"v": {"driver_opts": {"type": "tmpfs", "device": "tmpfs"}}},
        },
        {},
        ALLOWED,
    ),
    (
        "secret-outside",
        {"services": {"s": {**SAFE, "secrets": ["k"]}}, "secrets": {"k": {"file": "{outside}/k"}}},
        {},
        _same(("secrets.k.file", OUTSIDE)),
    ),
    (
        "secret-key",
        {
            "services": {"s": {**SAFE, "secrets": ["k"]}},
            "secrets": {"k": {"file": "{home}/keys/master.pem"}},
        },
        {},
        _same(("secrets.k.file", "inside the engine home")),
    ),
    (
        "config-storage",
        {
            "services": {"s": {**SAFE, "configs": ["c"]}},
            "configs": {"c": {"file": "{storage}/app.env"}},
        },
        {},
        ALLOWED,
    ),
    (
        "network-label-engine",
        {
            "services": {"s": {**SAFE, "networks": ["n"]}},
            "networks": {"n": {"labels": {"io.dxflow.engine": "other"}}},
        },
        {},
        _same(("networks.n.labels.io.dxflow.engine", "reserved label")),
    ),
    (
        "network-label-compose",
        {
            "services": {"s": {**SAFE, "networks": ["n"]}},
            "networks": {"n": {"labels": ["com.docker.compose.network=x"]}},
        },
        {},
        _same(("networks.n.labels.com.docker.compose.network", "reserved label")),
    ),
    (
        "volume-label-engine",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {"v": {"labels": {"io.dxflow.engine": "other"}}},
        },
        {},
        _same(("volumes.v.labels.io.dxflow.engine", "reserved label")),
    ),
    (
        "volume-label-own",
        {
            "services": {"s": {**SAFE, "volumes": ["v:/v"]}},
            "volumes": {"v": {"labels": {"backup": "daily"}}},
        },
        {},
        ALLOWED,
    ),
    ("working-dir-storage", {"services": {"s": SAFE}}, {"working_dir": "{storage}"}, ALLOWED),
    (
        "working-dir-home",
        {"services": {"s": SAFE}},
        {"working_dir": "{home}"},
        _same(("working_dir", "contains the engine home")),
    ),
    (
        "working-dir-outside",
        {"services": {"s": SAFE}},
        {"working_dir": "{outside}"},
        _same(("working_dir", OUTSIDE)),
    ),
    (
        "relative-bind-in-storage",
        {"services": {"s": {**SAFE, "volumes": ["./data:/d"]}}},
        {"working_dir": "{storage}"},
        _bind(OK),
    ),
    (
        "relative-bind-escapes",
        {"services": {"s": {**SAFE, "volumes": ["../keys:/d"]}}},
        {"working_dir": "{storage}"},
        _bind(("services.s.volumes[0]", "inside the engine home")),
    ),
    (
        "request-env-file-key",
        {"services": {"s": SAFE}},
        {"env_file": ["{home}/keys/master.pem"]},
        _same(("env_file", "inside the engine home"), READ),
    ),
    (
        "request-env-file-storage",
        {"services": {"s": SAFE}},
        {"env_file": ["{storage}/app.env"]},
        ALLOWED,
    ),
    (
        "default-dotenv-symlink",  # <working_dir>/.env read by default, a link to the key
        {"services": {"s": SAFE}},
        {"working_dir": "{storage}/dotenv"},
        _same(("env_file", "resolves to"), ("env_file", LEADS_OUT)),
    ),
    (
        "compose-path-key",
        "{home}/keys/master.pem",  # type: ignore[list-item]
        {},
        _same(("compose", "inside the engine home"), READ),
    ),
]

# Keys the loader does not support: refused for every profile (422), never reach Docker.
UNSUPPORTED = [
    ("pid", "host"),
    ("ipc", "host"),
    ("uts", "host"),
    ("userns_mode", "host"),
    ("cgroup", "host"),
    ("cgroup_parent", "/"),
    ("sysctls", {"net.ipv4.ip_forward": "1"}),
    ("volumes_from", ["other"]),
    ("device_cgroup_rules", ["a *:* rwm"]),
]


@pytest.fixture
def roots(tmp_path: Path) -> PolicyRoots:
    home = tmp_path / "home"
    storage = home / "storage"
    for folder in (home / "keys", storage / "data", storage / "ctx", storage / ".dxflow"):
        folder.mkdir(parents=True)
    (home / "keys" / "master.pem").write_text(SECRET + "\n")
    (home / "state.db").write_text("")
    (storage / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    (storage / "app.env").write_text("A=1\n")
    (storage / "out").symlink_to("/etc")
    (storage / "key.env").symlink_to(home / "keys" / "master.pem")
    (storage / "dotenv").mkdir()
    (storage / "dotenv" / ".env").symlink_to(home / "keys" / "master.pem")
    (tmp_path / "hostdata").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "k").write_text("x")
    (tmp_path / "outside" / "x.env").write_text("X=1\n")
    return PolicyRoots.create(storage, home, [str(tmp_path / "hostdata")])


def _fill(value: Any, places: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**places)
    if isinstance(value, dict):
        return {k: _fill(v, places) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_fill(v, places) for v in value]
    return value


def _places(roots: PolicyRoots) -> dict[str, str]:
    base = os.path.dirname(roots.home)
    return {
        "home": roots.home,
        "storage": roots.storage,
        "host_path": roots.host_paths[0],
        "outside": os.path.join(base, "outside"),
    }


def _admit(
    roots: PolicyRoots,
    profile: str,
    document: Any,
    options: dict[str, Any],
    everyone: bool | None = None,
) -> None:
    """`admit` as the table means it: the privileged column is MASTER's (unless
    `everyone` says otherwise)."""

    def load() -> Any:
        return load_project(
            "p",
            document,
            env_file=options.get("env_file"),
            working_dir=options.get("working_dir"),
        )

    everyone = profile == "privileged" if everyone is None else everyone
    admit("p", profile, roots, load, options.get("working_dir"), everyone=everyone)


def _check(roots: PolicyRoots, profile: str, document: Any, options: dict[str, Any], want: Any):
    places = _places(roots)
    document, options = _fill(document, places), _fill(options, places)
    if want is None:
        _admit(roots, profile, document, options)
        return
    if want == READ:
        with contextlib.suppress(InvalidRequest):
            _admit(roots, profile, document, options)
        return
    with pytest.raises(PermissionDenied) as caught:
        _admit(roots, profile, document, options)
    path, fragment = want
    message = caught.value.message
    assert f"{path}: " in message and fragment in message, message
    assert f"(policy {profile})" in message
    assert path in caught.value.details["violations"]
    assert "topsecret" not in message and "BEGIN PRIVATE" not in message


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    ("case", "keys", "expected"), SERVICE_CASES, ids=[c[0] for c in SERVICE_CASES]
)
def test_service_keys(
    roots: PolicyRoots, profile: str, case: str, keys: dict[str, Any], expected: Any
) -> None:
    document = {"services": {"s": {**SAFE, **keys}}, "volumes": {"data": {}}}
    _check(roots, profile, document, {}, expected[profile])


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    ("case", "document", "options", "expected"), DOCUMENT_CASES, ids=[c[0] for c in DOCUMENT_CASES]
)
def test_documents(
    roots: PolicyRoots, profile: str, case: str, document: Any, options: Any, expected: Any
) -> None:
    _check(roots, profile, document, options, expected[profile])


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("key", "value"), UNSUPPORTED, ids=[k for k, _ in UNSUPPORTED])
def test_unsupported_keys_are_refused_for_every_profile(
    roots: PolicyRoots, profile: str, key: str, value: Any
) -> None:
    document = {"services": {"s": {**SAFE, key: value}}}
    with pytest.raises(InvalidRequest, match=rf"services\.s\.{key}"):
        _admit(roots, profile, document, {})


def test_every_violation_is_listed(roots: PolicyRoots) -> None:
    places = _places(roots)
    service = {
        "image": "busybox",
        "privileged": True,
        "network_mode": "host",
        "cap_add": ["SYS_ADMIN"],
        "devices": ["/dev/sda"],
        "volumes": ["/:/host", "{home}:/h", "/var/run/docker.sock:/s"],
        "env_file": "{home}/keys/master.pem",
    }
    document = _fill({"services": {"s": service}}, places)
    with pytest.raises(PermissionDenied) as caught:
        _admit(roots, "baseline", document, {})
    paths = caught.value.details["violations"]
    assert paths == [
        "services.s.env_file",
        "services.s.privileged",
        "services.s.network_mode",
        "services.s.cap_add[0]",
        "services.s.devices[0]",
        "services.s.volumes[0]",
        "services.s.volumes[1]",
        "services.s.volumes[2]",
    ]
    assert "services.s.volumes[0]: '/' is outside the storage root" in caught.value.message
    assert "topsecret" not in caught.value.message
    assert caught.value.audit_detail.startswith("services.s.env_file: ")  # type: ignore[attr-defined]


def test_a_refused_file_is_never_opened(roots: PolicyRoots, tmp_path: Path) -> None:
    fifo = tmp_path / "outside" / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block the test forever
    document = {"services": {"s": {"image": "busybox", "env_file": str(fifo)}}}
    with pytest.raises(PermissionDenied, match=r"services\.s\.env_file"):
        _admit(roots, "baseline", document, {})


def test_a_link_planted_after_the_judgement_is_never_followed(
    roots: PolicyRoots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is opened from its allowed folder without following a link: one swapped in
    between the policy's judgement and the open (a container's race) is refused."""
    env_file = Path(roots.storage) / "race.env"
    env_file.write_text("A=1\n")
    judge = PolicyRoots.host_path_rule

    def judge_then_swap(self: PolicyRoots, path: str, **options: Any) -> str | None:
        rule = judge(self, path, **options)
        env_file.unlink()
        env_file.symlink_to(tmp_path / "outside" / "x.env")
        return rule

    monkeypatch.setattr(PolicyRoots, "host_path_rule", judge_then_swap)
    guard = FileGuard(roots, "baseline")
    assert guard(str(env_file), "env_file") is None  # refused: nothing was opened
    (violation,) = guard.violations
    assert violation.path == "env_file" and "reached without a link" in violation.rule


def test_privileged_reads_host_files_but_not_through_a_link_in_storage(
    roots: PolicyRoots, tmp_path: Path
) -> None:
    guard = FileGuard(roots, "privileged")
    fd = guard(str(tmp_path / "outside" / "x.env"), "env_file")  # MASTER's own host file
    assert fd is not None
    os.close(fd)
    fd = guard(os.path.join(roots.storage, "app.env"), "env_file")
    assert fd is not None
    os.close(fd)
    assert guard(os.path.join(roots.storage, "key.env"), "services.s.env_file") is None
    (violation,) = guard.violations
    assert "leads out of the storage root through a link" in violation.rule


def test_the_message_is_capped(roots: PolicyRoots) -> None:
    services = {f"s{i}": {"image": "busybox", "privileged": True} for i in range(500)}
    with pytest.raises(PermissionDenied) as caught:
        _admit(roots, "baseline", {"services": services}, {})
    assert len(caught.value.message) < MAX_MESSAGE + 600
    assert "more" in caught.value.message
    assert len(caught.value.details["violations"]) == 100


def test_a_privileged_key_is_no_master_for_the_engines_labels(roots: PolicyRoots) -> None:
    """A key registered `privileged` may run privileged containers, but its containers
    still cannot pass as another engine's: the labels are ownership, not host reach."""
    service = {"image": "busybox", "privileged": True}
    _admit(roots, "privileged", {"services": {"s": service}}, {}, everyone=False)
    labelled = {**service, "labels": {"io.dxflow.engine": "other", "app": "x"}}
    with pytest.raises(PermissionDenied) as caught:
        _admit(roots, "privileged", {"services": {"s": labelled}}, {}, everyone=False)
    message = caught.value.message
    assert caught.value.details["violations"] == ["services.s.labels.io.dxflow.engine"]
    assert "services.s.labels.io.dxflow.engine: 'other' is a reserved label" in message
    assert "(policy privileged)" in message
    assert "Fix: rename the labels that start with io.dxflow. or com.docker.compose." in message
    _admit(roots, "privileged", {"services": {"s": labelled}}, {}, everyone=True)  # MASTER


def test_refusal_names_path_value_rule() -> None:
    error = refusal("w", "baseline", [Violation("services.s.volumes[0]", "/", "is bad")])
    assert "services.s.volumes[0]: '/' is bad (policy baseline)" in error.message
    assert error.status == 403


@pytest.mark.parametrize(
    ("identity", "default", "profile"),
    [
        (Identity("m", Permission.MASTER), "restricted", "privileged"),
        (Identity("m", Permission.MASTER, workflow_policy="restricted"), "baseline", "privileged"),
        (Identity("w", Permission.WORKFLOW), "baseline", "baseline"),
        (Identity("w", Permission.WORKFLOW), "restricted", "restricted"),
        (
            Identity("w", Permission.WORKFLOW, workflow_policy="restricted"),
            "baseline",
            "restricted",
        ),
        (
            Identity("w", Permission.WORKFLOW, workflow_policy="privileged"),
            "baseline",
            "privileged",
        ),
        (None, "baseline", "privileged"),
    ],
)
def test_profile_for(identity: Identity | None, default: str, profile: str) -> None:
    assert profile_for(identity, default) == profile


@pytest.mark.parametrize(
    ("user", "profile", "refused"),
    [
        ("root", "restricted", True),
        ("0", "restricted", True),
        ("0:0", "restricted", True),
        ("1000", "restricted", False),
        (None, "restricted", False),
        ("root", "baseline", False),
        ("root", "privileged", False),
    ],
)
def test_exec_user(user: str | None, profile: str, refused: bool) -> None:
    assert bool(check_exec_user(user, profile)) is refused


def test_storage_outside_home(tmp_path: Path) -> None:
    """A storage root configured elsewhere: the home is entirely out of reach."""
    home, storage = tmp_path / "home", tmp_path / "data"
    (home / "storage").mkdir(parents=True)
    (storage / "x").mkdir(parents=True)
    roots = PolicyRoots.create(storage, home)
    assert roots.host_path_rule(str(storage / "x")) is None
    assert "inside the engine home" in (roots.host_path_rule(str(home / "storage")) or "")


def test_host_path_that_contains_the_home(tmp_path: Path) -> None:
    """An operator listing a folder above the home does not open the home."""
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    roots = PolicyRoots.create(home / "storage", home, [str(tmp_path)])
    assert "contains the engine home" in (roots.host_path_rule(str(tmp_path)) or "")
    assert "inside the engine home" in (roots.host_path_rule(str(home / "keys")) or "")
    (tmp_path / "shared").mkdir()
    assert roots.host_path_rule(str(tmp_path / "shared")) is None
