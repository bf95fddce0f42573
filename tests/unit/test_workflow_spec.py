"""Normalized Compose services become the right Docker Engine API container bodies."""

from __future__ import annotations

from dxflow._core._workflows._spec import container_config
from dxflow.models import (
    ComposeProject,
    Deploy,
    DeviceRequest,
    Healthcheck,
    Limits,
    Mount,
    NetworkSpec,
    PortMapping,
    Reservations,
    Service,
    ServiceNetwork,
    Ulimit,
    VolumeSpec,
)


def _project(service: Service) -> ComposeProject:
    return ComposeProject(
        name="proj",
        working_dir="/srv/proj",
        config_files=["/srv/proj/compose.yaml"],
        services={service.name: service},
        networks={
            "default": NetworkSpec(name="proj_default"),
            "back": NetworkSpec(name="proj_back"),
        },
        volumes={"data": VolumeSpec(name="proj_data")},
    )


def test_a_full_service() -> None:
    service = Service(
        name="web",
        image="img:1",
        command=["httpd", "-f"],
        entrypoint=["/bin/sh", "-c"],
        environment={"A": "1", "B": None},
        working_dir="/www",
        user="1000:1000",
        hostname="web",
        labels={"team": "data"},
        ports=[
            PortMapping(target=80, published="8080", host_ip="127.0.0.1"),
            PortMapping(target=53, published=None, protocol="udp"),
        ],
        expose=["9000"],
        volumes=[
            Mount(type="bind", source="/srv/proj/html", target="/www", read_only=True),
            Mount(type="volume", source="data", target="/data", nocopy=True),
            Mount(type="tmpfs", target="/tmp", tmpfs_size=1024),
        ],
        networks={"default": ServiceNetwork(aliases=["site"]), "back": ServiceNetwork()},
        healthcheck=Healthcheck(test=["CMD", "true"], interval=1.5, retries=3),
        restart="on-failure:4",
        init=True,
        stop_signal="SIGINT",
        stop_grace_period=3,
        tty=True,
        stdin_open=True,
        cap_add=["NET_ADMIN"],
        cap_drop=["ALL"],
        privileged=True,
        ulimits={"nofile": Ulimit(soft=1024, hard=2048)},
        shm_size=64 * 2**20,
        extra_hosts=["db:10.0.0.2"],
        dns=["1.1.1.1"],
        devices=["/dev/fuse:/dev/fuse:rw"],
        cpu_shares=512,
        deploy=Deploy(
            replicas=2,
            limits=Limits(cpus=1.5, memory=2**30, pids=100),
            reservations=Reservations(
                memory=2**20,
                devices=[DeviceRequest(driver="nvidia", count="all", capabilities=["gpu"])],
            ),
        ),
    )
    config = container_config(_project(service), service, 2, "h" * 64)
    assert config["Image"] == "img:1"
    assert config["Cmd"] == ["httpd", "-f"] and config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Env"] == ["A=1", "B"]
    assert config["Labels"]["com.docker.compose.project"] == "proj"
    assert config["Labels"]["com.docker.compose.service"] == "web"
    assert config["Labels"]["com.docker.compose.container-number"] == "2"
    assert config["Labels"]["com.docker.compose.config-hash"] == "h" * 64
    assert config["Labels"]["com.docker.compose.project.config_files"] == "/srv/proj/compose.yaml"
    assert config["Labels"]["team"] == "data"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "9000/tcp": {}}
    assert config["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": 1_500_000_000,
        "Retries": 3,
    }
    assert config["StopSignal"] == "SIGINT" and config["StopTimeout"] == 3
    host = config["HostConfig"]
    assert host["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "", "HostPort": ""}],
    }
    assert host["Mounts"] == [
        {"Type": "bind", "Target": "/www", "ReadOnly": True, "Source": "/srv/proj/html"},
        {
            "Type": "volume",
            "Target": "/data",
            "ReadOnly": False,
            "Source": "proj_data",
            "VolumeOptions": {"NoCopy": True},
        },
        {"Type": "tmpfs", "Target": "/tmp", "ReadOnly": False, "TmpfsOptions": {"SizeBytes": 1024}},
    ]
    assert host["NetworkMode"] == "proj_default"
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 4}
    assert (
        host["NanoCpus"] == 1_500_000_000 and host["Memory"] == 2**30 and host["PidsLimit"] == 100
    )
    assert host["MemoryReservation"] == 2**20 and host["CpuShares"] == 512
    assert host["DeviceRequests"] == [
        {
            "Driver": "nvidia",
            "Count": -1,
            "DeviceIDs": None,
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rw"}
    ]
    assert host["Init"] is True and host["Privileged"] is True and host["ShmSize"] == 64 * 2**20
    assert host["ExtraHosts"] == ["db:10.0.0.2"] and host["Dns"] == ["1.1.1.1"]
    assert host["CapAdd"] == ["NET_ADMIN"] and host["CapDrop"] == ["ALL"]
    endpoints = config["NetworkingConfig"]["EndpointsConfig"]
    assert endpoints == {"proj_default": {"Aliases": ["web", "proj-web-2", "site"]}}


def test_minimal_service_and_network_mode() -> None:
    service = Service(
        name="job",
        image="img:1",
        network_mode="host",
        healthcheck=Healthcheck(test=["NONE"], disable=True),
    )
    config = container_config(_project(service), service, 1, "x")
    assert config["HostConfig"]["NetworkMode"] == "host"
    assert "NetworkingConfig" not in config
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    assert config["HostConfig"]["RestartPolicy"] == {"Name": "no"}
    assert "Cmd" not in config and "Memory" not in config["HostConfig"]


def test_the_owner_label_and_secret_files_are_in_the_body() -> None:
    service = Service(name="job", image="img:1", volumes=[Mount(type="tmpfs", target="/tmp")])
    files = [("/store/.dxflow/workflows/proj/job/secrets/token", "/run/secrets/token")]
    config = container_config(_project(service), service, 1, "x", "dxf-0123", files)
    assert config["Labels"]["io.dxflow.engine"] == "dxf-0123"
    mounts = config["HostConfig"]["Mounts"]
    assert mounts[0]["Type"] == "tmpfs"
    assert mounts[1] == {
        "Type": "bind",
        "Source": "/store/.dxflow/workflows/proj/job/secrets/token",
        "Target": "/run/secrets/token",
        "ReadOnly": True,
    }
    unowned = container_config(_project(service), service, 1, "x")
    assert "io.dxflow.engine" not in unowned["Labels"]


def test_the_engines_labels_win_over_the_services_own() -> None:
    """Whoever wrote the spec (the policy refuses these labels to all but MASTER), a
    container is labelled as this engine's, in this project."""
    forged = {
        "io.dxflow.engine": "dxf-other",
        "io.dxflow.workflow": "theirs",
        "com.docker.compose.project": "theirs",
        "com.docker.compose.service": "theirs",
        "team": "data",
    }
    service = Service(name="job", image="img:1", labels=forged)
    labels = container_config(_project(service), service, 1, "x", "dxf-0123")["Labels"]
    assert labels["io.dxflow.engine"] == "dxf-0123"
    assert labels["io.dxflow.workflow"] == labels["com.docker.compose.project"] == "proj"
    assert labels["com.docker.compose.service"] == "job" and labels["team"] == "data"
    unowned = container_config(_project(service), service, 1, "x")["Labels"]
    assert "io.dxflow.engine" not in unowned  # no owner is never a forged one
