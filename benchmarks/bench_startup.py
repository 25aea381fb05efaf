"""How fast the CLI answers, as a whole process: `--help`, `status`, `targets` (20 opted-in
containers), median of N, with the docker CLI and a bare `python -c pass` in the same run.

    python -m benchmarks.bench_startup [--rounds 10] [--containers 20]

Goals (issue 13): `--help` <= 100 ms, `status` <= 100 ms, `targets` <= 180 ms. The plain
forms of these commands are answered by agent/quick.py without importing typer; the typer
app is shown beside them (`python -m agent.cli`-style entry through `agent.cli:main`) so the
figure says what skipping it saves. Needs a Docker engine and chaos-base:bookworm.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._common import Fleet, fmt_ms, interleaved, on_a_fleet, stats, write_config

TYPER_ENTRY = "import sys; from agent.cli import main; sys.argv[0] = 'chaos-agent'; main()"


def agent(*args: str) -> list[str]:
    script = Path(sys.prefix) / "bin" / "chaos-agent"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "agent", *args]


def run(api: Any, fleet: Fleet, rounds: int = 10, containers: int = 20) -> dict[str, Any]:
    key = "chaos.bench.s"
    fleet.create(containers, {key: fleet.run_id, "chaos.group": "bench"})
    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
        cfg = str(write_config(Path(tmp) / "state", key, fleet.run_id))

        # as installed: compiled modules are cached (a pip install writes them)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

        def call(cmd: list[str]) -> Any:
            def go() -> None:
                subprocess.run(
                    cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
                )

            return go

        contenders = {
            "python -c pass": call([sys.executable, "-c", "pass"]),
            "docker --help": call(["docker", "--help"]),
            "docker ps": call(["docker", "ps"]),
            "chaos-agent --help": call(agent("--help")),
            "chaos-agent --help (typer)": call([sys.executable, "-c", TYPER_ENTRY, "--help"]),
            "chaos-agent status": call(agent("status", "--config", cfg)),
            "chaos-agent status (typer)": call(
                [sys.executable, "-c", TYPER_ENTRY, "status", "--config", cfg]
            ),
            f"chaos-agent targets ({containers} containers)": call(
                agent("targets", "--config", cfg)
            ),
            "chaos-agent targets (typer)": call(
                [sys.executable, "-c", TYPER_ENTRY, "targets", "--config", cfg]
            ),
        }
        samples = interleaved(contenders, rounds)
    return {"results": {k: stats(v) for k, v in samples.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_startup")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--containers", type=int, default=20)
    args = parser.parse_args(argv)
    res, load = on_a_fleet(run, args.rounds, args.containers)
    print(load)
    print("| command | median ms | p10 | p90 |")
    print("|---|---:|---:|---:|")
    for name, s in res["results"].items():
        print(f"| {name} | {fmt_ms(s['median'])} | {fmt_ms(s['p10'])} | {fmt_ms(s['p90'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
