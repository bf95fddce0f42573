"""What a failed `up` says about the service that failed: the output of its health
check (Docker keeps the last runs in State.Health.Log) and its last log lines, stdout
and stderr in the order they were written. Without these a rolled-back `up` would leave
nothing to debug."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime

from ..._exceptions import ApiError
from .._docker import DockerAdapter, HealthProbe, LogSource
from ._streams import log_line

__all__ = ["Diagnosis", "diagnose"]

_PROBES = 3
"""Runs of the health check shown (the last ones)."""
_LINES = 20
"""Log lines shown."""


@dataclass(frozen=True)
class Diagnosis:
    health: str
    """The health check's last runs, one `exit N: output` block each; empty when none."""
    logs: str

    def text(self) -> str:
        """The part of an error message after "service 'x' is unhealthy; "."""
        parts = []
        if self.health:
            parts.append(f"its health check said (last runs, oldest first):\n{self.health}")
        parts.append(f"last log lines:\n{_indent(self.logs) if self.logs else '  (none)'}")
        return "\n".join(parts)


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(f"{by}{line}" for line in text.splitlines())


def _probe(probe: HealthProbe) -> str:
    """`exit N: output` on one line when the output is one line, else indented below."""
    lines = probe.output.splitlines()
    if len(lines) <= 1:
        return f"  exit {probe.exit_code}: {probe.output or '(no output)'}"
    return f"  exit {probe.exit_code}:\n{_indent(probe.output, '    ')}"


async def diagnose(docker: DockerAdapter, container: str, health: bool = True) -> Diagnosis:
    """Health check output (with `health`) and log tail of `container`."""
    shown = ""
    if health:
        try:
            probes = (await docker.health_log(container))[-_PROBES:]
        except ApiError:
            probes = []
        shown = "\n".join(_probe(probe) for probe in probes)
    try:
        source = LogSource(container, ("?", container))
        async with aclosing(docker.logs([source], tail=_LINES)) as chunks:
            lines = [log_line(chunk) async for chunk in chunks]
    except ApiError:
        return Diagnosis(health=shown, logs="(no logs)")
    # Docker stamps each line as it reads it from the container's stdout or stderr pipe:
    # in time order, the two streams interleave as they were written.
    earliest = datetime.min.replace(tzinfo=UTC)
    lines.sort(key=lambda line: line.time or earliest)
    return Diagnosis(health=shown, logs="\n".join(line.line for line in lines).rstrip())
