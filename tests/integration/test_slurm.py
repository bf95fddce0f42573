"""The HPC recipe for real: a Slurm job's prolog boots an engine on its node that joins a
master, the job uses it, the epilog stops it and the master sees the agent leave.

Real daemons on loopback: munged (as user munge), slurmctld and slurmd (Debian's
slurm-wlm, installed by `scripts/setup.sh --dev`) with a slurm.conf of the test's own,
whose Prolog/Epilog/TaskProlog are docs/recipes/slurm/*.sh behind one-line wrappers that
point DXFLOW_SLURM_ENV at the test's settings (the venv's dxflow, a token file, a job
root under tmp_path, a log). Needs root (slurmd runs the prolog as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import dxflow

from .conftest import Booted, boot, stop_holders
from .conftest import dxflow as run_cli

RECIPE = Path(__file__).resolve().parents[2] / "docs" / "recipes" / "slurm"
FAST = "bridge_interval = 0.5\nbridge_grace = 3\nbridge_wait = 2\n"
SBIN = {name: f"/usr/sbin/{name}" for name in ("munged", "mungekey", "slurmctld", "slurmd")}
MUNGE_RUN = Path("/run/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")
HOST = socket.gethostname().split(".")[0]


def _require_slurm() -> None:
    missing = [path for path in SBIN.values() if not os.access(path, os.X_OK)]
    missing += [
        n for n in ("munge", "unmunge", "sbatch", "scontrol", "sinfo") if not shutil.which(n)
    ]
    if missing:
        pytest.fail(
            f"Slurm/munge are not installed ({', '.join(missing)} missing): run "
            "`sudo bash scripts/setup.sh --dev` (apt: slurmctld slurmd slurm-client munge)",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail("the Slurm test needs root (slurmd runs as root)", pytrace=False)


def wait_for(check: Callable[[], object], what: str, timeout: float = 20, *,
             why: Callable[[], str] = str) -> object:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}\n{why()}")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"--- {path}: (missing)"
    return f"--- {path}:\n" + "\n".join(text)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ------------------------------------------------------------------------------ munge


def _munge_answers() -> bool:
    cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
    if cred.returncode != 0:
        return False
    done = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10)
    return done.returncode == 0


@pytest.fixture
def munge() -> Iterator[None]:
    """A munged that answers on its default socket: the one running, or one of ours (as
    user munge, stopped at the end)."""
    _require_slurm()
    if _munge_answers():
        yield
        return
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(mode=0o700, exist_ok=True)
        subprocess.run([SBIN["mungekey"], "--create", "--keyfile", str(MUNGE_KEY)], check=True)
        shutil.chown(MUNGE_KEY.parent, "munge", "munge")
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o600)
    MUNGE_RUN.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    proc = subprocess.Popen([SBIN["munged"], "--foreground"], user="munge", group="munge",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:

        def up() -> bool:
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise AssertionError(f"munged exited ({proc.returncode}): {stderr}")
            return _munge_answers()

        wait_for(up, "munged to answer", 10)
        yield
    finally:
        _stop(proc)


# ------------------------------------------------------------------------------ Slurm


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    token_file: Path
    job_root: Path
    log: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=20)
        if check and done.returncode != 0:
            raise AssertionError(f"{args} failed ({done.returncode}): {done.stderr}\n{self.logs()}")
        return done

    def logs(self) -> str:
        return "\n".join(_tail(self.root / name) for name in ("slurmctld.log", "slurmd.log")) + (
            "\n" + _tail(self.log)
        )

    def job_state(self, job: str) -> str:
        out = self.run("scontrol", "-o", "show", "job", job).stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        return fields.get("JobState", "?")

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-n", HOST, "-o", "%T").stdout.strip()


SLURM_CONF = """\
ClusterName=dxflowtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
Prolog={root}/prolog
Epilog={root}/epilog
TaskProlog={root}/task-prolog
PrologFlags=Alloc
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def cluster(munge: None, tmp_path: Path) -> Iterator[Cluster]:
    """slurmctld and slurmd on loopback, one node (this host), the recipe's scripts."""
    root = tmp_path / "slurm"
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True)
    settings = root / "dxflow-slurm.env"
    token_file, job_root, log = root / "join-token", root / "jobs", root / "dxflow-slurm.log"
    job_root.mkdir()
    # What an admin puts in /etc/dxflow/slurm.env; the wrappers stand for "the default".
    settings.write_text(
        f"DXFLOW={Path(sys.executable).parent / 'dxflow'}\nDXFLOW_TOKEN_FILE={token_file}\n"
        f"DXFLOW_JOB_ROOT={job_root}\nDXFLOW_LOG={log}\n"
    )
    for script in ("prolog", "epilog", "task-prolog"):
        wrapper = root / script
        wrapper.write_text(
            f"#!/bin/sh\nDXFLOW_SLURM_ENV={settings} exec {RECIPE / (script + '.sh')}\n"
        )
        wrapper.chmod(0o755)
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=HOST, root=root, ctld_port=_free_port(),
                                      slurmd_port=_free_port()))  # fmt: skip
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(root, env, token_file, job_root, log)
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        quiet = {
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL,
        }
        for daemon in (["slurmctld", "-c"], ["slurmd"]):
            command = [SBIN[daemon[0]], *daemon[1:], "-D", "-f", str(conf)]
            daemons.append(subprocess.Popen(command, env=env, **quiet))  # type: ignore[call-overload]

        def idle() -> bool:
            for daemon, proc in zip(("slurmctld", "slurmd"), daemons, strict=False):
                if proc.poll() is not None:
                    raise AssertionError(f"{daemon} exited ({proc.returncode})\n{cluster.logs()}")
            done = cluster.run("sinfo", "-h", "-N", "-n", HOST, "-o", "%T", check=False)
            return done.returncode == 0 and done.stdout.strip() == "idle"

        wait_for(idle, f"node {HOST} to be idle", 20, why=cluster.logs)
        yield cluster
    finally:
        # Jobs still there (the test failed midway) are cancelled while slurmd can still
        # run their epilogs; the step daemons of ours that outlive it (they hold our
        # slurmd.log open) are killed.
        if daemons and all(proc.poll() is None for proc in daemons):
            with contextlib.suppress(AssertionError, subprocess.SubprocessError):
                cluster.run("scancel", "--full", "-u", "root", check=False)
                wait_for(lambda: not cluster.run("squeue", "-h").stdout.strip(), "jobs", 15)
        for proc in reversed(daemons):
            _stop(proc)
        for pid in _processes_holding(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # An engine the epilog did not stop goes too.
        for home in job_root.glob("dxflow-job-*"):
            run_cli("boot", "down", "--home", home, check=False)
            stop_holders(home)


JOB = """\
#!/bin/bash
set -eu
echo "DXFLOW_HOME=${{DXFLOW_HOME:-}}"
test -n "${{DXFLOW_HOME:-}}" || {{ echo "the TaskProlog did not set DXFLOW_HOME" >&2; exit 3; }}
{python} - <<'PY'
import os, socket, time
from pathlib import Path

import dxflow

with dxflow.Engine.from_home() as engine:  # DXFLOW_HOME: this node's engine, its socket
    print("engine", engine.ping().engine_id)
    job = os.environ["SLURM_JOB_ID"]
    engine.objects.pipe("slurm/result.txt", f"job {{job}} on {{socket.gethostname()}}\\n".encode())
    # Stay allocated until the test has seen the agent from the master (bounded).
    release = Path("{release}")
    deadline = time.monotonic() + 30
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("released" if release.exists() else "not released")
PY
"""


def _processes_holding(root: Path) -> list[int]:
    """Processes with a file under `root` open (slurmstepd: our slurmd's log)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if any(
                    str(fd.readlink()).startswith(f"{root}/") for fd in (entry / "fd").iterdir()
                ):
                    found.append(int(entry.name))
    return found


def _processes_naming(path: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if str(path) in command:
                    found.append(f"{entry.name}: {command}")
    return found


def test_a_slurm_job_gets_an_engine_that_joins_the_master_and_leaves_with_the_job(
    cluster: Cluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    home = tmp_path / "master"
    home.mkdir()
    (home / "config.toml").write_text(FAST)
    master: Booted = boot(home)
    try:
        with dxflow.Engine.from_home(master.home) as engine:
            cluster.token_file.write_text(engine.bridges.token(expires="10m").token + "\n")
            cluster.token_file.chmod(0o600)
        release = tmp_path / "release"
        script = tmp_path / "job.sh"
        script.write_text(JOB.format(python=sys.executable, release=release))
        output = str(tmp_path / "job-%j.out")
        submitted = cluster.run("sbatch", "--parsable", "-N1", "-n1", "-o", output, str(script))
        job = submitted.stdout.strip().split(";")[0]
        name, job_home = f"{HOST}-{job}", cluster.job_root / f"dxflow-job-{job}-{HOST}"
        out = tmp_path / f"job-{job}.out"

        def why() -> str:
            return f"job {job}: {cluster.job_state(job)}, node {cluster.node_state()}\n" + (
                _tail(out) + "\n" + cluster.logs()
            )

        with dxflow.Engine.from_home(master.home) as engine:

            def connected() -> bool:
                with contextlib.suppress(dxflow.NotFound):
                    return bool(engine.bridges.get(name).status == "connected")
                return False

            wait_for(connected, f"agent {name} to join the master", 20, why=why)
            bridge = engine.bridges.get(name)
            assert bridge.info.facts.hostname == socket.gethostname()
            # What the job wrote in its engine's store, read through the master.
            remote = bridge.engine

            def written() -> bytes | None:
                with contextlib.suppress(dxflow.NotFound):
                    return bytes(remote.objects.cat("slurm/result.txt"))
                return None

            assert (
                wait_for(written, "the job's file", 15, why=why)
                == f"job {job} on {HOST}\n".encode()
            )
            assert job_home.is_dir() and cluster.job_state(job) == "RUNNING"
            release.touch()
            # The job ends; the epilog stops the engine and removes its home.
            wait_for(lambda: cluster.job_state(job) == "COMPLETED", f"job {job} to complete",
                     20, why=why)  # fmt: skip
            assert "released" in out.read_text(), _tail(out)
            wait_for(lambda: not job_home.exists(), f"the epilog to remove {job_home}", 15, why=why)
            assert _processes_naming(job_home) == []
            wait_for(lambda: engine.bridges.get(name).status != "connected",
                     f"{name} to disconnect", 10)  # fmt: skip
            assert engine.bridges.get(name).status in ("disconnected", "lost")
            wait_for(lambda: engine.bridges.get(name).status == "lost", f"{name} lost", 10)
            with pytest.raises(dxflow.EngineUnavailable, match=f"'{name}' is lost"):
                engine.bridges.get(name).engine.objects.ls("")
        log = cluster.log.read_text()
        assert f"engine up in {job_home} as agent {name}" in log and "engine stopped" in log, log
    finally:
        run_cli("boot", "down", "--home", master.home, check=False)
        stop_holders(master.home)
    print(f"slurm recipe test: {time.monotonic() - started:.1f} s after the cluster was up")
