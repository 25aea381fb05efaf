"""Chaos Toolkit actions: inject a fault on a container or a replica group, heal all,
engage or release the kill switch. Each one is a call to the agent's CLI, so its safety
rules (opt-in, min_replicas, min_healthy, max_per_group, max_concurrent, kill switch) and
its ledger and watchdog apply exactly as for `chaos-agent inject`.
"""

import random
import time
from pathlib import Path

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration

from chaosagent import agentcli

__all__ = [
    "engage_kill_switch",
    "heal_all",
    "inject_fault",
    "inject_fault_on_group",
    "release_kill_switch",
]


def inject_fault(
    fault: str,
    target: str,
    duration: str = "30s",
    force: bool = False,
    configuration: Configuration = None,
) -> dict:
    """Inject FAULT (kill, stop, pause, restart, partition, loss, ...) on the container
    TARGET for DURATION, detached: the agent's watchdog heals at the deadline even if the
    experiment dies. The agent's safety rules apply unless `force`. Returns the ledger
    record of the new fault (fault_id, target_name, group, deadline, ...)."""
    before = {r["fault_id"] for r in _active(configuration)}
    args = ["inject", fault, target, "--duration", duration, "--detach"]
    if force:
        args.append("--force")
    agentcli.run(configuration, *args)
    new = [r for r in _active(configuration) if r["fault_id"] not in before]
    if not new:
        # healed already (a very short duration) or taken by a concurrent agent
        return {"fault": fault, "target_name": target, "duration": duration, "active": False}
    return {**new[0], "active": True}


def inject_fault_on_group(
    fault: str,
    group: str,
    duration: str = "30s",
    configuration: Configuration = None,
) -> dict:
    """Inject FAULT on one eligible member of the replica GROUP (as `chaos-agent targets`
    names it, e.g. `project/web`), chosen at random among those the agent would fault.
    Fails when no member is eligible, with the agent's reasons."""
    listed = agentcli.run_json(configuration, "targets")["targets"]
    members = [t for t in listed if t["group"] == group]
    if not members:
        raise ActivityFailed(f"no target in group {group!r} (see `chaos-agent targets --all`)")
    eligible = [t for t in members if t["eligible"] and fault in t["faults"]]
    if not eligible:
        reasons = "; ".join(
            f"{t['name']}: {t['reason'] or fault + ' not allowed'}" for t in members
        )
        raise ActivityFailed(f"no member of {group!r} may take {fault}: {reasons}")
    victim = random.choice(eligible)  # noqa: S311 - not security
    return inject_fault(fault, victim["name"], duration, configuration=configuration)


def heal_all(configuration: Configuration = None) -> list:
    """Heal every fault in the agent's ledger now (the rollback for every experiment).
    Returns one line per healed fault."""
    out = agentcli.run(configuration, "heal").stdout
    return [line for line in out.splitlines() if line and line != "nothing to heal"]


def engage_kill_switch(timeout: float = 10.0, configuration: Configuration = None) -> dict:
    """Create the agent's kill switch file: a running agent heals everything within a
    second and injects nothing while it exists; `inject` refuses. Faults of detached
    injections (no agent running) are healed here. Returns the switch's path."""
    path = Path(agentcli.config_json(configuration)["agent"]["kill_switch"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    status = agentcli.run_json(configuration, "status")
    if status["agent_pid"] is None and status["active"]:
        heal_all(configuration)
    end = time.monotonic() + timeout
    while agentcli.run_json(configuration, "status")["active"]:
        if time.monotonic() > end:
            raise ActivityFailed(f"faults still active {timeout}s after the kill switch")
        time.sleep(0.5)
    return {"kill_switch": str(path), "engaged": True}


def release_kill_switch(configuration: Configuration = None) -> dict:
    """Remove the kill switch file: faults may be injected again."""
    path = Path(agentcli.config_json(configuration)["agent"]["kill_switch"])
    path.unlink(missing_ok=True)
    return {"kill_switch": str(path), "engaged": False}


def _active(configuration: Configuration) -> list:
    return agentcli.run_json(configuration, "status")["active"]
