"""_swarm_spec: a Compose service to a Swarm ServiceSpec, refusals, jobs, the runtime table."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dxflow._core._compose import KEYS, load_project, runtime_table
from dxflow._core._compose._runtimes import RUNTIME_NOTES
from dxflow._core._workflows._swarm_spec import is_job, refusals, service_spec
from dxflow._exceptions import InvalidRequest
from dxflow._models import ComposeProject

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
OWNER = {"io.dxflow.engine": "engine-1", "io.dxflow.workflow": "shop"}


def load(text: str, **env: str) -> ComposeProject:
    return load_project("shop", text, process_env=env).project


def spec(project: ComposeProject, name: str, **overrides: Any) -> dict[str, Any]:
    networks = {key: f"shop_{key}" for key in project.networks}
    secrets = {key: (f"id-{key}", f"shop_{key}") for key in project.secrets}
    configs = {key: (f"id-{key}", f"shop_{key}") for key in project.configs}
    arguments: dict[str, Any] = {
        "namespace": "shop",
        "labels": OWNER,
        "image": project.services[name].image or "registry:5000/shop-" + name,
        "networks": networks,
        "secrets": secrets,
        "configs": configs,
        **overrides,
    }
    return service_spec(project, name, **arguments)


def container(result: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = result["TaskTemplate"]["ContainerSpec"]
    return spec


def one(text: str, name: str = "app", **overrides: Any) -> dict[str, Any]:
    return spec(load(text), name, **overrides)


# --- the container ------------------------------------------------------------------------

FULL = """
services:
  app:
    image: example/app:1
    entrypoint: [/bin/entry]
    command: serve --port 80
    environment: {B: "2", A: "1"}
    working_dir: /srv
    user: "1000:1000"
    hostname: app-host
    labels: {tier: web, io.dxflow.engine: someone-else}
    tty: true
    stdin_open: true
    init: true
    stop_signal: SIGINT
    stop_grace_period: 1m
    extra_hosts: ["db.local:10.0.0.5", "v6.local:::1"]
    dns: [1.1.1.1]
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    ulimits: {nproc: 64, nofile: {soft: 1024, hard: 2048}}
    shm_size: 1g
    volumes:
      - data:/data:ro
      - ./conf:/etc/app
      - {type: tmpfs, target: /cache, tmpfs: {size: 64m}}
      - {type: volume, target: /scratch}
      - {type: volume, source: shared, target: /shared, volume: {nocopy: true}}
      - {type: volume, source: named, target: /named}
volumes:
  data: {labels: {kept: "yes"}, driver: local, driver_opts: {type: tmpfs, device: tmpfs}}
  shared: {external: true, name: cluster-shared}
  named: {name: fixed-name}
