"""Fifty heals due at the same instant, on a real engine: every one happens (each container
runs unpaused again) and is recorded (ledger empty, one `heal` journal line per fault).

How late they are is a figure, not a test: `python -m benchmarks.bench_heal`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.ledger import Ledger
from agent.model import Plan
from agent.wiring import build_engine

pytestmark = pytest.mark.docker

N = 50


def test_fifty_simultaneous_heals_all_happen_and_are_recorded(
    containers: Callable[..., dict[str, Any]], docker_api: Any, tmp_path: Path
) -> None:
    value = f"hm-{uuid.uuid4().hex[:8]}"
    made = [
        containers(f"hm-{i}", {"chaos.enable": value, "chaos.group": value},
                   command=["sleep", "infinity"])
        for i in range(N)
    ]  # fmt: skip
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\ndeadman = "off"\n'
        f'[targets]\nvalue = "{value}"\nmin_replicas = 1\nmin_healthy = 0\n'
        f"max_per_group = {N}\nmax_concurrent = {N}\n"
        '[faults]\nenabled = ["pause"]\n'
    )
    engine = build_engine(load_config(str(cfg)), probes=False)
    targets = {t.id: t for t in engine.discover()}
    engine.evaluate(list(targets.values()))
    try:
        records = [engine.inject(Plan("pause", targets[c["Id"]], 600.0, {})) for c in made]
        assert all(docker_api.inspect_container(c["Id"])["State"]["Paused"] for c in made)
        now = time.monotonic()
        for record in records:  # all due at this very instant
            engine.heals.due[record.fault_id] = now
        end = now + 120
        while engine.active and time.monotonic() < end:
            engine.heal_due()
            engine.wake.wait(engine.next_wakeup(None))
            engine.wake.clear()
        assert engine.active == []
    finally:
        engine.heal_all("test cleanup")
        engine.heals.close()
    for c in made:
        st = docker_api.inspect_container(c["Id"])["State"]
        assert st["Running"] and not st["Paused"], c["Name"]
    assert Ledger(tmp_path / "state").load() == []
    lines = (tmp_path / "state" / "journal.jsonl").read_text().splitlines()
    heals = [e for e in map(json.loads, lines) if e["event"] == "heal"]
    assert sorted(e["fault_id"] for e in heals) == sorted(r.fault_id for r in records)
    assert {e["reason"] for e in heals} <= {"duration elapsed", "retry"}
