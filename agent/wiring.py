"""Builds the engine from the configuration: real or dry adapters, local or SSH leases."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.adapters.docker_engine import DockerEngine, own_container_id
from agent.adapters.docker_ports import DockerContainers
from agent.config import Config
from agent.discovery import discover_all_containers, discover_containers, make_discover, make_pin
from agent.engine import Engine
from agent.errors import AgentError
from agent.faults.base import Fault, FaultRegistry
from agent.faults.container import container_faults
from agent.faults.dryrun import DryRunFault
from agent.faults.swarm import swarm_aware
from agent.journal import Journal
from agent.leases import LeaseProvider, LocalLeases
from agent.ledger import Ledger, MemoryLedger
from agent.model import NETWORK_FAULTS, PROCESS_FAULTS, Target
from agent.planner import timing_from_schedule
from agent.selection import Policy, enabled_faults, policy_from_config
from agent.swarm import SwarmCluster

if TYPE_CHECKING:
    from agent.faults.network.route import NetnsRoute

__all__ = ["build_engine", "build_registry", "discover_all_containers", "make_leases"]


def build_registry(
    config: Config,
    docker: DockerEngine,
    warn: Callable[[str], None] | None = None,
    cluster: SwarmCluster | None = None,
    route: Callable[[], NetnsRoute] | None = None,
) -> FaultRegistry:
    """Container faults now; network and process faults (their modules, psutil) on first
    use. On a Swarm node, tasks get Swarm-correct heals and refusals (agent/faults/swarm.py)."""
    cluster = cluster or SwarmCluster(docker)

    def network() -> list[Fault]:
        from agent.faults.network import network_faults

        return swarm_aware(network_faults(docker, config), docker, cluster, route and route())

    def process() -> list[Fault]:
        from agent.faults.process import process_faults

        return process_faults(config)  # swarm_aware wraps container faults only

    containers = list(container_faults(DockerContainers(docker), warn))
    registry = FaultRegistry(swarm_aware(containers, docker, cluster))
    registry.add_family("container", NETWORK_FAULTS, network)
    registry.add_family("process", PROCESS_FAULTS, process)
    return registry


def make_leases(config: Config) -> LeaseProvider:
    if not config.coordinator.enabled:
        return LocalLeases()
    from agent.coordinator.client import CoordinatorLeases

    return CoordinatorLeases(config.coordinator, host=config.agent.host)


def deadman_arming(
    config: Config, config_path: str | None, docker: DockerEngine
) -> Callable[[], Any]:
    """Arm the dead-man heal (agent.deadman) for the run that holds the state lock."""

    def arm() -> Any:
        from agent.deadman import arm as arm_deadman
        from agent.ledger import lock_holder

        owner = lock_holder(config.agent.state_dir)
        if owner is None:
            raise OSError("the state lock is not held: no dead-man to arm")
        try:
            return arm_deadman(
                config.agent.deadman,
                state_dir=config.agent.state_dir,
                owner=owner,
                config_path=config_path,
                docker=docker,
                agent_container=own_container_id(),
            )
        except AgentError as exc:  # the engine reports an arming failure as an OSError
            raise OSError(exc.one_line()) from None

    return arm


class Ops:
    """What an operator leaves running beside the loop: metrics, notifications, systemd."""

    def __init__(self) -> None:
        self.metrics: Any = None
        self.exporter: Any = None
        self.notifier: Any = None
        from agent.systemd import SystemdNotifier  # `run` only: keeps shutil out of one-offs

        self.systemd = SystemdNotifier()
        self._snapshot_at = 0.0

    def on_tick(self, engine: Engine) -> None:
        self.systemd.tick(engine.describe() if not self.systemd.ready_sent else "")
        if self.metrics is not None and time.monotonic() - self._snapshot_at >= 5.0:
            self._snapshot_at = time.monotonic()
            try:
                from agent.live import snapshot

                self.metrics.update_from_snapshot(snapshot(engine))
            except Exception:  # noqa: BLE001, S110 - metrics never break the loop
                pass

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.stop(timeout=5.0)
        if self.exporter is not None:
            self.exporter.stop()


def attach_ops(engine: Engine, config: Config) -> Ops:
    """Subscribe metrics and notifications to the journal and start them (for `run`)."""
    ops = Ops()
    probes = {p.name: p.groups for p in config.probes}  # judged faults wait for each
    if config.metrics.enabled or config.metrics.textfile:
        from agent.metrics import Metrics, MetricsExporter

        ops.metrics = Metrics(host=config.agent.host, window=config.stop.window, probes=probes)
        engine.journal.subscribe(ops.metrics.observe)
        ops.exporter = MetricsExporter(config.metrics, ops.metrics)
        ops.exporter.start()
    if config.notify.targets:
        from agent.notify import Notifier

        count = None
        if ops.metrics is not None:
            ops.metrics.known_notify_targets([t.name for t in config.notify.targets])
            count = ops.metrics.count_notification
        ops.notifier = Notifier(config.notify, count=count, probes=probes)
        engine.journal.subscribe(ops.notifier.observe)
        ops.notifier.start()
    return ops


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
    routes: list[NetnsRoute] = []

    def route() -> NetnsRoute:
        """How namespaces are entered, for faults and sweep alike (built on first use)."""
        if not routes:
            from agent.faults.network.route import NetnsRoute

            routes.append(NetnsRoute(DockerContainers(docker), cluster))
        return routes[0]

    registry = build_registry(config, docker, warn=log, cluster=cluster, route=route)
    # check only what may be chosen: the capability check costs subprocesses
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
    journal = Journal(
        config.agent.journal, host=config.agent.host, seed=seed, dry_run=dry_run,
        max_bytes=config.agent.journal_max_bytes, keep=config.agent.journal_keep,
    )  # fmt: skip
    if dry_run:
        registry = FaultRegistry(DryRunFault(f, log) for f in registry.all())
        ledger: Any = MemoryLedger()
        leases: LeaseProvider = LocalLeases()
        spawn = None
    else:
        ledger = Ledger(config.agent.state_dir)
        leases = make_leases(config)
        spawn = (
            deadman_arming(config, config_path, docker) if config.agent.deadman != "off" else None
        )
    sweep = None
    if not dry_run:

        def sweep(owned: set[str]) -> list[str]:
            # only the containers this agent may target: another agent's
            # live rules on other containers are not leftovers of ours
            mine = {t.id for t in discover_containers(config, docker, "")}
            return route().sweep(owned, mine)

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
        arm_deadman=spawn,
        log=log,
    )
