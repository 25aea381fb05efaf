"""One-off `chaos-agent inject kill X --detach` as a whole process vs `docker kill X` vs a
one-action Chaos Toolkit experiment doing the same kill (when `chaos` is installed).

Comparable: each is a fresh process that returns once the kill was sent. The agent's run
also loads its config, takes the state lock, reconciles the ledger, discovers and
evaluates the targets, pins the identity, writes the ledger (fsync) and the journal.
--detach returns at once; the watchdog is disabled in this config (it would only add a
fork+exec). kill mode is `api` (same Engine API call as the others); between rounds the
container is started again and the ledger cleared (untimed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, stats, timed, write_config

CTK = os.environ.get("CHAOS_BENCH_CTK", "/tmp/chaos-bench-ctk/bin/chaos")


# the typer app, as `chaos-agent inject` ran before agent/quick.py answered it
TYPER_ENTRY = "import sys; from agent.cli import main; sys.argv[0] = 'chaos-agent'; main()"


def agent_command(typer: bool = False) -> list[str]:
    if typer:
        return [sys.executable, "-c", TYPER_ENTRY]
    script = Path(sys.prefix) / "bin" / "chaos-agent"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "agent"]


def run(api: Any, ids: list[str], label: str, value: str, rounds: int = 10) -> dict[str, Any]:
    names = [api.inspect_container(c)["Name"].lstrip("/") for c in ids]
    out: dict[str, Any] = {"agent_command": " ".join(agent_command())}
    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
        state = Path(tmp) / "state"
        cfg = write_config(
            state, label, value, '[faults]\nenabled = ["kill"]\n[faults.kill]\nmode = "api"'
        )
        text = cfg.read_text().replace("[agent]\n", '[agent]\ndeadman = "off"\n', 1)
        text = text.replace("[targets]\n", "[targets]\nmin_replicas = 1\nmin_healthy = 0\n", 1)
        cfg.write_text(text)
        exp = Path(tmp) / "experiment.json"
        ctk_ok = shutil.which(CTK) is not None or Path(CTK).exists()
        env = {**os.environ, "PYTHONPATH": str(REPO)}

        # as installed: compiled modules cached (a pip install writes them)
        agent_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}

        def agent(i: int, typer: bool = False) -> None:
            subprocess.run(
                [*agent_command(typer), "inject", "kill", names[i], "--duration", "60s",
                 "--detach", "--config", str(cfg)],
                check=True, capture_output=True, cwd=tmp, env=agent_env,
            )  # fmt: skip

        def docker_cli(i: int) -> None:
            subprocess.run(["docker", "kill", names[i]], check=True, capture_output=True)

        def ctk(i: int) -> None:
            exp.write_text(
                json.dumps(
                    {
                        "version": "1.0.0",
                        "title": "kill one replica",
                        "description": "one action: SIGKILL a container",
                        "method": [
                            {
                                "type": "action",
                                "name": "kill",
                                "provider": {
                                    "type": "python",
                                    "module": "benchmarks.ctk_actions",
                                    "func": "kill",
                                    "arguments": {"container": names[i]},
                                },
                            }
                        ],
                    }
                )
            )
            result = subprocess.run(
                [CTK, "--no-version-check", "--no-log-file", "run", str(exp),
                 "--journal-path", str(Path(tmp) / "ctk-journal.json")],
                capture_output=True, text=True, cwd=tmp, env=env,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(result.stdout[-500:] + result.stderr[-500:])

        contenders = {
            "chaos-agent inject kill --detach": agent,
            "same, through the typer app": lambda i: agent(i, True),
            "docker kill (CLI)": docker_cli,
        }
        if ctk_ok:
            contenders["Chaos Toolkit one-action experiment"] = ctk
        samples: dict[str, list[float]] = {n: [] for n in contenders}
        order = list(contenders)
        for r in range(rounds + 1):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                i = r % len(ids)
                ms = timed(lambda name=name, i=i: contenders[name](i))
                if r:
                    samples[name].append(ms)
                info = api.inspect_container(ids[i])["State"]
                assert not info["Running"], f"{name} did not kill {names[i]}"
                api.start(ids[i])
                (state / "ledger.json").unlink(missing_ok=True)
                time.sleep(0.02)
        out["results"] = {k: stats(v) for k, v in samples.items()}
        out["ctk"] = "measured" if ctk_ok else f"not measured: {CTK} not installed"
        if ctk_ok:
            out["ctk_version"] = subprocess.run(
                [CTK, "--version"], capture_output=True, text=True
            ).stdout.strip()
    return out
