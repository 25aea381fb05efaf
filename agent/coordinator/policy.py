"""Coordinator policy: a TOML file on the coordinator host -> a validated, frozen dataclass.

Every error names the file and the key path. Example (every key, with defaults)::

    [fleet]
    max_concurrent = 1        # live leases fleet-wide
    max_per_group = 1         # live leases per group, across hosts
    min_healthy = 1           # healthy replicas per group fleet-wide that must remain
    min_gap = "30s"           # between two grants, fleet-wide
    lease_ttl = "60s"         # a lease not renewed within this is expired
    max_duration = "10m"      # longest fault an agent may ask for
    heal_grace = "30s"        # a slot stays taken until its fault's deadline + this
    report_max_age = "5m"     # older group reports are not counted as healthy replicas
    faults = []               # allowed fault names; empty: any
    windows = []              # e.g. ["Mon-Fri 09:00-17:00"]; empty: any time
    timezone = "UTC"
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import model
from agent.config import TomlTable, Window, check_timezone, parse_window, read_toml_file
from agent.errors import ConfigError

EXAMPLE_POLICY_TOML = """\
# chaos-agent coordinator policy (every key shown with its default)
[fleet]
max_concurrent = 1        # live leases fleet-wide
max_per_group = 1         # live leases per group, across hosts
min_healthy = 1           # healthy replicas per group fleet-wide that must remain
min_gap = "30s"           # minimum time between two grants, fleet-wide
lease_ttl = "60s"         # a lease not renewed within this expires
max_duration = "10m"      # longest fault an agent may ask for
heal_grace = "30s"        # a slot stays taken until its fault's deadline + this, even
                          # if its agent dies: time for the agent's dead-man to heal
report_max_age = "5m"     # older group reports do not count as healthy replicas
faults = []               # allowed faults, e.g. ["pause", "kill"]; empty: any
windows = []              # e.g. ["Mon-Fri 09:00-17:00"]; empty: any time
timezone = "UTC"
"""


@dataclass(frozen=True)
class Policy:
    max_concurrent: int = 1
    max_per_group: int = 1
    min_healthy: int = 1
    min_gap: float = 30.0
    lease_ttl: float = 60.0
    max_duration: float = 600.0
    heal_grace: float = 30.0
    report_max_age: float = 300.0
    faults: frozenset[str] = frozenset()
    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"
    source: str = "<default>"


def parse_policy(data: dict[str, Any], *, source: str = "<policy>") -> Policy:
    root = TomlTable(data, "", source)
    f = root.table("fleet")
    faults = f.str_list("faults", ())
    for i, name in enumerate(faults):
        if name not in model.ALL_FAULTS:
            raise ConfigError(
                f"{source}: fleet.faults[{i}]: unknown fault {name!r} "
                f"(known: {', '.join(model.ALL_FAULTS)})"
            )
    windows_raw = f.str_list("windows", ())
    policy = Policy(
        max_concurrent=f.int("max_concurrent", 1, minimum=0, maximum=10_000),
        max_per_group=f.int("max_per_group", 1, minimum=0, maximum=10_000),
        min_healthy=f.int("min_healthy", 1, minimum=0, maximum=10_000),
        min_gap=f.duration("min_gap", 30.0),
        lease_ttl=f.duration("lease_ttl", 60.0, minimum=1.0),
        max_duration=f.duration("max_duration", 600.0, minimum=0.1),
        heal_grace=f.duration("heal_grace", 30.0, minimum=5.0),
        report_max_age=f.duration("report_max_age", 300.0, minimum=1.0),
        faults=frozenset(faults),
        windows=tuple(
            parse_window(w, f"{source}: fleet.windows[{i}]") for i, w in enumerate(windows_raw)
        ),
        timezone=f.str("timezone", "UTC"),
        source=source,
    )
    check_timezone(policy.timezone, f"{source}: fleet.timezone")
    if policy.lease_ttl > 86400:
        raise f.err("lease_ttl", "must be at most 1d")
    if policy.heal_grace > 3600:
        raise f.err("heal_grace", "must be at most 1h")
    f.done()
    root.done()
    return policy


def load_policy(path: str | os.PathLike[str]) -> Policy:
    data = read_toml_file(
        path, what="policy file", missing_hint="create it with `coordinator init`"
    )
    p = Path(path)
    return parse_policy(data, source=str(p))
