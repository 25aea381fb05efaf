"""The decision of what to hit: a pure function of its inputs.

plan(targets, active, history, policy, now, rng) -> Plan | Skip. The clock and the
random source are passed in (as Netflix's chaosmonkey does), so a seeded run can
be replayed and every refusal is a sentence ("not faulting: <reason>").
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from agent.config import ScheduleSection, Window
from agent.model import ActiveFault, PastFault, Plan, Skip, Target
from agent.selection import Policy, evaluate


@dataclass(frozen=True)
class Timing:
    """The schedule's part of the policy."""

    min_gap: float = 30.0
    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"
    stuck_after: int = 5  # heal attempts before a fault counts as stuck


def timing_from_schedule(schedule: ScheduleSection, stuck_after: int = 5) -> Timing:
    return Timing(schedule.min_gap, schedule.windows, schedule.timezone, stuck_after)


def in_window(now: float, windows: Sequence[Window], timezone: str) -> bool:
    if not windows:
        return True
    local = dt.datetime.fromtimestamp(now, ZoneInfo(timezone))
    minute = local.hour * 60 + local.minute
    return any(
        local.weekday() in w.days and w.start_minute <= minute < w.end_minute for w in windows
    )


def next_gap(rng: random.Random, mean: float, min_gap: float) -> float:
    """Seconds until the next attempt: exponential draws (a Poisson process), floored."""
    return max(min_gap, rng.expovariate(1.0 / mean))


def plan(
    targets: Sequence[Target],
    active: Sequence[ActiveFault],
    history: Sequence[PastFault],
    policy: Policy,
    timing: Timing,
    now: float,
    rng: random.Random,
) -> Plan | Skip:
    stuck = [a for a in active if a.heal_attempts >= timing.stuck_after]
    if stuck:
        return Skip(
            f"heal of {stuck[0].fault} on {stuck[0].target_name} is stuck; "
            "no new faults until it is cleared (chaos-agent heal)"
        )
    if not in_window(now, timing.windows, timing.timezone):
        return Skip("outside the configured time windows")
    if len(active) >= policy.max_concurrent:
        return Skip(f"max_concurrent={policy.max_concurrent} fault(s) already active")
    if history:
        since = now - max(h.at for h in history)
        if since < timing.min_gap:
            return Skip(f"min_gap: last fault {since:.0f}s ago (< {timing.min_gap:g}s)")

    verdicts = [v for v in evaluate(targets, active, policy) if v.eligible]
    if not verdicts:
        return Skip("no eligible target")
    # Choose the fault type first (weighted), then a target that allows it.
    faults = sorted({f for v in verdicts for f in v.faults})
    weights = [policy.weight(f) for f in faults]
    if sum(weights) <= 0:
        return Skip("every usable fault has weight 0")
    fault = rng.choices(faults, weights=weights, k=1)[0]
    candidates = sorted(
        (v.target for v in verdicts if fault in v.faults), key=lambda t: (t.group, t.name, t.id)
    )
    target = candidates[rng.randrange(len(candidates))]
    return Plan(
        fault=fault,
        target=target,
        duration_s=policy.duration,
        params=dict(policy.params.get(fault, {})),
    )
