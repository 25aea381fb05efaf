"""Heal punctuality: 50 concurrent timed pause faults driven by the Engine in-process with
the real DockerEngine and ledger (max_concurrent=50, replica rules relaxed), healed by the
same loop `chaos-agent inject` uses (heal_due, then sleep until next_wakeup). Lateness of
each heal = when its unpause was verified (and when its heal started) minus its due time
on the monotonic clock.

Two schedules, set once all 50 are paused (so a slow inject on a loaded machine does not
make them late before the loop starts): "spread" (due uniformly over 3 s from 1 s on,
seeded) and "same instant" (all 50 due at the same moment: the worst case). Heals run
side by side (agent/heals.py) and are settled (ledger, journal) by the loop. The table
says where the time goes: the heal effect (inspect, unpause, verifying inspect), the
daemon's unpause call inside it, and the wait until the loop settled it; the same instant
again with other numbers of heals side by side (--widths), and the daemon's own floor
(the 50 unpauses sent at once with no agent).
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
    api: Any, ids: list[str], label: str, value: str, tmp: Path, same_instant: bool,
    parallel: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    from agent.adapters.docker_engine import DockerEngine
    from agent.model import Plan

    engine = _engine(tmp, label, value, DockerEngine())
    if parallel is not None:  # another number of heals side by side than agent.heals'
        import threading

        engine.heals._slots = threading.Semaphore(parallel)
    targets = {t.id: t for t in engine.discover()}
    engine.evaluate(list(targets.values()))
    rng = random.Random(7)
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    # the loop starts heals on a pool (heals.effect) and settles them (ledger, journal)
    effect, settle = engine.heals.effect, engine.settler.settle

    effected: dict[str, float] = {}
    unpause_ms: list[float] = []
    real_unpause = engine.registry.get("container", "pause").inner.docker.unpause

    def timed_unpause(container: str) -> None:
        t = time.monotonic()
        real_unpause(container)
        unpause_ms.append((time.monotonic() - t) * 1000)

    def timed_effect(record: Any) -> Any:
        started.setdefault(record.fault_id, time.monotonic())
        outcome = effect(record)
        effected.setdefault(record.fault_id, time.monotonic())
        return outcome

    def timed_settle(results: Any) -> None:
        settle(results)
        now = time.monotonic()
        for record, outcome, _why in results:
            if outcome.healed:
                finished.setdefault(record.fault_id, now)

    engine.heals.effect = timed_effect  # type: ignore[method-assign]
    engine.settler.settle = timed_settle  # type: ignore[method-assign]
    docker = engine.registry.get("container", "pause").inner.docker
    docker.unpause = timed_unpause
    due: dict[str, float] = {}
    try:
        for cid in ids:
            record = engine.inject(Plan("pause", targets[cid], 600.0, {}))
            due[record.fault_id] = 0.0
        paused = sum(1 for c in ids if api.inspect_container(c)["State"]["Paused"])
        assert paused == len(ids), f"only {paused} paused"
        # due times from now on, whatever the injects took on a loaded machine
        start = time.monotonic() + 1.0
        for fid in due:
            due[fid] = start if same_instant else start + rng.uniform(0.0, 3.0)
            engine.heals.due[fid] = due[fid]
        while engine.active:
            engine.heal_due()
            engine.wake.wait(engine.next_wakeup(None))
            engine.wake.clear()
    finally:
        engine.heals.effect, engine.settler.settle = effect, settle  # type: ignore[method-assign]
        docker.unpause = real_unpause
        engine.heal_all("bench cleanup")
    assert all(not api.inspect_container(c)["State"]["Paused"] for c in ids)
    late_done = [(finished[f] - due[f]) * 1000 for f in due]
    late_start = [(started[f] - due[f]) * 1000 for f in due]
    return {
        "completed": stats(late_done),
        "started": stats(late_start),
        # where the time goes: the heal itself (inspect, unpause, verifying inspect), the
        # daemon's unpause call within it, and the wait until the loop settled it
        "effect": stats([(effected[f] - started[f]) * 1000 for f in due]),
        "unpause call": stats(unpause_ms),
        "settle": stats([(finished[f] - effected[f]) * 1000 for f in due]),
        "n": len(due),
    }


def daemon_floor(ids: list[str]) -> dict[str, float]:
    """No agent: pause them all, then one thread per container unpauses at the same
    instant (the bare HTTP request the adapter sends). When each unpause returned, ms."""
    import threading

    from agent.adapters.docker_engine import unix_http

    sock = "/var/run/docker.sock"

    def post(cid: str, action: str) -> None:
        status, _, body = unix_http(sock, "POST", f"/containers/{cid}/{action}", 120.0)
        assert status == 204, (status, body)

    for cid in ids:
        post(cid, "pause")
    done: list[float] = []
    go = threading.Event()

    def one(cid: str) -> None:
        go.wait()
        post(cid, "unpause")
        done.append(time.monotonic())

    threads = [threading.Thread(target=one, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    go.set()
    for t in threads:
        t.join()
    return stats([(t - t0) * 1000 for t in done])


def run(
    api: Any, ids: list[str], label: str, value: str, widths: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Both schedules with agent.heals.MAX_PARALLEL, the same instant again with each of
    `widths` heals side by side, and the daemon's floor."""
    from agent.heals import MAX_PARALLEL

    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
        out = {
            "spread": _one(api, ids, label, value, Path(tmp) / "a", False),
            "same instant": _one(api, ids, label, value, Path(tmp) / "b", True),
        }
        for w in widths:
            if w != MAX_PARALLEL:
                out[f"same instant, {w} side by side"] = _one(
                    api, ids, label, value, Path(tmp) / f"w{w}", True, parallel=w
                )
        out["daemon floor"] = daemon_floor(ids)
        return out


