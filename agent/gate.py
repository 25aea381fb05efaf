"""May a fault start now, and if not, why: one pure answer for the engine and the planner.

Every reason the agent holds back a new fault is checked here, in a fixed order, from
plain data (no clock read, no I/O). A `Closed` answer either holds the attempt quietly
until the gate reopens (`hold=True`: kill switch, halt, a heal still running) or skips
it with a sentence for the journal ("not faulting: <reason>").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.model import ActiveFault
from agent.windows import Window, in_window


@dataclass(frozen=True)
class Timing:
    """The schedule's part of the policy."""

    min_gap: float = 30.0
    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"
    stuck_after: int = 5  # heal attempts before a fault counts as stuck


@dataclass(frozen=True)
class GateState:
    """Everything the answer depends on, gathered by the caller."""

    now: float  # wall clock (windows and min_gap)
    timing: Timing
    max_concurrent: int
    active: Sequence[ActiveFault] = ()
    last_fault_at: float | None = None  # wall clock of the latest injection
    kill_switch: str = ""  # non-empty: the kill switch file that is present
    halted: str = ""  # the stop condition that halted the run
    blocked: str = ""  # why injection is blocked for this run (corrupt ledger)
    heals_in_flight: int = 0
    coordinator_down: bool = False


@dataclass(frozen=True)
class Closed:
    reason: str
    hold: bool = False  # True: wait for the gate to reopen; no skip is journaled


def why_closed(state: GateState) -> Closed | None:
    """None when a new fault may start now; otherwise the first reason it may not."""
    if state.kill_switch:
        return Closed(f"kill switch {state.kill_switch} present", hold=True)
    if state.halted:
        return Closed(f"stop condition: {state.halted}", hold=True)
    if state.heals_in_flight:
        return Closed(f"{state.heals_in_flight} heal(s) in flight", hold=True)
    if state.blocked:
        return Closed(f"injection blocked: {state.blocked}")
    if state.coordinator_down:
        return Closed("coordinator unreachable: no new faults")
    timing = state.timing
    stuck = [a for a in state.active if a.heal_attempts >= timing.stuck_after]
    if stuck:
        return Closed(
            f"heal of {stuck[0].fault} on {stuck[0].target_name} is stuck; "
            "no new faults until it is cleared (chaos-agent heal)"
        )
    if not in_window(state.now, timing.windows, timing.timezone):
        return Closed("outside the configured time windows")
    if len(state.active) >= state.max_concurrent:
        return Closed(f"max_concurrent={state.max_concurrent} fault(s) already active")
    if state.last_fault_at is not None:
        since = state.now - state.last_fault_at
        if since < timing.min_gap:
            return Closed(f"min_gap: last fault {since:.0f}s ago (< {timing.min_gap:g}s)")
    return None
