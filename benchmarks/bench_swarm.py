"""Docker Swarm figures on three engines in containers (tests/swarm_nodes.py):

- discovery on a 3-node swarm: the agent's Swarm path (one local list call plus the
  manager's /services, /tasks, /nodes) vs one raw list call (the Compose path);
- time until the service converged again after kill and after stop of a task on each
  node, with Swarm's default restart delay (5 s) and with `delay: 0s`;
- a partition on a task through a helper container in its namespace (the route of an
  agent without `pid: host`, agent/faults/network/helper.py): inject and heal, per node.

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


def helper_partition(nodes: SwarmNodes, i: int, rounds: int = 3) -> dict[str, list[float]]:
    """Inject and heal of a partition through a helper container, on a task of node i
    (the agent reaching the node's engine from outside its PID namespace)."""
    import secrets

    from agent.adapters.docker_ports import DockerContainers
    from agent.faults.network import Partition
    from agent.faults.network.route import NetnsRoute
    from agent.model import ActiveFault

    docker = DockerEngine(base_url=nodes.url(i))
    targets = DockerContainers(docker)
    manager = DockerEngine(base_url=nodes.url(0))
    route = NetnsRoute(targets, SwarmCluster(docker, manager=manager))
    fault = Partition(targets)
    fault.opener, fault.caps = route.open, route.caps
    out: dict[str, list[float]] = {"inject": [], "heal": []}
    try:
        for _ in range(rounds):
            entry = next(
                e
                for e in docker.list_containers("com.docker.swarm.service.name=bench_web")
                if e["State"] == "running"
            )
            info = docker.inspect(entry["Id"])
            now = time.time()
            record = ActiveFault(
                fault_id=secrets.token_hex(6), fault="partition", target_kind="container",
                target_id=info["Id"], target_name=entry["Names"][0].lstrip("/"), group="bench/web",
                injected_at=now, deadline=now + 60, started_at=info["State"]["StartedAt"],
            )  # fmt: skip
            t0 = time.perf_counter()
            fault.inject(record)
            out["inject"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            outcome = fault.heal(record)
            out["heal"].append(time.perf_counter() - t0)
            assert outcome.how == "healed", outcome
    finally:
        docker.close()
    return out


def measure(delay: str) -> dict[str, Any]:
    nodes = SwarmNodes(f"bench-swarm-{uuid.uuid4().hex[:6]}", 3, ("chaos.bench", "swarm"))
    out: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        nodes.start(["chaos-web:latest", "chaos-agent:latest"])  # the agent's: helpers
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
                found = helper_partition(nodes, i)
                out[f"partition through a helper, node-{i + 1}"] = {
                    f"node-{i + 1} partition {step} (helper)": v for step, v in found.items()
                }
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