"""


def test_the_container_mirrors_compose() -> None:
    result = container(one(FULL))
    assert result["Image"] == "example/app:1"
    assert result["Command"] == ["/bin/entry"]  # the entrypoint, as docker stack
    assert result["Args"] == ["serve", "--port", "80"]
    assert result["Env"] == ["A=1", "B=2"]
    assert (result["Dir"], result["User"], result["Hostname"]) == ("/srv", "1000:1000", "app-host")
    assert (result["TTY"], result["OpenStdin"], result["Init"]) == (True, True, True)
    assert (result["StopSignal"], result["StopGracePeriod"]) == ("SIGINT", 60 * NS)
    assert result["Hosts"] == ["10.0.0.5 db.local", "::1 v6.local"]
    assert result["DNSConfig"] == {"Nameservers": ["1.1.1.1"]}
    assert (result["CapabilityAdd"], result["CapabilityDrop"]) == (["NET_ADMIN"], ["ALL"])
    assert result["Ulimits"] == [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        {"Name": "nproc", "Soft": 64, "Hard": 64},
    ]
    assert result["Isolation"] == "default"


def test_mounts_name_volumes_under_the_stack_and_carry_their_driver() -> None:
    mounts = container(one(FULL))["Mounts"]
    data, bind, tmpfs, anonymous, shared, named, shm = mounts
    assert data["Source"] == "shop_data" and data["ReadOnly"] is True
    assert data["VolumeOptions"] == {
        "NoCopy": False,
        "Labels": {"kept": "yes", "com.docker.stack.namespace": "shop", **OWNER},
        "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}},
    }
    assert bind["Type"] == "bind" and bind["Source"].endswith("/conf")
    assert tmpfs == {"Type": "tmpfs", "Target": "/cache", "ReadOnly": False,
                     "TmpfsOptions": {"SizeBytes": 64 * 2**20}}  # fmt: skip
    assert "Source" not in anonymous
    assert shared["Source"] == "cluster-shared"
    assert shared["VolumeOptions"] == {"NoCopy": True}  # external: never created here
    assert named["Source"] == "fixed-name"
    assert shm == {"Type": "tmpfs", "Target": "/dev/shm", "ReadOnly": False,
                   "TmpfsOptions": {"SizeBytes": 2**30, "Mode": 0o1777}}  # fmt: skip


def test_a_volume_is_named_under_the_namespace_given() -> None:
    result = one(FULL, namespace="other")
    assert container(result)["Mounts"][0]["Source"] == "other_data"
    assert result["Name"] == "other_app"


def test_unset_fields_are_spelled_out_with_the_engines_defaults() -> None:
    result = one("services: {app: {image: busybox}}")
    task = result["TaskTemplate"]
    spec = container(result)
    assert spec["StopGracePeriod"] == 10 * NS
    assert spec["DNSConfig"] == {} and spec["Hosts"] == [] and spec["Mounts"] == []
    assert "Init" not in spec and "Healthcheck" not in spec  # the daemon's, the image's
    assert task["RestartPolicy"] == {"Condition": "any", "Delay": 5 * NS, "MaxAttempts": 0,
                                     "Window": 0}  # fmt: skip
    assert task["Placement"] == {"Constraints": [], "Preferences": [], "MaxReplicas": 0,
                                 "Platforms": []}  # fmt: skip
    assert task["Resources"] == {
        "Limits": {"NanoCPUs": 0, "MemoryBytes": 0, "Pids": 0},
        "Reservations": {"NanoCPUs": 0, "MemoryBytes": 0, "GenericResources": []},
    }
    assert (task["ForceUpdate"], task["Runtime"]) == (0, "container")
    assert "LogDriver" not in task
    defaults = {"Parallelism": 1, "Delay": 0, "FailureAction": "pause", "Monitor": 5 * NS,
                "MaxFailureRatio": 0.0, "Order": "stop-first"}  # fmt: skip
    assert result["UpdateConfig"] == defaults and result["RollbackConfig"] == defaults
    assert result["Mode"] == {"Replicated": {"Replicas": 1}}
    assert result["EndpointSpec"] == {"Mode": "vip", "Ports": []}


def test_healthcheck_durations_are_nanoseconds() -> None:
    check = container(
        one("""
services:
  app:
    image: busybox
    healthcheck: {test: "true", interval: 1m30s, timeout: 500ms, retries: 3,
                  start_period: 2s, start_interval: 1s}
  off:
    image: busybox
    healthcheck: {disable: true}
""")
    )["Healthcheck"]
    assert check == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 90 * NS,
        "Timeout": NS // 2,
        "Retries": 3,
        "StartPeriod": 2 * NS,
        "StartInterval": NS,
    }
    off = load("services: {app: {image: busybox, healthcheck: {disable: true}}}")
    assert container(spec(off, "app"))["Healthcheck"] == {"Test": ["NONE"]}


# --- labels -------------------------------------------------------------------------------


def test_owner_labels_win_on_the_service_and_its_containers() -> None:
    result = one(
        """
services:
  app:
    image: busybox
    labels: {tier: web, io.dxflow.workflow: mine, io.dxflow.engine: theirs}
    deploy:
      labels: {team: a, io.dxflow.workflow: mine, com.docker.stack.namespace: x}
""",
        config_hash="abc",
    )
    assert result["Labels"] == {
        "team": "a",
        "com.docker.stack.namespace": "shop",
        "io.dxflow.config-hash": "abc",
        **OWNER,
    }
    assert container(result)["Labels"] == {
        "tier": "web",
        "com.docker.stack.namespace": "shop",
        **OWNER,
    }


def test_a_service_never_names_an_owner_the_engine_did_not() -> None:
    text = "services: {app: {image: busybox, labels: {io.dxflow.engine: theirs}}}"
    assert "io.dxflow.engine" not in container(one(text, labels={}))["Labels"]


# --- resources, mode, placement, update ---------------------------------------------------


def test_mem_limit_and_cpus_are_resources() -> None:
    result = one("""
services:
  app:
    image: busybox
    mem_limit: 512m
    cpus: 1.5
    gpus: 2
    deploy:
      resources:
        limits: {pids: 100}
        reservations: {cpus: "0.25", memory: 128m}
