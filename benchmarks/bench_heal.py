"""Heal punctuality: 50 concurrent timed pause faults driven by the Engine in-process with
the real DockerEngine and ledger (max_concurrent=50, replica rules relaxed), healed by the
same loop `chaos-agent inject` uses (heal_due, then sleep until next_wakeup). Lateness of
each heal = when its unpause was verified (and when its heal started) minus its due time
on the monotonic clock.

Two schedules: "spread" (durations drawn uniformly in [3 s, 6 s], seeded) and "same
instant" (all 50 due at the same moment: the worst case). Heals run on the engine's pool
of 8 threads and are settled (ledger, journal) by the loop.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import stats
from benchmarks.bench_inject import _engine


def _one(
    api: Any, ids: list[str], label: str, value: str, tmp: Path, same_instant: bool
) -> dict[str, Any]:
    from agent.adapters.docker_engine import DockerEngine
    from agent.model import Plan

    engine = _engine(tmp, label, value, DockerEngine())
    targets = {t.id: t for t in engine.discover()}
    engine.evaluate(list(targets.values()))
    rng = random.Random(7)
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    # the loop starts heals on a pool (heals.effect) and settles them (ledger, journal)
    effect, settle = engine.heals.effect, engine._settle

    def timed_effect(record: Any) -> Any:
        started.setdefault(record.fault_id, time.monotonic())
        return effect(record)

    def timed_settle(results: Any) -> None:
        settle(results)
        now = time.monotonic()
        for record, outcome, _why in results:
            if outcome.healed:
                finished.setdefault(record.fault_id, now)

    engine.heals.effect = timed_effect  # type: ignore[method-assign]
    engine._settle = timed_settle  # type: ignore[method-assign]
    due: dict[str, float] = {}
    t_end = time.monotonic() + 2.0 + 0.06 * len(ids)
    try:
        for cid in ids:
            if same_instant:
                duration = t_end - time.monotonic()
            else:
                duration = rng.uniform(3.0, 6.0)
            record = engine.inject(Plan("pause", targets[cid], duration, {}))
            due[record.fault_id] = engine.heals.due[record.fault_id]
        paused = sum(1 for c in ids if api.inspect_container(c)["State"]["Paused"])
        assert paused == len(ids), f"only {paused} paused"
        while engine.active:
            engine.heal_due()
            engine.wake.wait(engine.next_wakeup(None))
            engine.wake.clear()
    finally:
        engine.heals.effect, engine._settle = effect, settle  # type: ignore[method-assign]
        engine.heal_all("bench cleanup")
    assert all(not api.inspect_container(c)["State"]["Paused"] for c in ids)
    late_done = [(finished[f] - due[f]) * 1000 for f in due]
    late_start = [(started[f] - due[f]) * 1000 for f in due]
    return {"completed": stats(late_done), "started": stats(late_start), "n": len(due)}


def run(api: Any, ids: list[str], label: str, value: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
        return {
            "spread": _one(api, ids, label, value, Path(tmp) / "a", False),
            "same instant": _one(api, ids, label, value, Path(tmp) / "b", True),
        }
