"""Chaos Toolkit probes: what the agent would fault, what it is faulting, a replica
group's health, and the verdict of the last report. Read-only calls to the agent's CLI."""

from chaoslib.types import Configuration

from chaosagent import agentcli

__all__ = [
    "active_faults",
    "eligible_targets",
    "group_health",
    "healthy_members",
    "last_verdict",
]


def eligible_targets(group: str = "", fault: str = "", configuration: Configuration = None) -> list:
    """Names of the targets the agent may fault now (optionally only in GROUP, and only
    those that allow FAULT)."""
    listed = agentcli.run_json(configuration, "targets")["targets"]
    return [
        t["name"]
        for t in listed
        if t["eligible"]
        and (not group or t["group"] == group)
        and (not fault or fault in t["faults"])
    ]


def active_faults(configuration: Configuration = None) -> list:
    """The faults in the agent's ledger: fault, target_name, group, deadline, heals_in, ..."""
    return agentcli.run_json(configuration, "status")["active"]


def group_health(group: str, configuration: Configuration = None) -> dict:
    """Members of GROUP: how many exist, run, are healthy (running, healthcheck healthy or
    none) and are under a fault. Use it in a steady-state hypothesis with a tolerance such
    as {"type": "jsonpath", "path": "$.healthy", "expect": 3} (needs chaostoolkit-lib's
    jsonpath extra), or use `healthy_members` with a range."""
    listed = agentcli.run_json(configuration, "targets", "--all")["targets"]
    active = {r["target_name"] for r in agentcli.run_json(configuration, "status")["active"]}
    members = [t for t in listed if t["group"] == group]
    running = [t for t in members if t["state"] == "running"]
    healthy = [t for t in running if t["health"] in ("healthy", "none") and t["name"] not in active]
    return {
        "group": group,
        "members": len(members),
        "running": len(running),
        "healthy": len(healthy),
        "faulted": sum(1 for t in members if t["name"] in active),
    }


def healthy_members(group: str, configuration: Configuration = None) -> int:
    """How many members of GROUP run healthy and outside any fault (`group_health`'s
    `healthy`): a number for a range tolerance such as [2, 3]."""
    return int(group_health(group, configuration)["healthy"])


def last_verdict(journal: str = "", configuration: Configuration = None) -> str:
    """The overall verdict of `chaos-agent report` (survived, degraded, outage, unmeasured,
    ...) over the agent's journal (or JOURNAL)."""
    args = ["report"] + (["--journal", journal] if journal else [])
    return str(agentcli.run_json(configuration, *args)["verdict"])
