"""Figures for Podman and the Chaos Toolkit extension (printed, not pass/fail).

1. Discovery of N opted-in containers: the agent's `targets` path (discover + evaluate)
   against Docker and against rootful Podman (whose list entries lack HostConfig, so the
   agent inspects each opted-in container once, then caches its network mode): warm (one
   long-lived adapter, as `run`), cold (a fresh adapter, as one CLI call), and one raw list
   call on each socket.
2. One-off `inject pause --detach` then `heal`: the agent's CLI directly vs a Chaos
   Toolkit experiment whose method is the extension's `inject_fault` (same fault).

    .venv/bin/python -m benchmarks.bench_podman_ctk [--n 20] [--rounds 15]

Needs Docker, rootful Podman (scripts/podman-engine.sh), chaos-web:latest in both, and
the Chaos Toolkit venv (.venv-ctk, made by scripts/test.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, interleaved, stats, timed, write_config

IMAGE = "chaos-web:latest"
SOCKETS = {"docker": "unix:///var/run/docker.sock", "podman": "unix:///run/podman/podman.sock"}


def _fleet(api: Any, run_id: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        c = api.create_container(
            IMAGE,
            command=["sleep", "infinity"],
            name=f"{run_id}-{i}",
            labels={"chaos.bench": run_id, "chaos.group": run_id},
            stop_signal="SIGKILL",
        )
        api.start(c["Id"])
        ids.append(str(c["Id"]))
    return ids


def _remove(api: Any, ids: list[str]) -> None:
    for cid in ids:
        try:
            if api.inspect_container(cid)["State"].get("Paused"):
                api.unpause(cid)
            api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001, S110 - best effort
            pass


def discovery(n: int, rounds: int) -> dict[str, Any]:
    import docker

    from agent.adapters.docker_engine import DockerEngine
    from agent.config import load_config
    from agent.wiring import build_engine

    out: dict[str, Any] = {}
    for kind, url in SOCKETS.items():
        api = docker.APIClient(base_url=url, timeout=120, version="auto")
        run_id = f"ctkb{uuid.uuid4().hex[:6]}"
        ids = _fleet(api, run_id, n)
        try:
            with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
                config = load_config(str(write_config(Path(tmp) / "state", "chaos.bench", run_id)))
                engine = build_engine(config, probes=False, docker=DockerEngine(base_url=url))

                def agent_path() -> None:
                    assert len(engine.evaluate(engine.discover())) == n  # noqa: B023

                def agent_cold() -> None:  # a fresh adapter: what one CLI call pays
                    adapter = DockerEngine(base_url=url)  # noqa: B023
                    fresh = build_engine(config, probes=False, docker=adapter)  # noqa: B023
                    assert len(fresh.evaluate(fresh.discover())) == n  # noqa: B023
                    adapter.close()

                def raw_list() -> None:
                    found = api.containers(all=True, filters={"label": f"chaos.bench={run_id}"})  # noqa: B023
                    assert len(found) == n

                samples = interleaved(
                    {"agent": agent_path, "cold": agent_cold, "list": raw_list}, rounds
                )
                out[kind] = {name: stats(xs) for name, xs in samples.items()}
        finally:
            _remove(api, ids)
            api.close()
    return out


EXPERIMENT = {
    "version": "1.0.0",
    "title": "one detached pause",
    "description": "the extension's inject_fault, nothing else",
    "method": [
        {
            "type": "action",
            "name": "pause",
            "provider": {
                "type": "python",
                "module": "chaosagent.actions",
                "func": "inject_fault",
                "arguments": {"fault": "pause", "target": "TARGET", "duration": "60s"},
            },
        }
    ],
}


def ctk_vs_agent(rounds: int) -> dict[str, Any]:
    import docker

    chaos = Path(os.environ.get("CHAOS_CTK_VENV") or REPO / ".venv-ctk") / "bin" / "chaos"
    agent = Path(sys.executable).parent / "chaos-agent"
    api = docker.APIClient(base_url=SOCKETS["docker"], timeout=120)
    run_id = f"ctkb{uuid.uuid4().hex[:6]}"
    ids = _fleet(api, run_id, 3)
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
            cfg = write_config(Path(tmp) / "state", "chaos.bench", run_id)
            env = {**os.environ, "CHAOS_AGENT_CONFIG": str(cfg), "CHAOS_AGENT_BIN": str(agent)}
            target = f"{run_id}-0"
            exp = Path(tmp) / "exp.json"
            EXPERIMENT["method"][0]["provider"]["arguments"]["target"] = target  # type: ignore[index]
            exp.write_text(json.dumps(EXPERIMENT))

            def run(argv: list[str]) -> None:
                subprocess.run(argv, env=env, cwd=tmp, check=True, capture_output=True)

            def heal() -> None:
                run([str(agent), "heal"])
                assert not api.inspect_container(ids[0])["State"]["Paused"]

            direct: list[float] = []
            via_ctk: list[float] = []
            for _ in range(rounds):
                direct.append(timed(lambda: run([str(agent), "inject", "pause", target,
                                                 "--detach", "-d", "60s"])))  # fmt: skip
                heal()
                via_ctk.append(timed(lambda: run([str(chaos), "--no-version-check", "--log-file",
                                                  f"{tmp}/ctk.log", "run", "--journal-path",
                                                  f"{tmp}/j.json", str(exp)])))  # fmt: skip
                heal()
            return {"agent inject --detach": stats(direct), "chaos run (extension)": stats(via_ctk)}
    finally:
        _remove(api, ids)
        api.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ctk-rounds", type=int, default=5)
    args = parser.parse_args()
    t0 = time.monotonic()
    res = {"discovery": discovery(args.n, args.rounds), "one_off": ctk_vs_agent(args.ctk_rounds)}
    for kind, rows in res["discovery"].items():
        for name, s in rows.items():
            print(f"discovery {args.n} on {kind:<6} {name:<6} median {s['median']:7.1f} ms  "
                  f"p90 {s['p90']:7.1f} ms")  # fmt: skip
    for name, s in res["one_off"].items():
        print(f"one-off {name:<24} median {s['median']:7.0f} ms  p90 {s['p90']:7.0f} ms")
    print(f"({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
