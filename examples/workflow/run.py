"""Run the demo workflow: a web service, a worker and a one-shot init job.

    python examples/workflow/run.py          # in-process engine on DXFLOW_HOME

No registry is needed: the image is built here from the host's static busybox
(Debian package busybox-static), FROM scratch.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import urllib.request
from pathlib import Path

import dxflow

HERE = Path(__file__).parent
IMAGE = "dxflow-example/busybox:1"
APPLETS = ["sh", "echo", "sleep", "mkdir", "httpd", "wget", "cat"]


def build_image() -> None:
    import docker

    client = docker.from_env()
    try:
        client.images.get(IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = b'FROM scratch\nCOPY bin /bin\nCMD ["sh"]\n'
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add("/bin/busybox", "bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    client.images.build(fileobj=io.BytesIO(context.getvalue()), custom_context=True, tag=IMAGE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    build_image()
    port = free_port()
    name = os.environ.get("DEMO_NAME", "demo")
    with dxflow.Engine() as engine:
        for old in engine.workflows.list():
            if old.name == name:
                old.remove()
        wf = engine.workflows.create(name, HERE / "compose.yaml", env={"WEB_PORT": str(port)})
        print(f"created {wf.name}: {', '.join(wf.info.services)}")
        status = wf.up(
            timeout=120,
            progress=lambda e: print(f"  {e.action:<9} {e.container or e.service or ''}"),
        )
        for service in status.services:
            health, code = service.health, service.exit_code
            print(f"{service.name:<7} {service.state:<8} health={health} exit={code}")
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/")
        print(page.read().decode().strip())
        result = wf.exec("web", ["cat", "/data/www/index.html"])
        print(f"exec in web -> exit {result.exit_code}: {result.output.strip()}")
        wf.down(volumes=True)
        wf.remove()
        print("down and removed")


if __name__ == "__main__":
    main()
