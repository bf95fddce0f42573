"""The README's main job: a workflow on the engine `scripts/run.sh` booted, left running.

    python examples/workflow/hello.py        # the engine booted on DXFLOW_HOME (~/.dxflow)

It builds a small image locally (FROM scratch + the host's static busybox: no registry),
brings up hello.yaml (a web server with a health check, and a worker that waits for it
and writes a report into a volume), shows status and logs, copies the report into the
object store and shares it, runs a command in a shell session inside the worker, and
leaves everything running. Run it again: it reuses the workflow (updated to the file
as it is now) and the shell session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

import dxflow

HERE = Path(__file__).parent
NAME = os.environ.get("HELLO_NAME", "hello")
SHELL = f"{NAME}-shell"
REPORT = f"{NAME}/report.txt"


def static_busybox() -> Path:
    """Debian's busybox-static: one binary that runs in an image with nothing else."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file() and _is_static(path):
            return path
    sys.exit(
        "hello: a static busybox is needed to build the image; install it with:\n"
        "    sudo apt-get install -y busybox-static\n"
        "then run this again (scripts/run.sh does it for you when run as root)"
    )


def _is_static(path: Path) -> bool:
    done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    return "not a dynamic executable" in done.stdout + done.stderr or "statically" in done.stdout


def build_context() -> None:
    """Put the busybox binary next to image/Dockerfile (the build context)."""
    target = HERE / "image" / "busybox"
    source = static_busybox()
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        shutil.copy2(source, target)


def workflow(engine: dxflow.Engine) -> dxflow.Workflow:
    """The workflow `NAME`: created, or updated to hello.yaml as it is now."""
    compose = HERE / "hello.yaml"
    wf = engine.workflows.create(NAME, compose, exist_ok=True)  # or updated to the file
    print(f"workflow {NAME}: services {', '.join(wf.info.services)}")
    return wf


def show_event(event: dxflow.models.WorkflowEvent) -> None:
    what = event.container or event.service or event.detail or ""
    if event.action == "build" and event.detail:
        what = f"{event.service}: {event.detail}"
    print(f"  {event.action:<10} {what}")


def show_status(wf: dxflow.Workflow) -> None:
    status = wf.status()
    print(f"status of {wf.name}: {status.state}")
    for service in status.services:
        ports = ", ".join(p for c in service.containers for p in c.ports)
        health = service.health or "-"
        print(f"  {service.name:<8} {service.state:<8} health {health:<8} {ports}")


def first_report(wf: dxflow.Workflow, bound: float = 120) -> str:
    """The worker's report, once it has written one."""
    deadline = time.monotonic() + bound
    while True:
        result = wf.exec("worker", ["cat", "/results/report.txt"])
        if result.exit_code == 0:
            return result.output
        if time.monotonic() > deadline:
            sys.exit(f"hello: the worker wrote no report within {bound:g} s: {result.output}")
        time.sleep(1)


def shell_session(engine: dxflow.Engine) -> dxflow.Shell:
    """A shell session in the worker's container: the running one, or a new one."""
    return engine.shells.create(
        SHELL, command="/bin/sh", workflow=NAME, service="worker", exist_ok=True
    )


def main() -> None:
    build_context()
    home = os.environ.get("DXFLOW_HOME")
    try:
        engine = dxflow.Engine.from_home(home)  # the server scripts/run.sh booted
    except dxflow.EngineUnavailable as why:
        sys.exit(f"hello: {why.message}")
    with engine:
        wf = workflow(engine)
        print("up (builds the image where it is missing, waits for the health check):")
        wf.up(timeout=300, progress=show_event)
        show_status(wf)

        report = first_report(wf)
        print("last log lines:")
        for line in wf.logs(tail=3):
            print(f"  {line.service:<7}| {line.line}")

        engine.objects.pipe(REPORT, report.encode())
        link = engine.objects.share(REPORT, expires="1d")
        assert link.url is not None  # a server runs on the home: the link has its URL
        shared = httpx.get(link.url, timeout=30).raise_for_status().text  # no key needed
        print(f"report copied to the object store ({REPORT}) and shared for a day:")
        print(f"  share link: {link.url}")
        print(f"  it serves: {shared.splitlines()[0]}")

        shell = shell_session(engine)
        ran = shell.run("ls /results && wc -l < /results/report.txt", timeout=60)
        print(f"shell session {shell.name} (in the worker): `ls /results && wc -l ...`")
        for line in ran.output.strip().splitlines():
            print(f"  {line}")
        print(f"  exit code {ran.exit_code}")


if __name__ == "__main__":
    main()
