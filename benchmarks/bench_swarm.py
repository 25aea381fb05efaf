"""Docker Swarm figures on three engines in containers (tests/swarm_nodes.py):

- discovery on a 3-node swarm: the agent's Swarm path (one local list call plus the
  manager's /services, /tasks, /nodes) vs one raw list call (the Compose path);
- time until the service converged again after kill and after stop of a task on each
  node, with Swarm's default restart delay (5 s) and with `delay: 0s`.

Standalone (boots its own nodes, removes them): `python -m benchmarks.bench_swarm`.
About 2-3 minutes. Prints a Markdown table.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agent.adapters.docker_engine import DockerEngine
from agent.swarm import SwarmCluster, targets_from_snapshot
from tests.swarm_nodes import SwarmNodes

STACK = """\
version: "3.8"
services:
  web:
    image: chaos-web:latest
    labels:
      chaos.enable: "true"
    stop_grace_period: 2s
    deploy:
      endpoint_mode: dnsrr
      replicas: 6
      placement:
        max_replicas_per_node: 2
      restart_policy:
        condition: any
        delay: {delay}
"""


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f} ms (p90 {sorted(samples)[int(len(samples) * 0.9)] * 1000:.1f})"


def discovery(nodes: SwarmNodes, rounds: int = 30) -> dict[str, list[float]]:
    docker = DockerEngine(base_url=nodes.url(0))
    cluster = SwarmCluster(docker)
    cluster.active()
    one_list: list[float] = []
    swarm_path: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        docker.list_containers("chaos.enable=true")
        one_list.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        entries = docker.list_containers("chaos.enable=true")
        targets_from_snapshot(cluster.snapshot(), entries, label="chaos.enable", value="true")
        swarm_path.append(time.perf_counter() - t0)
    docker.close()
    return {"one list call": one_list, "swarm discovery (4 calls)": swarm_path}


def converge_once(nodes: SwarmNodes, i: int, fault: str) -> float:
    docker = DockerEngine(base_url=nodes.url(i))
    cluster = SwarmCluster(docker, manager=DockerEngine(base_url=nodes.url(0)))
    cluster.active()
    from agent.swarm import convergence

    snap = cluster.snapshot()
    entries = docker.list_containers("com.docker.swarm.service.name=bench_web")
    victim = next(e for e in entries if e["State"] == "running")
    sid = victim["Labels"]["com.docker.swarm.service.id"]
    since = time.time()
    if fault == "kill":
        docker.kill(victim["Id"], "SIGKILL")
    else:
        docker.stop(victim["Id"], 10)
    while True:
        conv = convergence(cluster.snapshot(), sid, since, dead=victim["Id"])
        if conv.converged and conv.at is not None:
            break
        time.sleep(0.2)
    del snap
    docker.close()
    return conv.at - since


def measure(delay: str) -> dict[str, Any]:
    nodes = SwarmNodes(f"bench-swarm-{uuid.uuid4().hex[:6]}", 3, ("chaos.bench", "swarm"))
    out: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        nodes.start(["chaos-web:latest"])
        out["boot+load+join s"] = time.monotonic() - t0
        with tempfile.TemporaryDirectory() as tmp:
            stack = Path(tmp) / "stack.yml"
            stack.write_text(STACK.format(delay=delay))
            t0 = time.monotonic()
            nodes.deploy("bench", stack)
            nodes.wait_running("bench_web", 6, timeout=180)
            out["deploy s"] = time.monotonic() - t0
        if delay == "5s":
            out["discovery"] = discovery(nodes)
        for i in range(3):
            for fault in ("kill", "stop"):
                nodes.wait_running("bench_web", 6, timeout=180)
                out[f"{fault} on node-{i + 1} s"] = converge_once(nodes, i, fault)
    finally:
        nodes.close()
    return out


def main() -> None:
    for delay in ("5s", "0s"):
        res = measure(delay)
        print(f"\n### restart_policy delay {delay}\n")
        print("| figure | value |\n|---|---|")
        for key, value in res.items():
            if isinstance(value, dict):
                for name, samples in value.items():
                    print(f"| {name} | {_ms(samples)} |")
            else:
                print(f"| {key} | {value:.1f} |")


if __name__ == "__main__":
    main()
