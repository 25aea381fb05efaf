"""What there is to fault: discover targets, and pin a target's identity right before inject.

Containers come from one label-filtered list call to the Docker Engine; host processes
from the configured process groups. `pin` re-reads the target so a container that was
recreated, or a PID that was reused, is never faulted on a stale identity.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from agent.adapters import hostpid
from agent.adapters.docker_engine import DockerEngine, target_from_list_entry
from agent.config import Config
from agent.errors import DockerUnavailable, NotEligible, TargetGone
from agent.model import Pinned, Target
from agent.swarm import SwarmCluster, targets_from_snapshot


def discover_containers(
    config: Config, docker: DockerEngine, self_id: str, cluster: SwarmCluster | None = None
) -> list[Target]:
    label = f"{config.targets.label}={config.targets.value}"
    if cluster is not None and cluster.active():
        # Swarm mode: groups are services across nodes (agent/swarm.py)
        return targets_from_snapshot(
            cluster.snapshot(),
            docker.list_containers(label),
            label=config.targets.label,
            value=config.targets.value,
            self_id=self_id,
        )
    return [
        target_from_list_entry(
            entry, label=config.targets.label, value=config.targets.value, self_id=self_id
        )
        for entry in docker.list_containers(label)
    ]


def discover_all_containers(config: Config, docker: DockerEngine, self_id: str) -> list[Target]:
    """Every container, opted in or not (for `targets --all`)."""
    return [
        target_from_list_entry(
            entry, label=config.targets.label, value=config.targets.value, self_id=self_id
        )
        for entry in docker.list_containers(None)
    ]


def make_discover(
    config: Config, docker: DockerEngine, self_id: str, cluster: SwarmCluster | None = None
) -> Callable[[], list[Target]]:
    def discover() -> list[Target]:
        found: list[Target] = []
        try:
            found.extend(discover_containers(config, docker, self_id, cluster))
        except DockerUnavailable:
            if not config.processes:
                raise
        if config.processes:
            try:
                from agent.adapters.processes import discover_processes
            except ImportError:
                pass
            else:
                found.extend(discover_processes(config.processes, self_pid=os.getpid()))
        return found

    return discover


def make_pin(docker: DockerEngine) -> Callable[[Target], Pinned]:
    def pin(target: Target) -> Pinned:
        if target.kind == "process":
            _, pid_text, created = target.id.split(":", 2)
            pid = int(pid_text)
            now_created = hostpid.process_create_time(pid)
            if abs(now_created - float(created)) > 0.05:
                raise TargetGone(f"process {pid} was replaced (PID reused)")
            return Pinned(started_at=created, pid=pid)
        info = docker.inspect(target.id)
        state = info.get("State", {})
        if info.get("Id") != target.id:
            raise TargetGone(f"container {target.name} was recreated")
        if not state.get("Running") or state.get("Paused"):
            raise NotEligible(f"{target.name} is no longer running")
        return Pinned(started_at=str(state.get("StartedAt", "")), pid=int(state.get("Pid") or 0))

    return pin
