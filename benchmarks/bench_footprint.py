"""Footprint of a running agent (`chaos-agent run`, no fault due: first_after = 1h)
watching N opted-in containers: RSS and CPU share of one core over a window, plus
voluntary context switches per second (how often the idle loop wakes up).

Also the RSS a bare interpreter reaches after importing each layer, to say where the
memory goes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, write_config
from benchmarks.bench_cli import agent_command

IMPORTS = {
    "python3 (nothing imported)": "pass",
    "+ agent.config, agent.engine (pure core)": "import agent.config, agent.engine",
    "+ docker SDK (it imports paramiko for ssh://)": "import agent.engine, docker",
    "+ docker SDK with paramiko blocked": (
        "import sys; sys.modules['paramiko'] = None\nimport agent.engine, docker"
    ),
    "+ agent.cli (typer, click; coordinator cli)": "import agent.cli, agent.wiring, docker",
    "+ pydantic (typer 0.2x builds option adapters with it)": (
        "import agent.cli, agent.wiring, docker, pydantic"
    ),
}


def _rss_after(code: str) -> float:
    """VmRSS (not ru_maxrss: Linux keeps the parent's high-water mark across exec)."""
    prog = (
        f"{code}\nimport re\n"
        "print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=REPO)
    return int(out.stdout.strip() or 0) / 1024.0


def import_profile() -> dict[str, float]:
    return {name: _rss_after(code) for name, code in IMPORTS.items()}


def run(
    label: str, value: str, expected: int, seconds: float, block_paramiko: bool = False
) -> dict[str, Any]:
    import psutil

    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
        state = Path(tmp) / "state"
        cfg = write_config(state, label, value)
        proc = subprocess.Popen(
            [*agent_command(block_paramiko), "run", "--no-live", "--config", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=tmp, text=True,
        )  # fmt: skip
        try:
            journal = state / "journal.jsonl"
            t0 = time.monotonic()
            start_event: dict[str, Any] = {}
            while not start_event:
                if proc.poll() is not None:
                    raise RuntimeError(f"agent exited: {proc.stderr.read()[-500:]}")
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("agent did not start within 60 s")
                if journal.exists():
                    for line in journal.read_text().splitlines():
                        event = json.loads(line)
                        if event["event"] == "start":
                            start_event = event
                time.sleep(0.1)
            started_in = time.monotonic() - t0
            time.sleep(2.0)  # settle
            p = psutil.Process(proc.pid)
            cpu0, ctx0, w0 = p.cpu_times(), p.num_ctx_switches(), time.monotonic()
            rss: list[float] = []
            end = w0 + seconds
            while time.monotonic() < end:
                rss.append(p.memory_info().rss / 2**20)
                time.sleep(1.0)
            cpu1, ctx1, w1 = p.cpu_times(), p.num_ctx_switches(), time.monotonic()
            uss = p.memory_full_info().uss / 2**20
            wall = w1 - w0
            busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            children = p.children(recursive=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sentence = str(start_event.get("targets", ""))
    return {
        "containers": expected,
        "targets_sentence": sentence,
        "start_to_start_event_s": started_in,
        "window_s": wall,
        "rss_mb_max": max(rss),
        "rss_mb_last": rss[-1],
        "uss_mb": uss,
        "cpu_percent_of_one_core": 100.0 * busy / wall,
        "voluntary_ctx_switches_per_s": (ctx1.voluntary - ctx0.voluntary) / wall,
        "children": len(children),
        "exit_code": proc.returncode,
        "import_rss_mb": import_profile() if not block_paramiko else {},
        "env_python": os.path.realpath(sys.executable),
    }
