"""A one-off `chaos-agent inject pause X --duration 1s` as a person feels it, whole process,
beside the raw `docker pause X; sleep 1; docker unpause X` in the same run.

    python -m benchmarks.bench_oneoff [--rounds 10] [--containers 20]

Times come from the daemon's own event stream (`pause` and `unpause` events, timeNano,
same clock as the host): effect = pause event - exec; held = unpause - pause; exit after
heal = process end - unpause event. Goals (issue 13): effect <= 200 ms after exec, exit
<= 50 ms after the heal. The agent's config: 20 opted-in containers in one group, the
default dead-man (`auto`: a detached process here), the ledger on a temporary state dir.
Needs a Docker engine and chaos-base:bookworm.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Fleet, fmt_ms, on_a_fleet, stats, write_config
from benchmarks.bench_startup import agent

RAW = "docker pause {0} >/dev/null; sleep 1; docker unpause {0} >/dev/null"
TYPER_ENTRY = "import sys; from agent.cli import main; sys.argv[0] = 'chaos-agent'; main()"


class Events:
    """pause/unpause events of one container, read on a thread from GET /events."""

    def __init__(self, api: Any, container: str) -> None:
        self.q: queue.Queue[tuple[str, int]] = queue.Queue()
        filters = {"container": [container], "event": ["pause", "unpause"]}
        self._stream = api.events(decode=True, filters=filters)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for ev in self._stream:
                self.q.put((str(ev.get("status") or ev.get("Action")), int(ev["timeNano"])))
        except Exception:  # noqa: BLE001, S110 - closed at the end
            pass

    def next(self, action: str, timeout: float = 30.0) -> int:
        end = time.monotonic() + timeout
        while True:
            got, t = self.q.get(timeout=max(0.01, end - time.monotonic()))
            if got == action:
                return t

    def drain(self) -> None:
        while not self.q.empty():
            self.q.get_nowait()

    def close(self) -> None:
        self._stream.close()


def one(cmd: list[str], events: Events, env: dict[str, str]) -> dict[str, float]:
    events.drain()
    t0 = time.time_ns()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t_end = time.time_ns()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr.decode()[-500:]}")
    paused = events.next("pause")
    unpaused = events.next("unpause")
    return {
        "effect": (paused - t0) / 1e6,
        "held": (unpaused - paused) / 1e6,
        "exit after heal": (t_end - unpaused) / 1e6,
        "total": (t_end - t0) / 1e6,
    }


def run(api: Any, fleet: Fleet, rounds: int = 10, containers: int = 20) -> dict[str, Any]:
    key = "chaos.bench.o"
    ids = fleet.create(containers, {key: fleet.run_id, "chaos.group": "bench"})
    name = api.inspect_container(ids[0])["Name"].lstrip("/")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    events = Events(api, ids[0])
    out: dict[str, list[dict[str, float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
            cfg = str(write_config(Path(tmp) / "state", key, fleet.run_id))
            args = ["inject", "pause", name, "--duration", "1s", "--config", cfg]
            contenders = {
                "docker pause; sleep 1; docker unpause": ["sh", "-c", RAW.format(name)],
                "chaos-agent inject pause --duration 1s": agent(*args),
                "same, through the typer app": [sys.executable, "-c", TYPER_ENTRY, *args],
            }
            names = list(contenders)
            for n in names:  # warm-up (page cache, .pyc files)
                one(contenders[n], events, env)
            for r in range(rounds):
                for n in names[r % len(names) :] + names[: r % len(names)]:
                    out.setdefault(n, []).append(one(contenders[n], events, env))
    finally:
        events.close()
    return {
        n: {m: stats([s[m] for s in samples]) for m in samples[0]} for n, samples in out.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_oneoff")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--containers", type=int, default=20)
    args = parser.parse_args(argv)
    res, load = on_a_fleet(run, args.rounds, args.containers)
    print(load)
    print("| contender | effect after exec | held | exit after heal | total |")
    print("|---|---:|---:|---:|---:|")
    for name, m in res.items():
        cells = " | ".join(
            f"{fmt_ms(m[k]['median'])} ({fmt_ms(m[k]['p10'])}-{fmt_ms(m[k]['p90'])})"
            for k in ("effect", "held", "exit after heal", "total")
        )
        print(f"| {name} | {cells} |")
    print("median ms (p10-p90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
