"""Test images built locally (no registry is reachable): FROM scratch plus a static
busybox, with links for the applets the tests use and a tiny web root."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

BUSYBOX_IMAGE = "dxflow-test/busybox:1"
APPLETS = [
    "sh",
    "echo",
    "sleep",
    "cat",
    "httpd",
    "wget",
    "true",
    "false",
    "env",
    "ls",
    "kill",
    "mkdir",
    "nc",
]


def busybox_binary() -> Path:
    """Debian's busybox-static: one static binary that runs in an empty image."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file():
            return path
    raise RuntimeError("a static busybox is needed: apt-get install busybox-static")


def _context() -> bytes:
    """The build context as a tar stream: Dockerfile, bin/busybox, applet symlinks, www."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        add("Dockerfile", b'FROM scratch\nCOPY bin /bin\nCOPY www /www\nCMD ["sh"]\n')
        add("bin/busybox", busybox_binary().read_bytes(), 0o755)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        add("www/index.html", b"hello from dxflow\n")
    return buffer.getvalue()


def ensure_busybox_image() -> str:
    import docker

    client = docker.from_env()
    try:
        client.images.get(BUSYBOX_IMAGE)
    except docker.errors.ImageNotFound:
        client.images.build(
            fileobj=io.BytesIO(_context()), custom_context=True, tag=BUSYBOX_IMAGE, rm=True
        )
    finally:
        client.close()
    return BUSYBOX_IMAGE
