"""What a person sees of real results, in-process and over HTTP: a workflow's status as
`docker compose ps`, its logs as lines (and still an iterator), progress while it comes up
and while files travel."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from dxflow import Progress

from ..conftest import EngineFactory
from ..docker.images import BUSYBOX_IMAGE

TALKER = f"""
services:
  talker:
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "echo 'hello <b>'; echo oops >&2; exec sleep 3600"]
    stop_grace_period: 1s
"""


@pytest.mark.docker
def test_a_workflow_shows_its_status_logs_and_progress(
    make_engine: EngineFactory, project_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = project_name
    engine = make_engine()
    wf = engine.workflows.create(name, TALKER)
    up = io.StringIO()
    status = wf.up(timeout=60, progress=Progress(mode="lines", file=up))
    assert f"  {name}-talker-1  started\n" in up.getvalue()  # each event, one plain line
    assert up.getvalue().splitlines()[-1].endswith(f"  {name}  done")

    container = status.services[0].containers[0]
    assert len(container.id) == 64 and container.id not in repr(status) + str(status)
    assert f"{name}-talker-1  talker   {container.id[:12]}  running" in str(status)
    assert len(repr(status)) <= 200 and '<table class="dxflow">' in status._repr_html_()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(list(wf.logs())) < 2:
        time.sleep(0.2)
    logs = wf.logs()
    page = logs._repr_html_()  # shown: read to its end, and kept
    assert "hello &lt;b&gt;" in page and '<span style="color:#c00">oops</span>' in page
    assert {line.line for line in logs} == {"hello <b>", "oops"}  # ...and iterated after
    assert f"{name}-talker-1 | hello <b>" in str(wf.logs()).split("\n")

    live = wf.logs(follow=True)
    assert "live stream" in repr(live) + live._repr_html_()  # shown without waiting
    assert next(live).line in {"hello <b>", "oops"}  # and it still streams
    live.close()

    assert "MEM USAGE / LIMIT" in str(wf.stats())
    down = io.StringIO()
    wf.down(progress=Progress(mode="lines", file=down))
    assert f"  {name}-talker-1  removed\n" in down.getvalue()
    wf.up(timeout=60, progress=True)  # a ready display: lines on stderr when not a terminal
    wf.down(progress=True)
    shown = capsys.readouterr().err
    assert f"{name}-talker-1  started" in shown and f"{name}-talker-1  removed" in shown
    wf.remove()


def test_put_and_get_show_bytes_rate_and_eta(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine()
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(20 << 20))  # over HTTP: a resumable upload, in chunks
    for transfer in ("put", "get"):
        out = io.StringIO()
        progress = Progress(mode="lines", file=out)
        if transfer == "put":
            engine.objects.put(source, "big.bin", progress=progress)
        else:
            engine.objects.get("big.bin", tmp_path / "back.bin", progress=progress)
        lines = out.getvalue().splitlines()
        assert 1 <= len(lines) <= 11, lines  # at most each tenth: never a flood
        assert lines[-1].startswith("[##############################] 100%  20.0 MiB / 20.0 MiB")
        assert progress.finished
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