""")
    assert result["TaskTemplate"]["Resources"] == {
        "Limits": {"NanoCPUs": 1_500_000_000, "MemoryBytes": 512 * 2**20, "Pids": 100},
        "Reservations": {
            "NanoCPUs": 250_000_000,
            "MemoryBytes": 128 * 2**20,
            "GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}],
        },
    }


@pytest.mark.parametrize(
    ("deploy", "mode"),
    [
        ("scale: 3", {"Replicated": {"Replicas": 3}}),
        ("deploy: {replicas: 0}", {"Replicated": {"Replicas": 0}}),
        ("deploy: {mode: global}", {"Global": {}}),
        ("deploy: {mode: replicated-job, replicas: 4}",
         {"ReplicatedJob": {"MaxConcurrent": 4, "TotalCompletions": 4}}),
        ("deploy: {mode: global-job}", {"GlobalJob": {}}),
    ],
)  # fmt: skip
def test_modes(deploy: str, mode: dict[str, Any]) -> None:
    assert one(f"services: {{app: {{image: busybox, {deploy}}}}}")["Mode"] == mode


def test_placement_update_and_rollback_config() -> None:
    result = one("""
services:
  app:
    image: busybox
    deploy:
      placement:
        constraints: [node.role == worker]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      update_config: {parallelism: 2, delay: 10s, failure_action: rollback, monitor: 1m,
                      max_failure_ratio: 0.5, order: start-first}
      rollback_config: {parallelism: 0, failure_action: continue}
""")
    assert result["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.role == worker"],
        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
        "MaxReplicas": 2,
        "Platforms": [],
    }
    assert result["UpdateConfig"] == {"Parallelism": 2, "Delay": 10 * NS,
        "FailureAction": "rollback", "Monitor": 60 * NS, "MaxFailureRatio": 0.5,
        "Order": "start-first"}  # fmt: skip
    assert result["RollbackConfig"]["Parallelism"] == 0
    assert result["RollbackConfig"]["FailureAction"] == "continue"


# --- restart policy and jobs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "condition", "attempts"),
    [
        ("always", "any", 0),
        ("unless-stopped", "any", 0),
        ("on-failure", "on-failure", 0),
        ('"on-failure:3"', "on-failure", 3),
        ('"no"', "none", 0),
    ],
)
def test_restart_is_the_restart_policy(restart: str, condition: str, attempts: int) -> None:
    policy = one(f"services: {{app: {{image: busybox, restart: {restart}}}}}")["TaskTemplate"][
        "RestartPolicy"
    ]
    assert policy == {"Condition": condition, "Delay": 5 * NS, "MaxAttempts": attempts,
                      "Window": 0}  # fmt: skip


def test_deploy_restart_policy_wins_over_restart() -> None:
    text = """
services:
  app:
    image: busybox
    restart: always
    deploy: {restart_policy: {condition: on-failure, delay: 2s, max_attempts: 4, window: 1m}}
"""
    assert one(text)["TaskTemplate"]["RestartPolicy"] == {
        "Condition": "on-failure", "Delay": 2 * NS, "MaxAttempts": 4, "Window": 60 * NS,
    }  # fmt: skip


JOBS = """
services:
  migrate:
    image: busybox
  seed:
    image: busybox
    restart: "no"
  web:
    image: busybox
    depends_on:
      migrate: {condition: service_completed_successfully}
      cache: {condition: service_healthy}
  cache:
    image: busybox
  batch:
    image: busybox
    deploy: {mode: replicated-job, replicas: 3, restart_policy: {condition: on-failure}}
"""


def test_one_shot_services_are_jobs() -> None:
    project = load(JOBS)
    jobs = {name for name in project.services if is_job(project, name)}
    assert jobs == {"migrate", "seed", "batch"}


def test_a_job_has_no_update_config_and_never_restarts_on_success() -> None:
    project = load(JOBS)
    migrate = spec(project, "migrate")
    assert migrate["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    assert "UpdateConfig" not in migrate and "RollbackConfig" not in migrate
    assert migrate["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    batch = spec(project, "batch", replicas=5)
    assert batch["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 5, "TotalCompletions": 5}}
    assert batch["TaskTemplate"]["RestartPolicy"]["Condition"] == "on-failure"
    assert "UpdateConfig" in spec(project, "web")


def test_a_global_service_that_runs_once_is_a_global_job() -> None:
    text = 'services: {app: {image: busybox, restart: "no", deploy: {mode: global}}}'
    assert one(text)["Mode"] == {"GlobalJob": {}}


# --- networks, ports, secrets, configs ----------------------------------------------------


def test_networks_carry_the_service_name_and_its_aliases() -> None:
    result = one("""
