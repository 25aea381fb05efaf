"""Coordinator benchmark (not a test): acquire latency after a hostile key's report flood.

    python benchmarks/bench_coordinator_reports.py [--rows 500000] [--n 300]

One agent identity sends `--rows` report rows (256 groups per `report` request, the
protocol's maximum, straight into the store: no session rate limit, the worst case),
then an honest host acquires and releases `--n` leases. Prints acquire p50/p99 before
and after, the report rows kept, and the process's peak RSS. Goal (issue 10): acquire
p50 <= 2 ms after 500k hostile rows. Needs nothing but SQLite.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from agent.coordinator.admission import Refusal  # noqa: E402
from agent.coordinator.policy import FleetPolicy  # noqa: E402
from agent.coordinator.protocol import MAX_GROUPS, GroupCounts  # noqa: E402
from agent.coordinator.store import Granted, Store  # noqa: E402

POLICY = FleetPolicy(max_concurrent=1000, max_per_group=1000, min_healthy=1, min_gap=0)


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def acquires(store: Store, n: int) -> list[float]:
    counts = GroupCounts("shop/web", 3, 3, 3)
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        got = store.acquire(POLICY, "web-a", "shop/web", "pause", 30, counts)
        took.append(time.perf_counter() - t0)
        if isinstance(got, Refusal):
            raise SystemExit(f"unexpected refusal: {got}")
        assert isinstance(got, Granted)
        store.release("web-a", got.lease_id, got.token)
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "c.db")
        empty = acquires(store, args.n)
        t0 = time.perf_counter()
        sent = 0
        while sent < args.rows:
            batch = min(MAX_GROUPS, args.rows - sent)
            store.report(
                "evil",
                tuple(GroupCounts(f"g{sent + i}", 100_000, 100_000, 100_000) for i in range(batch)),
            )
            sent += batch
        flood = time.perf_counter() - t0
        kept = store._db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
        after = acquires(store, args.n)
        store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"coordinator acquire after a hostile report flood ({args.n} acquires each)")
    print(f"  empty store      p50={pct(empty, 50):6.2f} ms  p99={pct(empty, 99):6.2f} ms")
    print(
        f"  after {sent} rows sent in {flood:.1f}s ({kept} kept): "
        f"p50={pct(after, 50):6.2f} ms  p99={pct(after, 99):6.2f} ms  (goal p50 <= 2 ms)"
    )
    print(f"  peak RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
