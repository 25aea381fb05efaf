"""What there is to fault: discover targets, and pin a target's identity right before inject.

Containers come from one label-filtered list call to the Docker Engine; host processes
from the configured process groups. `pin` re-reads the target so a container that was
recreated, or a PID that was reused, is never faulted on a stale identity.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from agent.adapters import hostpid
from agent.adapters.docker_engine import DockerEngine, target_from_list_entry
from agent.config import Config
from agent.errors import DockerUnavailable, NotEligible, TargetGone
from agent.model import LABEL_NETNS_HELPER, NETWORK_FAULTS, Identity, Target
from agent.swarm import SwarmCluster, targets_from_snapshot

# the faults whose refusal reads a target's namespace sharers (disconnect acts on the
# container's own endpoints, not inside the shared namespace)
NETNS_FAULTS = frozenset(NETWORK_FAULTS) - {"disconnect"}


def discover_containers(
    config: Config, docker: DockerEngine, self_id: str, cluster: SwarmCluster | None = None
) -> list[Target]:
    label = f"{config.targets.label}={config.targets.value}"
    if cluster is not None and cluster.active():
        # Swarm mode: groups are services across nodes (agent/swarm.py)
        found = targets_from_snapshot(
            cluster.snapshot(),
            docker.list_containers(label),
            label=config.targets.label,
            value=config.targets.value,
            self_id=self_id,
        )
    else:
        found = [
            target_from_list_entry(
                entry, label=config.targets.label, value=config.targets.value, self_id=self_id
            )
            for entry in docker.list_containers(label)
        ]
    if not found or not needs_netns_sharers(config):
        return found
    # a sharer need not be opted in: one list of every container, once per discovery
    return with_netns_sharers(found, docker.list_containers(None))


def discover_all_containers(config: Config, docker: DockerEngine, self_id: str) -> list[Target]:
    """Every container, opted in or not (for `targets --all`)."""
    entries = docker.list_containers(None)
    found = [
        target_from_list_entry(
            entry, label=config.targets.label, value=config.targets.value, self_id=self_id
        )
        for entry in entries
    ]
    return with_netns_sharers(found, entries)


def needs_netns_sharers(config: Config) -> bool:
    """Whether a fault that refuses containers sharing a namespace is enabled."""
    return any(f in NETNS_FAULTS for f in config.faults.enabled)


def netns_refs(entries: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(the container referred to, the sharer's name) for every network_mode container:<ref>."""
    refs = []
    for entry in entries:
        mode = str((entry.get("HostConfig") or {}).get("NetworkMode", ""))
        ref = mode.split(":", 1)[1] if mode.startswith("container:") else ""
        if ref and LABEL_NETNS_HELPER not in (entry.get("Labels") or {}):  # not our helper
            names = entry.get("Names") or [str(entry.get("Id", ""))[:12]]
            refs.append((ref, str(names[0]).lstrip("/")))
    return refs


def with_netns_sharers(
    targets: Sequence[Target], entries: Sequence[Mapping[str, Any]]
) -> list[Target]:
    """The targets, each container with its namespace sharers, from one container list."""
    refs = netns_refs(entries)
    if not refs:
        return list(targets)
    out = []
    for t in targets:
        if t.kind == "container" and not t.remote:
            name = t.name.lstrip("/")
            sharers = sorted(s for ref, s in refs if t.id.startswith(ref) or ref == name)
            t = replace(t, netns_sharers=tuple(sharers))
        out.append(t)
    return out


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


def make_pin(docker: DockerEngine) -> Callable[[Target], Identity]:
    def pin(target: Target) -> Identity:
        if target.kind == "process":
            _, pid_text, created = target.id.split(":", 2)
            pid = int(pid_text)
            now_created = hostpid.process_create_time(pid)
            if abs(now_created - float(created)) > 0.05:
                raise TargetGone(f"process {pid} was replaced (PID reused)")
            return Identity(started_at=created, pid=pid)
        info = docker.inspect(target.id)
        state = info.get("State", {})
        if info.get("Id") != target.id:
            raise TargetGone(f"container {target.name} was recreated")
        if not state.get("Running") or state.get("Paused"):
            raise NotEligible(f"{target.name} is no longer running")
        return Identity(started_at=str(state.get("StartedAt", "")), pid=int(state.get("Pid") or 0))

    return pin