services:
  app:
    image: busybox
    networks:
      front: {aliases: [www, app]}
      back:
networks: {front: {}, back: {}}
""")
    assert result["TaskTemplate"]["Networks"] == [
        {"Target": "shop_back", "Aliases": ["app"]},
        {"Target": "shop_front", "Aliases": ["app", "www"]},
    ]


def test_ports_and_endpoint_mode() -> None:
    result = one("""
services:
  app:
    image: busybox
    deploy: {endpoint_mode: dnsrr}
    ports:
      - {target: 80, published: 8080, mode: host}
      - {target: 53, protocol: udp, mode: host, name: dns}
""")
    assert result["EndpointSpec"] == {
        "Mode": "dnsrr",
        "Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishMode": "host", "PublishedPort": 8080},
            {"Protocol": "udp", "TargetPort": 53, "PublishMode": "host", "Name": "dns"},
        ],
    }
    ingress = one("services: {app: {image: busybox, ports: ['8080:80', '9090']}}")
    assert ingress["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress", "PublishedPort": 8080},
        {"Protocol": "tcp", "TargetPort": 9090, "PublishMode": "ingress"},  # Swarm picks
    ]


def test_secrets_and_configs_are_references() -> None:
    project = load(
        """
services:
  app:
    image: busybox
    secrets: [token, {source: key, target: /etc/key.pem, mode: 0400}]
    configs: [settings, {source: motd, target: motd.txt}]
secrets: {token: {environment: TOKEN}, key: {environment: TOKEN}}
configs: {settings: {content: "a=1"}, motd: {content: hi}}
""",
        TOKEN="t",
    )
    result = container(spec(project, "app"))
    assert result["Secrets"] == [
        {"File": {"Name": "/etc/key.pem", "UID": "0", "GID": "0", "Mode": 0o400},
         "SecretID": "id-key", "SecretName": "shop_key"},
        {"File": {"Name": "/run/secrets/token", "UID": "0", "GID": "0", "Mode": 0o444},
         "SecretID": "id-token", "SecretName": "shop_token"},
    ]  # fmt: skip
    assert result["Configs"] == [
        {"File": {"Name": "/motd.txt", "UID": "0", "GID": "0", "Mode": 0o444},
         "ConfigID": "id-motd", "ConfigName": "shop_motd"},
        {"File": {"Name": "/settings", "UID": "0", "GID": "0", "Mode": 0o444},
         "ConfigID": "id-settings", "ConfigName": "shop_settings"},
    ]  # fmt: skip


def test_an_unmapped_network_or_secret_is_a_key_error() -> None:
    project = load("services: {app: {image: busybox}}")
    with pytest.raises(KeyError, match="no Swarm network for 'default'"):
        spec(project, "app", networks={})
    with pytest.raises(KeyError, match="no service 'nope'"):
        service_spec(project, "nope", namespace="shop", labels={}, image="busybox",
                     networks={}, secrets={}, configs={})  # fmt: skip


# --- determinism and scale ----------------------------------------------------------------


def test_the_spec_is_deterministic_and_json() -> None:
    first, second = one(FULL), one(FULL)
    assert first == second
    assert json.loads(json.dumps(first)) == first


def test_a_scale_changes_only_the_replica_count() -> None:
    project = load(FULL)
    before, after = spec(project, "app"), spec(project, "app", replicas=7)
    assert after["Mode"] == {"Replicated": {"Replicas": 7}}
    expected = copy.deepcopy(before)
    expected["Mode"]["Replicated"]["Replicas"] = 7
    assert after == expected


# --- refusals -----------------------------------------------------------------------------

REFUSED = """
services:
  app:
    image: busybox
    privileged: true
    network_mode: host
    devices: ["/dev/fuse"]
    security_opt: ["no-new-privileges:true"]
    cpu_shares: 512
    ports: ["127.0.0.1:8080:80", "9000-9010:90"]
    gpus: all
  net:
    image: busybox
    networks: {default: {ipv4_address: 10.0.0.9}}
    deploy: {endpoint_mode: dnsrr}
    ports: ["8080:80"]
  ids:
    image: busybox
    deploy:
      resources:
        reservations:
          devices: [{driver: amd, device_ids: ["0"], capabilities: [gpu]},
                    {capabilities: [tpu], count: 1}]
  once:
    image: busybox
    restart: always
  loop:
    image: busybox
    deploy: {mode: replicated-job, restart_policy: {condition: any}}
  after:
    image: busybox
    depends_on: {once: {condition: service_completed_successfully}}