def main(argv: list[str] | None = None) -> int:
    """python -m benchmarks.bench_heal [--containers 50] [--widths 4,8,64]: a table."""
    import argparse

    from benchmarks._common import fmt_ms, on_a_fleet

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_heal")
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--widths", default="4,8,64", help="heals side by side to compare")
    args = parser.parse_args(argv)
    widths = tuple(int(w) for w in args.widths.split(",") if w.strip())
    key = "chaos.bench.h"

    def go(api: Any, fleet: Any, _rounds: int, n: int) -> dict[str, Any]:
        return run(api, fleet.create(n, {key: fleet.run_id}), key, fleet.run_id, widths)

    res, load = on_a_fleet(go, 1, args.containers)
    print(load)
    for line in table(res, fmt_ms):
        print(line)
    return 0


def table(res: dict[str, Any], fmt_ms: Any) -> list[str]:
    """Lateness per schedule (p50 / p99 / max, ms), and where the time goes."""
    out = [
        "| schedule | heals | started p50 / p99 | verified p50 / p99 / max "
        "| heal effect p50 / p99 | of which unpause p50 / p99 | settle p50 / p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res.items():
        if name == "daemon floor":
            continue
        s, c, e, u, t = r["started"], r["completed"], r["effect"], r["unpause call"], r["settle"]
        out.append(
            f"| {name} | {r['n']} | {fmt_ms(s['median'])} / {fmt_ms(s['p99'])} "
            f"| {fmt_ms(c['median'])} / {fmt_ms(c['p99'])} / {fmt_ms(c['max'])} "
            f"| {fmt_ms(e['median'])} / {fmt_ms(e['p99'])} "
            f"| {fmt_ms(u['median'])} / {fmt_ms(u['p99'])} "
            f"| {fmt_ms(t['median'])} / {fmt_ms(t['p99'])} |"
        )
    f = res["daemon floor"]
    out += [
        "",
        f"Daemon floor, no agent: {int(f['n'])} unpauses sent at the same instant (one thread "
        f"each, bare HTTP) returned after {fmt_ms(f['min'])} ms (first), "
        f"{fmt_ms(f['median'])} ms (median), {fmt_ms(f['max'])} ms (last).",
    ]
    return out


if __name__ == "__main__":
    import sys

    sys.exit(main())
