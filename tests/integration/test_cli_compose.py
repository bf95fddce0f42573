"""`dxflow up`, `ps`, `logs`, `exec`, ... in a folder, against a booted engine and the
real Docker Engine, as a compose user types them."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import remove_project
from ..docker.images import BUSYBOX_IMAGE
from .conftest import Booted

# Every command is a fresh process (under a second alone, ten on a loaded machine), each
# bounded by its own timeout; the per-test guard only catches a hang.
pytestmark = pytest.mark.timeout(600)

COMPOSE = f"""
services:
  db:
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "echo db ready; sleep 3600"]
    init: true
    healthcheck: {{test: ["CMD", "true"], interval: 1s, start_period: 1s}}
  web:
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "echo web says ${{GREETING:-hi}}; sleep 3600"]
    init: true
    depends_on: {{db: {{condition: service_healthy}}}}
"""


@dataclass
class Folder:
    path: Path
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "DXFLOW_URL"}}
        return {**env, "DXFLOW_HOME": str(self.home), **extra}

    def run(self, *args: str, check: bool = True, timeout: float = 180,
            **env: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "dxflow", *args], cwd=self.path, env=self.env(**env),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"dxflow {args} failed ({done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}")  # fmt: skip
        return done

    def start(self, *args: str) -> Following:
        process = subprocess.Popen(
            [sys.executable, "-m", "dxflow", *args], cwd=self.path, env=self.env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        return Following(process)


class Following:
    """A command that keeps printing (logs -f, events, up attached), read in a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, limit: float = 120) -> None:
        deadline = time.monotonic() + limit
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"{text!r} never came: {self.lines}")
            time.sleep(0.1)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C (SIGINT, as a terminal sends it); the exit code and standard error."""
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=120)
        self._reader.join(timeout=10)
        return self.process.returncode, err


def _states(folder: Folder, *flags: str) -> dict[str, str]:
    status = json.loads(folder.run("ps", "--json", *flags).stdout)
    return {c["name"]: c["state"] for s in status["services"] for c in s["containers"]}


@pytest.fixture(scope="module")
def running(
    booted: Booted, tmp_path_factory: pytest.TempPathFactory, docker_client: Any,
    docker_ready: None,
) -> Iterator[tuple[Folder, str, subprocess.CompletedProcess[str]]]:  # fmt: skip
    """A project folder whose name compose would normalize, brought up with `up -d`."""
    path = tmp_path_factory.mktemp("compose") / f"My_App.{os.getpid()}"
    path.mkdir()
    (path / "compose.yaml").write_text(COMPOSE)
    folder = Folder(path, booted.home)
    name = f"my_app{os.getpid()}"
    try:
        up = folder.run("up", "-d", GREETING="hello")
        yield folder, name, up
    finally:
        folder.run("workflow", "remove", name, check=False)
        remove_project(docker_client, name)


def test_up_names_the_project_after_the_folder_and_prints_plain_progress(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, name, up = running
    assert f"Container {name}-web-1" in up.stdout and "Started" in up.stdout
    assert "\x1b[" not in up.stdout  # piped: plain lines, no colours, nothing redrawn
    assert "NAME" in up.stdout and "SERVICE" in up.stdout  # the status table after -d
    assert _states(folder) == {f"{name}-db-1": "running", f"{name}-web-1": "running"}
    listed = json.loads(folder.run("workflow", "list", "--json").stdout)
    assert name in [w["name"] for w in listed]


def test_logs_are_prefixed_by_container_without_ansi_when_piped(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, _, _ = running
    logs = folder.run("logs").stdout
    assert "web-1 | web says hello" in logs  # the shell's GREETING travelled with the file
    assert "db-1  | db ready" in logs  # aligned like compose
    assert "\x1b" not in logs
    only_db = folder.run("logs", "db").stdout
    assert "db ready" in only_db and "web says" not in only_db
    stamped = folder.run("logs", "web", "--tail", "1", "-t").stdout
    assert stamped.startswith("web-1 | 20") and stamped.rstrip().endswith("web says hello")
    bare = folder.run("logs", "web", "--no-log-prefix").stdout
    assert bare.startswith("web says hello")
    assert "web says hello" in folder.run("logs", "web", "--since", "1h").stdout
    bad = folder.run("logs", "--since", "yesterday-ish", check=False)
    assert bad.returncode == 2 and "neither a time" in bad.stderr


def test_exec_exits_with_the_commands_code(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, _, _ = running
    done = folder.run("exec", "-T", "web", "sh", "-c", "echo inside; exit 4", check=False)
    assert done.returncode == 4 and done.stdout == "inside\n"
    # stdin is not a terminal: no -T needed, and -t asks for what cannot be had
    assert folder.run("exec", "db", "echo", "plain").stdout == "plain\n"
    refused = folder.run("exec", "-it", "db", "sh", check=False)
    assert refused.returncode == 1 and "not a TTY" in refused.stderr
    primary, secondary = pty.openpty()  # stdin a terminal, stdout a pipe: `> copy` stays clean
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dxflow", "exec", "web", "echo", "bytes"], cwd=folder.path,
            env=folder.env(), stdin=secondary, capture_output=True, timeout=180,
        )  # fmt: skip
    finally:
        os.close(primary)
        os.close(secondary)
    assert done.returncode == 0 and done.stdout == b"bytes\n"  # no terminal's \r\n


def test_service_names_complete_from_the_folders_project(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, _, _ = running
    complete = {"_DXFLOW_COMPLETE": "bash_complete", "COMP_CWORD": "2"}
    logs = folder.run(**complete, COMP_WORDS="dxflow logs ").stdout.split()
    assert logs == ["plain,db", "plain,web"]
    assert folder.run(**complete, COMP_WORDS="dxflow exec w").stdout.split() == ["plain,web"]


def _read_until(fd: int, marker: bytes, limit: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + limit
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the other side closed: the process ended
                break
    return seen


def test_exec_with_a_terminal_is_interactive_and_leaves_no_session(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, _, _ = running
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a real terminal
        os.chdir(folder.path)
        command = [sys.executable, "-m", "dxflow", "exec", "web", "sh"]
        os.execve(sys.executable, command, folder.env())  # noqa: S606 (no shell: argv as is)
    try:
        assert b"#" in _read_until(fd, b"#")  # busybox's prompt
        os.write(fd, b"tty; echo X$((6*7))X; exit 5\r")
        seen = _read_until(fd, b"never", 30)
        assert b"/dev/pts/" in seen and b"X42X" in seen  # a terminal; the shell computed it
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 5
    assert json.loads(folder.run("shell", "list", "--json").stdout) == []


def _on_terminal(folder: Folder, *args: str, **env: str) -> tuple[int, bytes]:
    """Run the CLI with a real terminal as stdin and stdout: its exit code and output."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(folder.path)
        command = [sys.executable, "-m", "dxflow", *args]
        os.execve(sys.executable, command, folder.env(TERM="xterm", **env))  # noqa: S606
    try:
        seen = _read_until(fd, b"\0never", 180)  # until the process ends (EIO)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen


