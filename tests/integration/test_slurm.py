"""The HPC recipe for real: a Slurm job's prolog boots an engine on its node that joins a
master, the job uses it, the epilog stops it and the master sees the agent leave.

Real daemons on loopback: munged (as user munge), slurmctld and slurmd (Debian's
slurm-wlm, installed by `scripts/setup.sh --dev`) with a slurm.conf of the test's own,
whose Prolog/Epilog/TaskProlog are docs/recipes/slurm/*.sh behind one-line wrappers that
point DXFLOW_SLURM_ENV at the test's settings (a dxflow executable, a token file, a job
root, a log, all in a directory of the test's own). Two jobs run at once on the one node:
root's, and one of the unprivileged user `dxflow` (made by scripts/setup.sh), whose
engine the prolog runs as that user. Needs root (slurmd runs the prolog as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import dxflow

from .conftest import Booted, boot, stop_holders, wait_for
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
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen([SBIN["munged"], "--foreground"], user="munge", group="munge",
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr)  # fmt: skip
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    stderr.seek(0)
                    said = stderr.read().decode(errors="replace")
                    raise AssertionError(f"munged exited ({proc.returncode}): {said}")
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
    python: Path  # with dxflow, for the prolog and the jobs
    token_file: Path
    job_root: Path
    out: Path
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
        out = self.run("scontrol", "-o", "show", "job", job, check=False).stdout
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


def _python_for_everyone(venv: Path) -> Path:
    """A Python with dxflow that the jobs' users can run: this one if they can, else a
    venv of the system's Python of the same version that sees this one's packages (a
    pyenv Python under /root, mode 0700, is root's only). Its bin/ has a `dxflow`."""
    real = Path(sys.executable).resolve()
    if all(p.stat().st_mode & 0o001 for p in (real, *real.parents)):  # others may run it
        return Path(sys.executable)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = Path(f"/usr/bin/python{version}")
    if not system.exists():
        pytest.fail(f"user {JOB_USERS[-1]} cannot run {sys.executable}, and there is no "
                    f"{system} to make a venv with for the jobs", pytrace=False)  # fmt: skip
    subprocess.run([system, "-m", "venv", "--without-pip", venv], check=True)
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (venv / "lib" / f"python{version}" / "site-packages" / "dxflow-test.pth").write_text(
        f"import site; site.addsitedir({str(ours)!r})\n"
    )
    entry = (Path(sys.executable).parent / "dxflow").read_text().split("\n", 1)[1]
    (venv / "bin" / "dxflow").write_text(f"#!{venv / 'bin' / 'python'}\n{entry}")
    (venv / "bin" / "dxflow").chmod(0o755)
    return venv / "bin" / "python"


@pytest.fixture
def cluster(munge: None) -> Iterator[Cluster]:
    """slurmctld and slurmd on loopback, one node (this host), the recipe's scripts.

    Its directory is not under tmp_path: a job's user (not root) reads the settings, its
    engine home and the job's output in it."""
    root = Path(tempfile.mkdtemp(prefix="dxflow-slurm-"))
    root.chmod(0o755)
    for sub in ("state", "spool", "jobs", "out"):
        (root / sub).mkdir(mode=0o755)
    (root / "out").chmod(0o1777)
    python = _python_for_everyone(root / "venv")
    settings = root / "dxflow-slurm.env"
    token_file, log = root / "join-token", root / "dxflow-slurm.log"
    # What an admin puts in /etc/dxflow/slurm.env; the wrappers stand for "the default".
    settings.write_text(
        f"DXFLOW={python.parent / 'dxflow'}\nDXFLOW_TOKEN_FILE={token_file}\n"
        f"DXFLOW_JOB_ROOT={root / 'jobs'}\nDXFLOW_LOG={log}\n"
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
    cluster = Cluster(root, env, python, token_file, root / "jobs", root / "out", log)
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
                cluster.run("scancel", "--full", *(f"--user={u}" for u in JOB_USERS), check=False)
                wait_for(lambda: not cluster.run("squeue", "-h").stdout.strip(), "jobs", 15)
        for proc in reversed(daemons):
            _stop(proc)
        for pid in _processes_holding(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # An engine the epilog did not stop goes too.
        for home in cluster.job_root.glob("dxflow-job-*"):
            run_cli("boot", "down", "--home", home, check=False)
            stop_holders(home)
        shutil.rmtree(root, ignore_errors=True)


JOB_USERS = ("root", "dxflow")
"""Who submits: root, and the project's unprivileged user (scripts/setup.sh makes it),
whose engine the prolog runs as that user."""

JOB = """\
#!/bin/bash
set -eu
echo "DXFLOW_HOME=${{DXFLOW_HOME:-}}"
test -n "${{DXFLOW_HOME:-}}" || {{ echo "the TaskProlog did not set DXFLOW_HOME" >&2; exit 3; }}
{python} - <<'PY'
import os, pwd, socket, time
from pathlib import Path

import dxflow

home = Path(os.environ["DXFLOW_HOME"])
assert home.stat().st_uid == os.getuid(), "the job's engine home is not its user's"
with dxflow.Engine.from_home() as engine:  # DXFLOW_HOME: this node's engine, its socket
    print("engine", engine.ping().engine_id)
    job, user = os.environ["SLURM_JOB_ID"], pwd.getpwuid(os.getuid()).pw_name
    line = f"job {{job}} of {{user}} on {{socket.gethostname()}}\\n"
    engine.objects.pipe("slurm/result.txt", line.encode())
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


def _processes_naming(path: Path) -> dict[int, int]:
    """pid -> uid of the processes whose command line names `path`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(path).encode() in (entry / "cmdline").read_bytes():
                    found[int(entry.name)] = entry.stat().st_uid
    return found


@dataclass
class Job:
    id: str
    user: str
    uid: int
    name: str  # its agent's on the master
    home: Path  # its engine's, on the node
    out: Path


def test_slurm_jobs_get_engines_that_join_the_master_and_leave_with_them(
    cluster: Cluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    try:
        uids = {user: pwd.getpwnam(user).pw_uid for user in JOB_USERS}
    except KeyError as exc:
        pytest.fail(f"no user {exc} for the job: run `sudo bash scripts/setup.sh`", pytrace=False)
    home = tmp_path / "master"
    home.mkdir()
    (home / "config.toml").write_text(FAST)
    master: Booted = boot(home)
    try:
        with dxflow.Engine.from_home(master.home) as engine:
            token = engine.bridges.token(expires="10m", uses=len(JOB_USERS)).token
        cluster.token_file.write_text(token + "\n")
        cluster.token_file.chmod(0o600)
        release = cluster.out / "release"
        script = tmp_path / "job.sh"
        script.write_text(JOB.format(python=cluster.python, release=release))
        # Both at once (the node has 2 CPUs): two engines on one node, keyed by job id.
        jobs = []
        for user in JOB_USERS:
            output = str(cluster.out / "job-%j.out")
            submitted = cluster.run("sbatch", "--parsable", "-N1", "-n1", f"--uid={user}",
                                    "-o", output, str(script))  # fmt: skip
            job_id = submitted.stdout.strip().split(";")[0]
            job_home = cluster.job_root / f"dxflow-job-{job_id}-{HOST}"
            out = cluster.out / f"job-{job_id}.out"
            jobs.append(Job(job_id, user, uids[user], f"{HOST}-{job_id}", job_home, out))

        def why() -> str:
            states = ", ".join(f"job {j.id}: {cluster.job_state(j.id)}" for j in jobs)
            return f"{states}; node {cluster.node_state()}\n" + (
                "\n".join(_tail(j.out) for j in jobs) + "\n" + cluster.logs()
            )

        with dxflow.Engine.from_home(master.home) as engine:

            def status(name: str) -> str | None:
                with contextlib.suppress(dxflow.NotFound):
                    return str(engine.bridges.get(name).status)
                return None

            def has_status(name: str, wanted: str) -> Callable[[], bool]:
                return lambda: status(name) == wanted

            def left(name: str) -> Callable[[], bool]:
                return lambda: status(name) not in ("connected", None)

            def finished(job: Job) -> Callable[[], bool]:
                return lambda: cluster.job_state(job.id) == "COMPLETED"

            def gone(path: Path) -> Callable[[], bool]:
                return lambda: not path.exists()

            def written(remote: dxflow.Engine) -> Callable[[], bytes | None]:
                def read() -> bytes | None:
                    with contextlib.suppress(dxflow.NotFound):
                        return bytes(remote.objects.cat("slurm/result.txt"))
                    return None

                return read

            for job in jobs:
                wait_for(has_status(job.name, "connected"), f"agent {job.name}", 20, why=why)
                bridge = engine.bridges.get(job.name)
                assert bridge.info.facts.hostname == socket.gethostname()
                # The engine runs as the job's user, in a home of its own.
                assert set(_processes_naming(job.home).values()) == {job.uid}, job
                # What the job wrote in its engine's store, read through the master.
                line = f"job {job.id} of {job.user} on {HOST}\n".encode()
                assert wait_for(written(bridge.engine), f"job {job.id}'s file", 15, why=why) == line
                assert cluster.job_state(job.id) == "RUNNING"
            release.touch()
            # The jobs end; the epilog stops their engines and removes their homes.
            for job in jobs:
                wait_for(finished(job), f"job {job.id} to complete", 20, why=why)
                assert "released" in job.out.read_text(), _tail(job.out)
                wait_for(gone(job.home), f"the epilog to remove {job.home}", 15, why=why)
                assert _processes_naming(job.home) == {}
            for job in jobs:
                wait_for(left(job.name), f"{job.name} to leave", 10)
                assert status(job.name) in ("disconnected", "lost")
            for job in jobs:
                wait_for(has_status(job.name, "lost"), f"{job.name} lost", 10)
                with pytest.raises(dxflow.EngineUnavailable, match=f"'{job.name}' is lost"):
                    engine.bridges.get(job.name).engine.objects.ls("")
        log = cluster.log.read_text()
        for job in jobs:
            assert f"engine up in {job.home} as agent {job.name}" in log, log
        assert log.count("engine stopped") == len(jobs), log
    finally:
        run_cli("boot", "down", "--home", master.home, check=False)
        stop_holders(master.home)
    print(f"slurm recipe test: {time.monotonic() - started:.1f} s after the cluster was up")
