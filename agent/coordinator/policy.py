"""Coordinator policy: a TOML file on the coordinator host -> a validated, frozen dataclass.

Every error names the file and the key path. The `[fleet]` table and every one of its
keys are required: a file cut short (an empty file, a `cat new > policy.toml` read
half-way) is refused, never a permissive default. Replace the file by rename
(write `policy.toml.new`, then `mv`); a file that changes while it is read is refused.
Example (every key, with defaults)::

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

    [reporters]               # optional: hosts whose reports count for a group
    "shop/db" = ["db-a", "db-b"]
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import model
from agent.config import TomlTable, decode_toml
from agent.coordinator import protocol
from agent.errors import ConfigError
from agent.windows import Window, check_timezone, parse_window

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

# [reporters]             # hosts whose health reports count for a group, fleet-wide;
# "shop/db" = ["db-a", "db-b"]   # an unlisted group counts only the requester's own report
"""

# A policy must set each of these: a file cut short is refused instead of read as defaults.
REQUIRED_FLEET_KEYS = (
    "max_concurrent",
    "max_per_group",
    "min_healthy",
    "min_gap",
    "lease_ttl",
    "max_duration",
    "report_max_age",
    "faults",
    "windows",
    "timezone",
)


@dataclass(frozen=True)
class FleetPolicy:
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
    reporters: Mapping[str, frozenset[str]] = field(default_factory=dict)
    source: str = "<default>"

    def counts_report(self, host: str, group: str, requester: str) -> bool:
        """Whether `host`'s health report counts for `group` when `requester` asks.

        A declared group counts its listed hosts; an undeclared one only the requester's
        own report: one agent key never vouches for replicas it does not run."""
        listed = self.reporters.get(group)
        return host in listed if listed is not None else host == requester


def parse_policy(data: dict[str, Any], *, source: str = "<policy>") -> FleetPolicy:
    root = TomlTable(data, "", source)
    unknown = sorted(set(root.data) - {"fleet", "reporters"})
    if unknown:
        raise root.err(unknown[0], "unknown table (a policy has [fleet] and [reporters])")
    if not root.has("fleet"):
        raise ConfigError(f"{source}: no [fleet] table (an empty or truncated file is refused)")
    f = root.table("fleet")
    missing = [key for key in REQUIRED_FLEET_KEYS if not f.has(key)]
    if missing:
        raise f.err(
            missing[0],
            f"missing ({len(missing)} required key(s) absent: the file is cut short or "
            "incomplete; `coordinator init` writes every key)",
        )
    faults = f.str_list("faults", ())
    for i, name in enumerate(faults):
        if name not in model.ALL_FAULTS:
            raise ConfigError(
                f"{source}: fleet.faults[{i}]: unknown fault {name!r} "
                f"(known: {', '.join(model.ALL_FAULTS)})"
            )
    windows_raw = f.str_list("windows", ())
    policy = FleetPolicy(
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
    policy = dataclasses.replace(policy, reporters=_reporters(root.table("reporters")))
    check_timezone(policy.timezone, f"{source}: fleet.timezone")
    if policy.lease_ttl > 86400:
        raise f.err("lease_ttl", "must be at most 1d")
    if policy.heal_grace > 3600:
        raise f.err("heal_grace", "must be at most 1h")
    f.done()
    root.done()
    return policy


DEFAULT_FLEET: dict[str, Any] = {
    "max_concurrent": 1,
    "max_per_group": 1,
    "min_healthy": 1,
    "min_gap": "30s",
    "lease_ttl": "60s",
    "max_duration": "10m",
    "report_max_age": "5m",
    "faults": [],
    "windows": [],
    "timezone": "UTC",
}


def policy_text(reporters: Mapping[str, list[str]] | None = None, **fleet: Any) -> str:
    """A complete policy file: every [fleet] key at its default unless given."""
    values = {**DEFAULT_FLEET, **fleet}
    lines = ["[fleet]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    if reporters:
        lines += [
            "[reporters]",
            *(f"{json.dumps(g)} = {json.dumps(h)}" for g, h in reporters.items()),
        ]
    return "\n".join(lines) + "\n"


def _reporters(table: TomlTable) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for group in sorted(table.data):
        hosts = table.str_list(group, ())
        for name in hosts:
            if not protocol.valid_host(name):
                raise table.err(group, f"invalid host name {str(name)[:80]!r}")
        out[group] = frozenset(hosts)
    return out


Stamp = tuple[int, int, int, int]  # (device, inode, size, mtime_ns)


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_stable(path: str | os.PathLike[str]) -> tuple[str, Stamp]:
    """The file's text and identity, refused if it changed while being read."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            before = _stamp(os.fstat(fh.fileno()))
            raw = fh.read()
            after = _stamp(os.fstat(fh.fileno()))
        named = _stamp(os.stat(p))
    except FileNotFoundError:
        raise ConfigError(
            f"policy file {p} does not exist (create it with `coordinator init`)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"policy file {p} cannot be read: {exc.strerror}") from None
    if before != after or after != named or len(raw) != after[2]:
        raise ConfigError(
            f"policy file {p} changed while being read (replace it by rename: write a new "
            "file, then mv it over the old one)"
        )
    try:
        return raw.decode("utf-8"), after
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not valid UTF-8 at byte {exc.start}") from None


def load_policy_stamped(path: str | os.PathLike[str]) -> tuple[FleetPolicy, Stamp]:
    text, stamp = read_stable(path)
    source = str(Path(path))
    return parse_policy(decode_toml(text, source=source), source=source), stamp


def load_policy(path: str | os.PathLike[str]) -> FleetPolicy:
    return load_policy_stamped(path)[0]
