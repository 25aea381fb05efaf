"""Builds the engine from the configuration: real or dry adapters, local or SSH leases."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.adapters import hostpid
from agent.adapters.docker_engine import DockerEngine, own_container_id, target_from_list_entry
from agent.config import Config
from agent.engine import DryRunFault, Engine, MemoryLedger, Pinned
from agent.errors import DockerUnavailable, NotEligible, TargetGone
from agent.faults.base import Fault, FaultRegistry
from agent.faults.container import container_faults
from agent.faults.swarm import swarm_aware
from agent.journal import Journal
from agent.leases import LeaseProvider, LocalLeases
from agent.ledger import Ledger
from agent.model import Target
from agent.planner import timing_from_schedule
from agent.selection import Policy, enabled_faults, policy_from_config
from agent.swarm import SwarmCluster, targets_from_snapshot


def build_registry(
    config: Config,
    docker: DockerEngine,
    warn: Callable[[str], None] | None = None,
    cluster: SwarmCluster | None = None,
) -> FaultRegistry:
    faults: list[Fault] = list(container_faults(docker, warn))
    try:
        from agent.faults.network import network_faults
    except ImportError:
        pass
    else:
        faults.extend(network_faults(docker, config))
    try:
        from agent.faults.process import process_faults
    except ImportError:
        pass
    else:
        faults.extend(process_faults(config))
    # on a Swarm node, tasks get Swarm-correct heals and refusals (agent/faults/swarm.py)
    return FaultRegistry(swarm_aware(faults, docker, cluster or SwarmCluster(docker)))


def discover_containers(
    config: Config, docker: DockerEngine, self_id: str, cluster: SwarmCluster | None = None
) -> list[Target]:
    label = f"{config.targets.label}={config.targets.value}"
    if cluster is not None and cluster.active():
        entries = docker.list_containers(label)
        return targets_from_snapshot(
            cluster.snapshot(),
            entries,
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


def make_leases(config: Config) -> LeaseProvider:
    if not config.coordinator.enabled:
        return LocalLeases()
    from agent.coordinator.client import CoordinatorLeases

    return CoordinatorLeases(config.coordinator, host=config.agent.host)


def watchdog_spawner(config: Config, config_path: str | None) -> Callable[[], Any]:
    def spawn() -> subprocess.Popen[bytes]:
        args = [
            sys.executable, "-m", "agent.watchdog",
            "--state-dir", str(config.agent.state_dir),
            "--agent-pid", str(os.getpid()),
        ]  # fmt: skip
        if config_path:
            args += ["--config", str(Path(config_path).resolve())]
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives a SIGKILL of the agent's process group
            close_fds=True,
        )

    return spawn


def build_engine(
    config: Config,
    *,
    dry_run: bool = False,
    seed: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
    config_path: str | None = None,
    probes: bool = True,
    docker: DockerEngine | None = None,
) -> Engine:
    docker = docker or DockerEngine()
    cluster = SwarmCluster(docker)
    registry = build_registry(config, docker, warn=log, cluster=cluster)
    # probe only what may be chosen: the capability probe costs subprocesses
    enabled = {(kind, name) for kind, names in enabled_faults(config).items() for name in names}
    unavailable = registry.unavailable(only=enabled)

    def refuse(target: Target, fault_name: str) -> str | None:
        fault = registry.get(target.kind, fault_name)
        return fault.refuse(target) if fault is not None else "unknown fault"

    policy: Policy = policy_from_config(config, unavailable=unavailable, refuse=refuse)
    timing = timing_from_schedule(config.schedule, stuck_after=config.agent.heal_retries)
    if seed is None:
        seed = config.agent.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    journal = Journal(config.agent.journal, host=config.agent.host, seed=seed, dry_run=dry_run)
    if dry_run:
        registry = FaultRegistry(DryRunFault(f, log) for f in registry.all())
        ledger: Any = MemoryLedger()
        leases: LeaseProvider = LocalLeases()
        spawn = None
    else:
        ledger = Ledger(config.agent.state_dir)
        leases = make_leases(config)
        spawn = watchdog_spawner(config, config_path) if config.agent.watchdog else None
    sweep = None
    if not dry_run:
        try:
            from agent.faults.network import sweep_network_leftovers
        except ImportError:
            pass
        else:

            def sweep(owned: set[str]) -> list[str]:
                # only the containers this agent may target: another agent's
                # live rules on other containers are not leftovers of ours
                mine = {t.id for t in discover_containers(config, docker, "")}
                return sweep_network_leftovers(docker, owned, only=mine)

    runner = None
    if probes and config.probes:
        from agent.probes import ProbeRunner

        runner = ProbeRunner(config.probes, journal, window=config.stop.window)
    return Engine(
        config=config,
        registry=registry,
        policy=policy,
        timing=timing,
        discover=make_discover(config, docker, own_container_id(), cluster),
        pin=make_pin(docker),
        ledger=ledger,
        journal=journal,
        leases=leases,
        rng=random.Random(seed),
        dry_run=dry_run,
        probes=runner,
        sweep=sweep,
        start_watchdog=spawn,
        log=log,
    )
