"""Findings: per group, which fault kinds hurt, the evidence, and what it likely means.

Pure, built from the report's fault figures. A `Finding` is data (group, the
fault kinds that hurt and those that did not, the worst availability, the
longest run of failures, the fault ids as evidence); its `hints` come from the
table `HINTS` below, one rule each: a short, honest sentence about the likely
cause, with the fault ids it rests on. A rule that does not clearly apply says
nothing: no hint is better than a wrong one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.durations import format_duration
from agent.model import CONTAINER_FAULTS, NETWORK_FAULTS
from agent.report import DEGRADED, DRY_RUN, OUTAGE, SURVIVED, FaultReport, GroupVerdict

HURT = (DEGRADED, OUTAGE)
TOTAL_LOSS = 0.2  # at or below this availability during a fault, nothing else served
LATE_RECOVERY_S = 3.0  # still failing this long after the heal: nothing routed around it
STAYED_UP_S = 3.0  # recovered at least this long before the heal: the balancer routed around
DOWN_MEMBER_FAULTS = tuple(k for k in CONTAINER_FAULTS if k != "pause")  # kill, stop, restart


@dataclass(frozen=True)
class Hint:
    code: str  # stable identifier, e.g. "frozen-backend"
    text: str
    evidence: tuple[str, ...]  # fault ids the hint rests on


@dataclass(frozen=True)
class Finding:
    group: str
    verdict: str  # degraded | outage
    single_point_of_failure: bool  # verdict == outage
    hurt_by: tuple[str, ...]  # fault kinds with at least one degraded/outage fault
    not_hurt_by: tuple[str, ...]  # fault kinds tried whose every fault survived
    worst_availability: float | None  # lowest availability from a fault's start to recovery
    longest_down_s: float  # longest run of failures during one of its faults
    evidence: tuple[str, ...]  # the fault ids that hurt
    hints: tuple[Hint, ...]


@dataclass(frozen=True)
class _GroupFaults:
    group: str
    faults: tuple[FaultReport, ...]  # measured faults of the group (no dry runs)

    def hurt(self) -> list[FaultReport]:
        return [f for f in self.faults if f.verdict in HURT]

    def kinds(self, verdicts: Sequence[str]) -> list[str]:
        return sorted({f.fault for f in self.faults if f.verdict in verdicts})

    def clean_kinds(self) -> list[str]:
        hurt = set(self.kinds(HURT))
        return [k for k in self.kinds((SURVIVED,)) if k not in hurt]


def _ids(faults: Sequence[FaultReport]) -> tuple[str, ...]:
    return tuple(f.fault_id for f in faults)


def _frozen_backend(g: _GroupFaults) -> Hint | None:
    hurt = g.kinds(HURT)
    clean = [k for k in g.clean_kinds() if k in DOWN_MEMBER_FAULTS]
    if hurt != ["pause"] or not clean:
        return None
    evidence = [f for f in g.hurt()]
    return Hint(
        "frozen-backend",
        f"fails under pause but not under {' or '.join(clean)}: the balancer keeps sending "
        "traffic to a frozen backend (its port still accepts connections) - add an active "
        "health check and a short server timeout, or retry on another server",
        _ids(evidence),
    )


def _during(f: FaultReport) -> float | None:
    """The lowest availability a failing probe saw during the fault."""
    values = [w.during.value for w in f.probes if w.failed and w.during.value is not None]
    return min(values) if values else None


def _nothing_else_serves(g: _GroupFaults) -> Hint | None:
    tried = sorted({f.fault for f in g.faults if f.verdict in (*HURT, SURVIVED)})
    if len(tried) < 2 or g.kinds(HURT) != tried:
        return None
    if any((_during(f) or 0.0) > TOTAL_LOSS for f in g.hurt()):
        return None  # some requests still got through: see _partial_loss
    return Hint(
        "no-redundancy",
        f"fails under every fault kind tried ({', '.join(tried)}): nothing else can serve "
        "this group while one member is out - add a replica behind a balancer with health checks",
        _ids(g.hurt()),
    )


def _partial_loss(g: _GroupFaults) -> Hint | None:
    """A member out loses a share of the requests, not all: it still gets its turn."""
    seen = [
        f
        for f in g.hurt()
        if f.fault in DOWN_MEMBER_FAULTS and TOTAL_LOSS < (_during(f) or 0.0) < 1.0
    ]
    if not seen:
        return None
    lost = 1.0 - sum(_during(f) or 0.0 for f in seen) / len(seen)
    kinds = sorted({f.fault for f in seen})
    return Hint(
        "partial-loss",
        f"loses about {lost:.0%} of the requests while a member is out ({', '.join(kinds)}): "
        "the balancer keeps giving the missing member its share - add active health checks "
        "and retry failed connections on another server",
        _ids(seen),
    )


def _slow_detection(g: _GroupFaults) -> Hint | None:
    """Recovered while the fault was still active, and stayed up for `STAYED_UP_S` or more
    before the heal: the balancer took that long to notice. (A partial loss whose last
    failure merely fell shortly before the heal is not a recovery.)"""
    seen = [
        f
        for f in g.hurt()
        if f.time_to_recover is not None
        and f.end is not None
        and f.start + f.time_to_recover <= f.end - STAYED_UP_S
    ]
    if not seen:
        return None
    worst = max(f.time_to_recover or 0.0 for f in seen)
    return Hint(
        "slow-detection",
        f"recovers only after {format_duration(worst)} while the fault is still active: "
        "that is how long the balancer takes to take the member out (check interval x fall) "
        "- shorten them, or retry failed requests on another server",
        _ids(seen),
    )


def _late_recovery(g: _GroupFaults) -> Hint | None:
    """Still failing well after the heal: nothing routed around the fault."""
    seen: list[tuple[float, FaultReport]] = []
    for f in g.hurt():
        if f.end is None or f.time_to_recover is None:
            continue
        lag = f.start + f.time_to_recover - f.end
        if lag >= LATE_RECOVERY_S:
            seen.append((lag, f))
    if not seen:
        return None
    worst = max(lag for lag, _ in seen)
    return Hint(
        "late-recovery",
        f"stays down until {format_duration(worst)} after the heal: the member is used again "
        "only once it is ready and its checks pass (check interval x rise, start-up time)",
        _ids([f for _, f in seen]),
    )


def _never_recovered(g: _GroupFaults) -> Hint | None:
    seen = [f for f in g.hurt() if not f.recovered and not f.open]
    if not seen:
        return None
    return Hint(
        "never-recovered",
        "a probe was still failing at the end of the journal after the heal: nothing brought "
        "the service back - check restart policies and the balancer's address resolution",
        _ids(seen),
    )


def _slow_member(g: _GroupFaults) -> Hint | None:
    hurt = g.kinds(HURT)
    clean = [k for k in g.clean_kinds() if k in DOWN_MEMBER_FAULTS]
    if not hurt or not clean or any(k not in NETWORK_FAULTS for k in hurt):
        return None
    return Hint(
        "slow-member",
        f"fails under {', '.join(hurt)} but not when a member is down ({', '.join(clean)}): "
        "a slow or lossy member hurts more than a dead one - use timeouts shorter than "
        "your users' and retry on another server",
        _ids(g.hurt()),
    )


# The table: each rule reads one group's faults and returns a hint or None.
HINTS: tuple[Callable[[_GroupFaults], Hint | None], ...] = (
    _frozen_backend,
    _slow_member,
    _nothing_else_serves,
    _partial_loss,
    _slow_detection,
    _late_recovery,
    _never_recovered,
)


def findings_for(
    faults: Sequence[FaultReport], groups: Sequence[GroupVerdict]
) -> tuple[Finding, ...]:
    """One finding per group that a fault hurt (verdict degraded or outage)."""
    by_group: dict[str, list[FaultReport]] = {}
    for f in faults:
        if f.verdict != DRY_RUN:
            by_group.setdefault(f.group, []).append(f)
    out: list[Finding] = []
    for verdict in groups:
        if verdict.verdict not in HURT:
            continue
        g = _GroupFaults(verdict.group, tuple(by_group.get(verdict.group, ())))
        hurt = g.hurt()
        windows = [w for f in hurt for w in f.probes if w.failed]
        values = [w.until_recovery.value for w in windows if w.until_recovery.value is not None]
        hints = tuple(h for rule in HINTS if (h := rule(g)) is not None)
        out.append(
            Finding(
                group=verdict.group,
                verdict=verdict.verdict,
                single_point_of_failure=verdict.verdict == OUTAGE,
                hurt_by=tuple(g.kinds(HURT)),
                not_hurt_by=tuple(g.clean_kinds()),
                worst_availability=min(values) if values else None,
                longest_down_s=max((w.longest_down_s for w in windows), default=0.0),
                evidence=_ids(hurt),
                hints=hints,
            )
        )
    return tuple(out)