"""


@pytest.mark.parametrize(
    ("name", "path", "words"),
    [
        ("app", "services.app.privileged", ["true", "cap_add"]),
        ("app", "services.app.network_mode", ["'host'", "external network named host"]),
        ("app", "services.app.devices", ["/dev/fuse", "gpus"]),
        ("app", "services.app.security_opt", ["no-new-privileges:true", "remove"]),
        ("app", "services.app.cpu_shares", ["512", "reservations.cpus"]),
        ("app", "services.app.ports", ["127.0.0.1:8080:80/tcp", "9000-9010:90/tcp", "mode: host"]),
        ("app", "services.app.deploy.resources.reservations.devices", ["'all'", "gpus: 1"]),
        ("net", "services.net.networks.default.ipv4_address", ["'10.0.0.9'", "remove it"]),
        ("net", "services.net.deploy.endpoint_mode", ["dnsrr", "8080:80/tcp", "mode: host"]),
        ("ids", "services.ids.deploy.resources.reservations.devices",
         ["'amd'", "['0']", "['tpu']"]),
        ("once", "services.once.restart", ["'always'", "['after']", "on-failure"]),
        ("loop", "services.loop.deploy.restart_policy.condition", ["'any'", "replicated-job"]),
    ],
)  # fmt: skip
def test_each_refusal_names_the_key_path_the_value_and_a_fix(
    name: str, path: str, words: list[str]
) -> None:
    found = [m for m in refusals(load(REFUSED), name) if m.startswith(f"{path}: ")]
    assert len(found) == 1, refusals(load(REFUSED), name)
    for word in words:
        assert word in found[0], found[0]


def test_one_refusal_per_key_and_none_for_a_plain_service() -> None:
    project = load(REFUSED)
    assert len(refusals(project, "app")) == 7
    assert refusals(project, "after") == []
    with pytest.raises(ValueError, match=r"services\.app\.privileged"):
        spec(project, "app")


# --- the deploy keys are checked at load --------------------------------------------------


@pytest.mark.parametrize(
    ("deploy", "path", "match"),
    [
        ("{mode: daemonset}", "services.app.deploy.mode", "supported: replicated, global"),
        ("{mode: global, replicas: 2}", "services.app.deploy.replicas", "one task per node"),
        ("{update_config: {failure_action: retry}}",
         "services.app.deploy.update_config.failure_action", "continue, rollback, pause"),
        ("{rollback_config: {failure_action: rollback}}",
         "services.app.deploy.rollback_config.failure_action", "continue, pause"),
        ("{update_config: {monitor: soon}}", "services.app.deploy.update_config.monitor",
         "bad duration"),
        ("{update_config: {max_failure_ratio: 2}}",
         "services.app.deploy.update_config.max_failure_ratio", "between 0 and 1"),
        ("{update_config: {parallelism: -1}}", "services.app.deploy.update_config.parallelism",
         "at least 0"),
        ("{restart_policy: {max_attempts: x}}",
         "services.app.deploy.restart_policy.max_attempts", "expected an integer"),
        ("{placement: {preferences: [{spread: a, weight: 1}]}}",
         "services.app.deploy.placement.preferences[0].weight", "unknown key"),
        ("{labels: 5}", "services.app.deploy.labels", "expected a list or a mapping"),
    ],
)  # fmt: skip
def test_bad_deploy_keys_are_refused_by_path(deploy: str, path: str, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as caught:
        load(f"services: {{app: {{image: busybox, deploy: {deploy}}}}}")
    assert caught.value.details["path"] == path


# --- the runtime table --------------------------------------------------------------------


def test_every_runtime_note_is_a_supported_key() -> None:
    paths = {key.path for key in KEYS}
    assert set(RUNTIME_NOTES) <= paths, set(RUNTIME_NOTES) - paths
    table = runtime_table()
    for key in KEYS:
        assert f"| `{key.path}` |" in table


def test_the_swarm_docs_show_the_runtime_table() -> None:
    page = (ROOT / "docs" / "swarm.md").read_text()
    assert page.startswith("# From one machine to a cluster\n")
    section = page.split("## Compose keys under each runtime\n", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert "\n".join(rows) == runtime_table()
