"""Coordinator benchmark (not a test): lease round trips over a real sshd on loopback.

    python benchmarks/bench_coordinator.py [--n 2000] [--seconds 5] [--agents 10]

Prints p50/p99 of acquire, renew and release over one persistent SSH session, the
same operations against the store without SSH, and the aggregate acquire+release
pairs per second with N concurrent agent processes. Goal: acquire p50 < 5 ms,
p99 < 20 ms. Needs root and openssh-server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from coordinator_sshd import SshdServer, _plan, sshd_available  # noqa: E402

from agent.coordinator.client import CoordinatorLeases  # noqa: E402
from agent.coordinator.policy import FleetPolicy  # noqa: E402
from agent.coordinator.protocol import GroupCounts  # noqa: E402
from agent.coordinator.store import Store  # noqa: E402
from agent.leases import GroupReport  # noqa: E402

POLICY = '[fleet]\nmax_concurrent = 1000\nmax_per_group = 1000\nmin_healthy = 0\nmin_gap = "0s"\n'


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def show(name: str, samples: list[float]) -> None:
    print(
        f"  {name:<8} n={len(samples):<5} p50={pct(samples, 50):6.2f} ms  "
        f"p99={pct(samples, 99):6.2f} ms  mean={statistics.fmean(samples) * 1000:6.2f} ms"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--agents", type=int, default=10)
    args = ap.parse_args()
    reason = sshd_available()
    if reason:
        print(f"cannot run: needs {reason}")
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "c.db")
        pol = FleetPolicy(max_concurrent=1000, max_per_group=1000, min_healthy=0, min_gap=0)
        acq, rel = [], []
        for _ in range(min(args.n, 1000)):
            t = time.perf_counter()
            g = store.acquire(pol, "h", "web", "pause", 30, GroupCounts("web", 3, 3, 3))
            acq.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.release("h", g.lease_id, g.token)  # type: ignore[union-attr]
            rel.append(time.perf_counter() - t)
        store.close()
    print("store only (SQLite WAL, synchronous=FULL, no SSH):")
    show("acquire", acq)
    show("release", rel)

    srv = SshdServer([f"web-{i}" for i in range(1, args.agents + 1)], POLICY).start()
    try:
        leases = CoordinatorLeases(srv.section("web-1"), "web-1")
        t = time.perf_counter()
        leases.status()
        connect = time.perf_counter() - t
        report = GroupReport("web", 3, 3, 3)
        plan = _plan("web", 30)
        acq, ren, rel = [], [], []
        for _ in range(args.n):
            t = time.perf_counter()
            lease = leases.acquire(plan, report)
            acq.append(time.perf_counter() - t)
            t = time.perf_counter()
            lease = leases.renew(lease)
            ren.append(time.perf_counter() - t)
            t = time.perf_counter()
            leases.release(lease)
            rel.append(time.perf_counter() - t)
        leases.close()
        print(f"one persistent SSH session (connect + first request {connect * 1000:.0f} ms):")
        show("acquire", acq)
        show("renew", ren)
        show("release", rel)

        start_at = time.time() + 3.0
        procs = []
        for i in range(1, args.agents + 1):
            host = f"web-{i}"
            cfg = {
                "section": dict(srv.section(host).__dict__),
                "host": host,
                "start_at": start_at,
                "seconds": args.seconds,
            }
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE.parent / "tests" / "coordinator_sshd.py"),
                        "bench",
                        json.dumps(cfg),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                    env=srv.worker_env(),
                )
            )
        pairs = 0
        for p in procs:
            out, _ = p.communicate(timeout=args.seconds + 60)
            pairs += json.loads(out.strip().splitlines()[-1])["pairs"]
        print(
            f"{args.agents} concurrent agents for {args.seconds:g}s: {pairs} acquire+release pairs, "
            f"{pairs / args.seconds:.0f} pairs/s ({2 * pairs / args.seconds:.0f} requests/s)"
        )
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