def test_on_a_terminal_lines_are_redrawn_in_place_and_coloured(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, _, _ = running
    code, up = _on_terminal(folder, "up", "-d", GREETING="bonjour")  # web is recreated
    assert code == 0 and "✔".encode() in up and b"\x1b[J" in up  # erased and redrawn
    assert b"Container" in up and b"Started" in up
    assert _on_terminal(folder, "up", "-d", GREETING="hello")[0] == 0  # as it was
    code, logs = _on_terminal(folder, "logs", "web")
    assert code == 0 and b"\x1b[" in logs and b"web says hello" in logs
    code, plain = _on_terminal(folder, "logs", "web", NO_COLOR="1")
    assert code == 0 and b"\x1b[" not in plain and b"web-1 | web says hello" in plain
    code, watched = _on_terminal(folder, "stats", "--watch", "--count", "2")
    assert code == 0 and watched.count(b"\x1b[H\x1b[2J") == 2  # cleared, then redrawn


def test_stats_hides_veth_interfaces_unless_asked(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, name, _ = running
    containers = folder.run("stats").stdout  # in the project: its containers
    assert f"{name}-web-1" in containers and "MEM USAGE / LIMIT" in containers
    assert json.loads(folder.run("stats", "--json").stdout)["name"] == name
    watched = folder.run("stats", "--watch", "--count", "2").stdout
    assert watched.count("MEM USAGE") == 2 and "\x1b" not in watched  # piped: tables in a row
    every = json.loads(folder.run("stats", "--engine", "--json", "--all-interfaces").stdout)
    assert any(n["interface"].startswith("veth") for n in every["network"])  # ours run
    host = json.loads(folder.run("stats", "--engine", "--json").stdout)
    assert host["network"] and not [n for n in host["network"] if n["interface"].startswith("veth")]
    assert "veth" not in folder.run("stats", "--engine").stdout


def test_logs_follow_events_and_stats_watch_end_quietly_on_ctrl_c(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, name, _ = running
    follow = folder.start("logs", "-f", "web")
    follow.wait_for("web-1 | web says hello")
    code, err = follow.interrupt()
    assert code == 130 and "Traceback" not in err, err
    events = folder.start("events", "--json")
    time.sleep(1)  # not a timing assertion: the watch should be listening before the restart
    folder.run("workflow", "restart", name, "--service", "db")
    events.wait_for('"container":"' + f"{name}-db-1")
    code, err = events.interrupt()
    assert code == 130 and "Traceback" not in err, err
    assert all(json.loads(line)["workflow"] == name for line in events.lines)
    watching = folder.start("stats", "--watch")
    watching.wait_for("MEM USAGE")
    code, err = watching.interrupt()
    assert code == 130 and "Traceback" not in err, err


def test_up_after_editing_the_file_updates_it_with_a_warning(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, _, _ = running
    same = folder.run("up", "-d", GREETING="hello")
    assert "differs" not in same.stderr  # nothing changed: nothing said
    compose = folder.path / "compose.yaml"
    compose.write_text(compose.read_text().replace("web says", "web now says"))
    edited = folder.run("up", "-d", GREETING="hello")
    assert "stored compose file differs: updating" in edited.stderr
    assert "web now says hello" in folder.run("logs", "web").stdout  # never the stale copy
    shell_env = folder.run("up", "-d", GREETING="bonjour")  # the variables count too
    assert "differs" in shell_env.stderr
    assert "web now says bonjour" in folder.run("logs", "web").stdout


def test_name_from_the_files_name_key_and_from_p(booted: Booted, tmp_path: Path) -> None:
    name = f"named{os.getpid()}"
    (tmp_path / "compose.yaml").write_text(f"name: {name}\n{COMPOSE}")
    folder = Folder(tmp_path, booted.home)
    try:
        assert folder.run("config", "--services").stdout == "db\nweb\n"
        config = folder.run("config").stdout  # YAML, as the engine reads the file
        assert f"name: {name}" in config and "web says hi" in config
        elsewhere = Folder(tmp_path / "sub" / "deeper", booted.home)
        elsewhere.path.mkdir(parents=True)  # a parent's compose file is found, as compose does
        assert elsewhere.run("ps", "--services").stdout == "db\nweb\n"
        away = Folder(tmp_path.parent, booted.home)
        assert away.run("ps", "-p", name, "--services").stdout == "db\nweb\n"
    finally:
        folder.run("workflow", "remove", name, check=False)
    lost = Folder(Path("/"), booted.home).run("ps", check=False)
    assert lost.returncode == 1 and "-p NAME" in lost.stderr and "Traceback" not in lost.stderr


def test_workflow_update_and_create_again_by_name(booted: Booted, tmp_path: Path) -> None:
    name = f"byname{os.getpid()}"
    compose = tmp_path / "compose.yaml"
    compose.write_text(COMPOSE)
    folder = Folder(tmp_path, booted.home)
    try:
        folder.run("workflow", "create", name, "-f", "compose.yaml")
        again = folder.run("workflow", "create", name, "-f", "compose.yaml", check=False)
        assert (
            again.returncode == 1 and "--exist-ok" in again.stderr and "--replace" in again.stderr
        )
        assert "exist_ok" not in again.stderr  # CLI flags, not SDK parameters
        same = folder.run("workflow", "update", name, "-f", "compose.yaml").stdout
        assert same == f"workflow {name} unchanged\n"
        compose.write_text(COMPOSE.replace("web says", "web now says"))
        assert "updated" in folder.run("workflow", "update", name, "-f", "compose.yaml").stdout
        config = json.loads(folder.run("workflow", "config", name).stdout)
        assert "web now says" in " ".join(config["services"]["web"]["command"])
        assert "updated" in folder.run("workflow", "update", name, "-e", "GREETING=hola").stdout
        config = json.loads(folder.run("workflow", "config", name).stdout)
        assert "web now says hola" in " ".join(config["services"]["web"]["command"])
        empty = folder.run("workflow", "update", name, check=False)
        assert empty.returncode == 2 and "nothing to update" in empty.stderr
    finally:
        folder.run("workflow", "remove", name, check=False)


def test_workflow_up_by_name_stores_an_edited_file_again(
    booted: Booted, tmp_path: Path, docker_client: Any, docker_ready: None
) -> None:
    name = f"edited{os.getpid()}"
    compose = tmp_path / "compose.yaml"
    compose.write_text(COMPOSE)
    folder = Folder(tmp_path, booted.home)
    try:
        folder.run("workflow", "create", name, "-f", "compose.yaml", "-e", "GREETING=hey")
        compose.write_text(COMPOSE.replace("web says", "web now says"))
        kept = folder.run("workflow", "up", name, "--no-refresh")  # asked for the stored copy
        assert "differs" not in kept.stderr
        assert "web says hey" in folder.run("workflow", "logs", name, "--service", "web").stdout
        up = folder.run("workflow", "up", name)
        assert f"stored compose file differs from {compose}" in up.stderr
        logs = folder.run("workflow", "logs", name, "--service", "web").stdout
        assert "web now says hey" in logs  # the edit runs; the stored variables stay
    finally:
        folder.run("workflow", "remove", name, check=False)
        remove_project(docker_client, name)


def test_workflow_create_exist_ok_and_replace(booted: Booted, tmp_path: Path) -> None:
    name = f"again{os.getpid()}"
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    folder = Folder(tmp_path, booted.home)
    try:
        folder.run("workflow", "create", name, "-f", "compose.yaml")
        folder.run("workflow", "create", name, "-f", "compose.yaml", "--exist-ok")
        folder.run("workflow", "create", name, "-f", "compose.yaml", "--replace")
        both = folder.run("workflow", "create", name, "-f", "compose.yaml", "--exist-ok",
                          "--replace", check=False)  # fmt: skip
        assert both.returncode == 2 and "exclude each other" in both.stderr
    finally:
        folder.run("workflow", "remove", name, check=False)


def test_top_lists_the_processes_of_each_container(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, name, _ = running
    top = folder.run("top").stdout
    assert f"{name}-web-1" in top and "sleep 3600" in top and "PID" in top


def test_up_build_streams_the_output_of_a_failing_run(booted: Booted, tmp_path: Path,
                                                      docker_client: Any) -> None:  # fmt: skip
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\nRUN echo building-marker-42 && exit 3\n"
    )
    name = f"build{os.getpid()}"
    (tmp_path / "compose.yaml").write_text(
        f"name: {name}\nservices:\n  app:\n    build: .\n    image: dxflow-test/failing:{name}\n"
    )
    folder = Folder(tmp_path, booted.home)
    try:
        done = folder.run("up", "-d", "--build", check=False)
    finally:
        folder.run("workflow", "remove", name, check=False)
        remove_project(docker_client, name)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "app | " in done.stdout and "building-marker-42" in done.stdout


def test_up_attached_follows_logs_and_ctrl_c_stops_the_containers(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, _, _ = running
    attached = folder.start("up")
    attached.wait_for("Attaching to")
    attached.wait_for("db-1  | db ready")
    code, err = attached.interrupt()
    assert code == 130 and "Traceback" not in err and "Gracefully stopping" in err, err
    assert set(_states(folder).values()) == {"exited"}  # stopped, as compose does; not removed


def test_start_stop_restart_pause_unpause_and_kill_in_the_folder(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    """The compose lifecycle verbs act on the folder's project in place and print its
    containers after (`docker compose start|stop|...`)."""
    folder, name, _ = running
    web, db = f"{name}-web-1", f"{name}-db-1"
    started = folder.run("start")
    assert web in started.stdout and "running" in started.stdout
    assert _states(folder) == {web: "running", db: "running"}
    folder.run("stop", "-t", "1", "web")
    assert _states(folder) == {web: "exited", db: "running"}
    folder.run("restart", "-t", "1")
    assert _states(folder) == {web: "running", db: "running"}
    folder.run("pause", "db")
    assert _states(folder)[db] == "paused"
    folder.run("unpause", "db")
    assert _states(folder)[db] == "running"
    folder.run("kill", "-s", "SIGKILL", "web")
    assert _states(folder)[web] == "exited"
    folder.run("start", "web")
    assert _states(folder)[web] == "running"
    missing = folder.run("stop", "-p", f"nothing{os.getpid()}", check=False)
    assert missing.returncode == 1 and "dxflow up" in missing.stderr


def test_down_removes_the_containers_and_keeps_the_workflow(
    running: tuple[Folder, str, subprocess.CompletedProcess[str]],
) -> None:
    folder, name, _ = running
    down = folder.run("down")
    assert f"Container {name}-web-1" in down.stdout and "Removed" in down.stdout
    assert _states(folder) == {}
    assert folder.run("ps", "--services").stdout == "db\nweb\n"
