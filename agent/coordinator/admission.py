"""Pure admission logic: policy + live leases + reports + now -> grant or refusal.

No I/O, no clock: the store reads the state inside one serialized transaction,
calls these functions, and writes what they decide. `now` is the coordinator's
monotonic clock (seconds); `wall` is only used for time windows.

Fleet-wide healthy replicas of a group are the sum of each host's latest fresh
report (the requester's own report replaces its stored one), counting only the hosts
the policy's `[reporters]` lists for that group; an unlisted group counts only the
requester's own report, so one agent key cannot vouch for replicas it does not run. Every live lease in
the group is subtracted again, even if its host already reported the faulted
replica as unhealthy: counting it twice errs on the safe side.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from agent.coordinator.policy import FleetPolicy
from agent.windows import in_window

RefusalCode = Literal[
    "halted",
    "max_concurrent",
    "max_per_group",
    "min_healthy",
    "min_gap",
    "window",
    "fault_not_allowed",
    "too_long",
    "expired",
    "stale_token",
    "unknown_lease",
    "not_owner",
    "overrun",
    "not_reporter",
]


@dataclass(frozen=True)
class LiveLease:
    lease_id: str
    host: str
    group: str
    token: int
    granted_at: float
    expires_at: float
    duration: float
    fault: str = ""


@dataclass(frozen=True)
class GroupHealth:
    host: str
    group: str
    members: int
    running: int
    healthy: int
    at: float  # coordinator clock when reported


@dataclass(frozen=True)
class AcquireRequest:
    host: str
    group: str
    fault: str
    duration: float
    report: GroupHealth


@dataclass(frozen=True)
class FleetState:
    halted: bool
    leases: tuple[LiveLease, ...]  # not released and not yet marked expired
    last_grant_at: float | None
    reports: tuple[GroupHealth, ...]


@dataclass(frozen=True)
class Grant:
    expires_at: float
    ttl: float


@dataclass(frozen=True)
class Refusal:
    code: RefusalCode
    reason: str


def held_until(policy: FleetPolicy, granted_at: float, duration: float) -> float:
    """The fleet invariant: a slot is never free while the fault that took it may
    still be in effect. The agent injects right after the grant and heals at
    granted_at + duration; if it dies, its dead-man heals a few seconds later
    (agent.watchdog.GRACE); heal_grace covers both. Renewals cannot shorten this;
    only a release (the agent healed) frees the slot earlier."""
    return granted_at + duration + policy.heal_grace


def live(leases: Iterable[LiveLease], now: float) -> tuple[LiveLease, ...]:
    """A lease is live while now < expires_at."""
    return tuple(lease for lease in leases if now < lease.expires_at)


def in_windows(policy: FleetPolicy, wall: dt.datetime) -> bool:
    return in_window(wall, policy.windows, policy.timezone)


def fleet_healthy(
    policy: FleetPolicy, state: FleetState, request: AcquireRequest, now: float
) -> int:
    latest: dict[str, GroupHealth] = {}
    for report in state.reports:
        if report.group != request.group or now - report.at > policy.report_max_age:
            continue
        if policy.counts_report(report.host, request.group, request.host):
            latest[report.host] = report
    latest[request.host] = request.report
    return sum(r.healthy for r in latest.values())


def admit(
    policy: FleetPolicy, state: FleetState, request: AcquireRequest, now: float, wall: dt.datetime
) -> Grant | Refusal:
    if state.halted:
        return Refusal("halted", "the coordinator is halted (`coordinator resume` to allow faults)")
    if policy.faults and request.fault not in policy.faults:
        return Refusal("fault_not_allowed", f"fault {request.fault!r} is not allowed by policy")
    if request.duration > policy.max_duration:
        return Refusal(
            "too_long",
            f"duration {request.duration:g}s exceeds max_duration {policy.max_duration:g}s",
        )
    if not in_windows(policy, wall):
        return Refusal("window", "outside the policy's time windows")
    if not policy.counts_report(request.host, request.group, request.host):
        return Refusal(
            "not_reporter",
            f"host {request.host!r} is not among the policy's reporters for group "
            f"{request.group!r}",
        )
    active = live(state.leases, now)
    if len(active) >= policy.max_concurrent:
        return Refusal(
            "max_concurrent",
            f"{len(active)} fault(s) live fleet-wide, max_concurrent is {policy.max_concurrent}",
        )
    in_group = [lease for lease in active if lease.group == request.group]
    if len(in_group) >= policy.max_per_group:
        return Refusal(
            "max_per_group",
            f"{len(in_group)} fault(s) live in group {request.group!r}, "
            f"max_per_group is {policy.max_per_group}",
        )
    if state.last_grant_at is not None and now - state.last_grant_at < policy.min_gap:
        wait = policy.min_gap - (now - state.last_grant_at)
        return Refusal("min_gap", f"min_gap {policy.min_gap:g}s not elapsed ({wait:.1f}s left)")
    healthy = fleet_healthy(policy, state, request, now)
    remaining = healthy - len(in_group) - 1
    if remaining < policy.min_healthy:
        return Refusal(
            "min_healthy",
            f"group {request.group!r} has {healthy} healthy replica(s) fleet-wide and "
            f"{len(in_group)} under fault; one more would leave {max(remaining, 0)}, "
            f"min_healthy is {policy.min_healthy}",
        )
    return Grant(
        expires_at=max(now + policy.lease_ttl, held_until(policy, now, request.duration)),
        ttl=policy.lease_ttl,
    )


def check_renew(
    policy: FleetPolicy,
    state: FleetState,
    lease: LiveLease | None,
    host: str,
    token: int,
    now: float,
    wall: dt.datetime,
) -> Grant | Refusal:
    """`lease` is the stored record for the lease id (None if unknown or already ended)."""
    if lease is None:
        return Refusal("unknown_lease", "no such live lease (released or expired)")
    if lease.host != host:
        return Refusal("not_owner", "the lease belongs to another host")
    if token != lease.token:
        return Refusal("stale_token", f"stale fencing token {token} (current {lease.token})")
    if now >= lease.expires_at:
        return Refusal("expired", "the lease expired before it was renewed")
    if state.halted:
        return Refusal("halted", "the coordinator is halted: heal now")
    if not in_windows(policy, wall):
        return Refusal("window", "the policy's time window has closed: heal now")
    if now > lease.granted_at + lease.duration + policy.lease_ttl:
        return Refusal("overrun", "the fault has outlived its requested duration: heal now")
    return _still_allowed(policy, state, lease, now) or Grant(
        expires_at=max(
            now + policy.lease_ttl, held_until(policy, lease.granted_at, lease.duration)
        ),
        ttl=policy.lease_ttl,
    )


def _still_allowed(
    policy: FleetPolicy, state: FleetState, lease: LiveLease, now: float
) -> Refusal | None:
    """A renew meets the policy as it is now: a fault no longer allowed, a duration over
    a lowered max_duration, or a lease beyond a lowered max_concurrent / max_per_group
    (the oldest leases, by fencing token, keep their places) is refused: heal now.
    min_healthy, min_gap and the report rules are checked at grant time only."""
    if policy.faults and lease.fault and lease.fault not in policy.faults:
        return Refusal("fault_not_allowed", f"fault {lease.fault!r} is no longer allowed: heal now")
    if lease.duration > policy.max_duration:
        return Refusal(
            "too_long",
            f"duration {lease.duration:g}s now exceeds max_duration {policy.max_duration:g}s: "
            "heal now",
        )
    older = [other for other in live(state.leases, now) if other.token < lease.token]
    if len(older) >= policy.max_concurrent:
        return Refusal("max_concurrent", f"max_concurrent is now {policy.max_concurrent}: heal now")
    if sum(1 for other in older if other.group == lease.group) >= policy.max_per_group:
        return Refusal("max_per_group", f"max_per_group is now {policy.max_per_group}: heal now")
    return None
