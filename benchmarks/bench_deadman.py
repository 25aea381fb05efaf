"""Dead-man heal punctuality: fault deadline -> target healed, with the agent gone.

    python -m benchmarks.bench_deadman [--rounds N]

Three ways the agent disappears mid-fault (a 2 s pause of one of three replicas):
- bare: `chaos-agent inject` as a host process, SIGKILLed (dead-man: a process);
- container: the agent's container `docker kill`ed (dead-man: a sibling container);
- detached: `inject --detach`, gone by design (dead-man: a process).
"Healed" is read from the engine (inspect polled every 10 ms), not from the agent.
The dead-man acts at deadline + watchdog.GRACE (2 s), so ~2 s is the floor by design.
Prints a Markdown table; copy it into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, api_client

IMAGE = os.environ.get("CHAOS_BENCH_AGENT_IMAGE", "chaos-agent:latest")
WEB = os.environ.get("CHAOS_BENCH_WEB_IMAGE", "chaos-web:latest")


def _inject_event(state: Path, timeout: float = 60) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        path = state / "journal.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("event") == "inject":
                    return e
        time.sleep(0.01)
    raise RuntimeError("no inject event")


def _healed_at(api: Any, cid: str, timeout: float = 30) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not api.inspect_container(cid)["State"]["Paused"]:
            return time.time()
        time.sleep(0.01)
    raise RuntimeError("not healed")


def one(api: Any, mode: str, tmp: Path, value: str, target: str, cid: str) -> float:
    state = tmp / f"state-{uuid.uuid4().hex[:6]}"
    state.mkdir(mode=0o700)
    cfg = tmp / f"{state.name}.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{state if mode != "container" else "/var/lib/chaos-agent"}"\n'
        f'[targets]\nvalue = "{value}"\n[faults]\nenabled = ["pause"]\n'
    )
    name = ""
    if mode == "container":
        name = f"bench-dm-{uuid.uuid4().hex[:6]}"
        subprocess.run(
            ["docker", "run", "-d", "--name", name, "--pid", "host",
             "-v", "/var/run/docker.sock:/var/run/docker.sock",
             "-v", f"{cfg}:/etc/chaos-agent/config.toml:ro", "-v", f"{state}:/var/lib/chaos-agent",
             "-e", "CHAOS_AGENT_CONFIG=/etc/chaos-agent/config.toml",
             IMAGE, "inject", "pause", target, "--duration", "2s"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        inject = _inject_event(state)
        subprocess.run(["docker", "kill", name], check=True, capture_output=True, timeout=30)
    else:
        args = [sys.executable, "-m", "agent", "inject", "pause", target, "--duration", "2s"]
        args += ["--config", str(cfg)] + (["--detach"] if mode == "detached" else [])
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        inject = _inject_event(state)
        if mode == "bare":
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    try:
        return _healed_at(api, cid) - float(inject["deadline"])
    finally:
        if name:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=30)
        time.sleep(1.5)  # the dead-man clears the ledger and leaves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    api = api_client()
    value = f"bench-dm-{uuid.uuid4().hex[:6]}"
    made = []
    try:
        for i in range(3):
            c = api.create_container(
                WEB, name=f"{value}-{i}", labels={"chaos.enable": value, "chaos.group": value}
            )
            api.start(c["Id"])
            made.append(c["Id"])
        target = api.inspect_container(made[0])["Name"].lstrip("/")
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for mode in ("bare", "container", "detached"):
                lates = [
                    one(api, mode, Path(tmp), value, target, made[0]) for _ in range(args.rounds)
                ]
                lates.sort()
                p99 = lates[min(len(lates) - 1, round(0.99 * (len(lates) - 1)))]
                rows.append((mode, statistics.median(lates), p99, max(lates)))
        print(f"\nDead-man heal, deadline -> healed, agent gone (n={args.rounds} each)\n")
        print("| death | p50 s | p99 s | max s |\n|---|---:|---:|---:|")
        for mode, p50, p99, worst in rows:
            print(f"| {mode} | {p50:.2f} | {p99:.2f} | {worst:.2f} |")
    finally:
        for cid in made:
            api.remove_container(cid, force=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
