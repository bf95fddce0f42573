"""Placement's choice: labels, status, drain, resources, then the strategy's order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dxflow import Conflict
from dxflow._core._bridges._placement import choose
from dxflow._models import BridgeFacts, BridgeInfo, PlacementRequest

NOW = datetime.now(UTC)


def agent(name: str, load: float = 0.0, cpus: int = 4, gpus: int = 0, status: str = "connected",
          drained: bool = False, memory: int = 16 << 30, **labels: str) -> BridgeInfo:  # fmt: skip
    facts = BridgeFacts(cpus=cpus, memory=memory, memory_available=memory, gpus=gpus, load=load)
    return BridgeInfo(name=name, status=status, joined_at=NOW, drained=drained,  # type: ignore[arg-type]
                      labels=labels, facts=facts)  # fmt: skip


def test_labels_status_drain_and_resources_each_refuse_with_their_reason() -> None:
    fleet = [agent("lost", status="lost", gpu="true"), agent("drained", drained=True, gpu="true"),
             agent("cpu", gpu="false"), agent("small", gpu="true", memory=1 << 30),
             agent("ok", gpu="true", gpus=2)]  # fmt: skip
    request = PlacementRequest(workflow="train", labels={"gpu": "true"}, memory=4 << 30, gpus=1)
    chosen, refused = choose(fleet, request, {})
    assert chosen == "ok"
    assert refused == {"lost": "lost", "drained": "drained", "cpu": "no label gpu=true",
                       "small": "1.0 GiB free < 4.0 GiB"}  # fmt: skip


def test_nothing_fits_is_a_conflict_naming_every_agent() -> None:
    request = PlacementRequest(workflow="train", gpus=1)
    with pytest.raises(Conflict, match=r"a1: 0 GPUs < 1; a2: disconnected") as caught:
        choose([agent("a1"), agent("a2", status="disconnected")], request, {})
    assert caught.value.details["refused"] == {"a1": "0 GPUs < 1", "a2": "disconnected"}


@pytest.mark.parametrize(("strategy", "expected"), [
    ("least_loaded", "idle"), ("spread", "empty"), ("pack", "busy"),
])  # fmt: skip
def test_the_strategy_orders_the_agents_that_fit(strategy: str, expected: str) -> None:
    fleet = [agent("idle", load=0.1), agent("empty", load=2.0), agent("busy", load=1.0)]
    placed = {"idle": 2, "busy": 5}
    request = PlacementRequest(workflow="w", strategy=strategy)  # type: ignore[arg-type]
    chosen, refused = choose(fleet, request, placed)
    assert chosen == expected
    assert all(why == f"not chosen ({strategy})" for why in refused.values())


def test_a_master_on_every_interface_puts_its_host_name_in_tokens(tmp_path: object) -> None:
    import socket
    from pathlib import Path

    from dxflow._config import load_config
    from dxflow._core import EngineCore
    from dxflow._models import BridgeTokenCreate

    core = EngineCore(load_config(Path(str(tmp_path)) / "home", host="0.0.0.0", port=7519))
    try:
        made = core.bridges.token(core.local_context(), BridgeTokenCreate())
    finally:
        core.close()
    assert made.url == f"http://{socket.gethostname()}:7519"
