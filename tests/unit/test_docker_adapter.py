"""The Docker adapter without a daemon: error translation, the shell's command line, the
runtime registry."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import anyio
import pytest

from dxflow import ConfigError, Conflict, DockerUnavailable, InvalidRequest, NotFound
from dxflow._core._docker import Container, DockerAdapter, DockerEvent, ResourceUsage
from dxflow._core._workflows._runtime import RUNTIMES, runtime


def _api_error(status: int, text: str) -> Exception:
    import docker.errors

    response = SimpleNamespace(status_code=status, url="http+docker://localhost/x", reason="r")
    return docker.errors.APIError(text, response=response, explanation=text)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, InvalidRequest), (404, NotFound), (409, Conflict), (503, DockerUnavailable)],
)
def test_docker_errors_become_the_engine_s(status: int, kind: type[Exception]) -> None:
    adapter = DockerAdapter("unix:///nonexistent/docker.sock")

    def fails(client: object) -> None:
        raise _api_error(status, "no such thing")

    adapter._client = object()  # no connection needed: the call fails on its own
    with pytest.raises(kind, match="Docker: no such thing"):
        anyio.run(adapter._run, fails)


def test_an_unreachable_daemon_is_docker_unavailable_naming_it() -> None:
    adapter = DockerAdapter("unix:///nonexistent/dxflow/docker.sock")
    with pytest.raises(DockerUnavailable, match=r"/nonexistent/dxflow/docker\.sock") as caught:
        anyio.run(adapter.containers, ["com.docker.compose.project"])
    assert caught.value.status == 503 and caught.value.code == "docker_unavailable"
    info = anyio.run(adapter.info)
    assert not info.available and info.error is not None and "/nonexistent/dxflow" in info.error


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")
def test_a_container_shell_is_aimed_at_the_adapter_s_daemon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.1:2375")
    monkeypatch.setenv("DOCKER_CONTEXT", "elsewhere")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    configured = DockerAdapter("unix:///srv/docker.sock").exec_command(
        "c0ffee", ["sh", "-l"], env={"TERM": "xterm"}, env_file="/dev/fd/3", workdir="/app"
    )
    assert configured.argv[1:] == [
        "exec", "-it", "--env=TERM=xterm", "--env-file=/dev/fd/3", "--workdir=/app",
        "c0ffee", "sh", "-l",
    ]  # fmt: skip
    assert configured.env["DOCKER_HOST"] == "unix:///srv/docker.sock"
    assert "DOCKER_CONTEXT" not in configured.env and "DOCKER_TLS_VERIFY" not in configured.env
    # No docker_host: Docker's environment, as docker-py reads it (a context would not be).
    from_env = DockerAdapter().exec_command("c0ffee", ["sh"])
    assert from_env.env["DOCKER_HOST"] == "tcp://192.0.2.1:2375"
    assert from_env.env["DOCKER_TLS_VERIFY"] == "1" and "DOCKER_CONTEXT" not in from_env.env
    monkeypatch.delenv("DOCKER_HOST")
    assert DockerAdapter().exec_command("c", ["sh"]).env["DOCKER_HOST"] == (
        "unix:///var/run/docker.sock"
    )


def test_records_are_made_from_docker_s_json() -> None:
    row = {
        "Id": "abc", "Names": ["/shop-web-1"], "Labels": {"a": "b"}, "State": "running",
        "Status": "Up 3 seconds (healthy)",
        "Ports": [{"IP": "127.0.0.1", "PublicPort": 8080, "PrivatePort": 80, "Type": "tcp"},
                  {"PrivatePort": 81, "Type": "tcp"}],
    }  # fmt: skip
    container = Container.from_row(row)
    assert container.name == "shop-web-1" and container.ports == ("127.0.0.1:8080->80/tcp",)
    event = DockerEvent.from_raw(
        {"Action": "die", "Actor": {"ID": "abc", "Attributes": {"exitCode": "3"}}, "time": 7}
    )
    assert event.time_nano == 7_000_000_000 and event.key == (7_000_000_000, "abc", "die")
    usage = ResourceUsage.from_stats(
        {"cpu_stats": {"cpu_usage": {"total_usage": 200}, "system_cpu_usage": 1000,
                       "online_cpus": 2},
         "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 500},
         "memory_stats": {"usage": 50, "limit": 200}}
    )  # fmt: skip
    assert usage.cpu_percent == 40.0 and usage.memory_percent == 25.0


def test_runtimes_are_chosen_by_name() -> None:
    assert set(RUNTIMES) == {"docker", "swarm"}
    chosen = runtime("docker", DockerAdapter(), 4, "dxf-test")
    assert type(chosen).__name__ == "DockerRuntime"
    assert type(runtime("swarm", DockerAdapter(), 4, "dxf-test")).__name__ == "SwarmRuntime"
    with pytest.raises(ConfigError, match="unknown workflow runtime 'nomad'"):
        runtime("nomad", DockerAdapter(), 4, "dxf-test")
