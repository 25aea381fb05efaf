"""The decision of what to hit: a pure function of its inputs.

plan(targets, active, history, policy, now, rng) -> Plan | Skip. The clock and the
random source are passed in (as Netflix's chaosmonkey does), so a seeded run can
be replayed and every refusal is a sentence ("not faulting: <reason>").
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from agent.config import ScheduleSection
from agent.gate import GateState, Timing, why_closed
from agent.model import ActiveFault, PastFault, Plan, Skip, Target
from agent.selection import Policy, evaluate
from agent.windows import in_window

__all__ = ["Timing", "in_window", "next_gap", "plan", "timing_from_schedule"]


def timing_from_schedule(schedule: ScheduleSection, stuck_after: int = 5) -> Timing:
    return Timing(schedule.min_gap, schedule.windows, schedule.timezone, stuck_after)


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
    closed = why_closed(
        GateState(
            now=now,
            timing=timing,
            max_concurrent=policy.max_concurrent,
            active=active,
            last_fault_at=max((h.at for h in history), default=None),
        )
    )
    if closed is not None:
        return Skip(closed.reason)

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
