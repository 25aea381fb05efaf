"""Shared helpers for the benchmarks: containers made and removed in batches, timing
statistics, machine facts, and an agent config written to a temporary state dir.

Every container a benchmark creates carries `chaos.bench=<run id>`; `Fleet.remove_all`
removes them by that label, and the runner calls it in a `finally` (Ctrl-C included).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH_LABEL = "chaos.bench"
BASE_IMAGE = os.environ.get("CHAOS_BENCH_IMAGE", "chaos-base:bookworm")
REPO = Path(__file__).resolve().parent.parent


def api_client() -> Any:
    import docker

    return docker.APIClient(base_url="unix:///var/run/docker.sock", timeout=120)


class Fleet:
    """Containers running `sleep infinity` from a cheap image, labelled for this run."""

    def __init__(self, api: Any, run_id: str | None = None) -> None:
        self.api = api
        self.run_id = run_id or f"b-{uuid.uuid4().hex[:8]}"
        self.ids: list[str] = []

    def create(self, n: int, labels: dict[str, str] | None = None, workers: int = 8) -> list[str]:
        start = len(self.ids)

        def one(i: int) -> str:
            c = self.api.create_container(
                BASE_IMAGE,
                command=["sleep", "infinity"],
                name=f"{self.run_id}-{start + i}",
                labels={BENCH_LABEL: self.run_id, **(labels or {})},
                host_config=self.api.create_host_config(init=False),
                stop_signal="SIGKILL",
            )
            self.api.start(c["Id"])
            return str(c["Id"])

        with ThreadPoolExecutor(workers) as pool:
            made = list(pool.map(one, range(n)))
        self.ids += made
        return made

    def remove(self, ids: Iterable[str], workers: int = 8) -> None:
        ids = list(ids)

        def gone(cid: str) -> None:
            try:
                info = self.api.inspect_container(cid)
                if info["State"].get("Paused"):
                    self.api.unpause(cid)
                self.api.remove_container(cid, force=True)
            except Exception:  # noqa: BLE001, S110 - best effort
                pass

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(gone, ids))
        self.ids = [c for c in self.ids if c not in set(ids)]

    def remove_all(self) -> None:
        found = [
            c["Id"]
            for c in self.api.containers(
                all=True, filters={"label": f"{BENCH_LABEL}={self.run_id}"}
            )
        ]
        self.remove(found)
        self.ids = []


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def stats(samples_ms: Sequence[float]) -> dict[str, float]:
    xs = sorted(samples_ms)
    return {
        "n": float(len(xs)),
        "median": statistics.median(xs),
        "p10": xs[int(0.1 * (len(xs) - 1))],
        "p90": xs[int(0.9 * (len(xs) - 1))],
        "p99": xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))],
        "min": xs[0],
        "max": xs[-1],
    }


def interleaved(
    contenders: dict[str, Callable[[], Any]], rounds: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Run each contender once per round, in rotating order, so drift hits all alike."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(timed(contenders[name]))
    return out


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        docker_version = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=20,
        ).stdout.strip() or "?"  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        docker_version = "?"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, cwd=REPO, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = "", ""
    if not commit:
        commit = "uncommitted"
    elif dirty:
        commit += " (with uncommitted changes)"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "docker": docker_version,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit,
    }


def write_config(state_dir: Path, label: str, value: str, extra: str = "", **schedule: str) -> Path:
    sched = {"mean_interval": "1h", "min_gap": "1h", "first_after": "1h", "duration": "30s"}
    sched.update(schedule)
    lines = [
        "[agent]",
        f'state_dir = "{state_dir}"',
        "[targets]",
        f'label = "{label}"',
        f'value = "{value}"',
        "[schedule]",
        *[f'{k} = "{v}"' for k, v in sched.items()],
        extra,
    ]
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir.parent / f"{state_dir.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fmt_ms(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def on_a_fleet(
    run: Callable[[Any, Fleet, int, int], Any], rounds: int, containers: int
) -> tuple[Any, str]:
    """run(api, fleet, rounds, containers) with the fleet removed after; the result and a
    line with the load average before and after (the figures depend on it)."""
    api = api_client()
    fleet = Fleet(api)
    load = os.getloadavg()[0]
    try:
        res = run(api, fleet, rounds, containers)
    finally:
        fleet.remove_all()
    return res, f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after"
