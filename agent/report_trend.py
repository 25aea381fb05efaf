"""Across runs: per group, availability and time to recover in each journal, in order.

Pure. `build_trend` takes one Report per journal (oldest first, as the user
listed them) and returns, per group, one point per journal, so a user can see
whether a fix helped. Availability is that of the probes watching the group,
counted from each of its faults' start until recovery and summed over its
faults (ok checks / all checks); the time to recover is the worst of its faults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.availability import Ratio
from agent.durations import format_duration
from agent.report import DRY_RUN, UNMEASURED, Report, severity, worst_verdict
from agent.textsafe import printable

BETTER, WORSE, SAME, NEW = "better", "worse", "same", "n/a"


@dataclass(frozen=True)
class TrendPoint:
    journal: str
    verdict: str  # "" when the group had no fault in this journal
    faults: int
    availability: Ratio
    worst_time_to_recover: float | None
    never_recovered: bool


@dataclass(frozen=True)
class GroupTrend:
    group: str
    points: tuple[TrendPoint, ...]  # one per journal, in the order given
    change: str  # better | worse | same | n/a: the last run against the first that had faults


def _point(journal: str, report: Report, group: str) -> TrendPoint:
    faults = [f for f in report.faults if f.group == group and f.verdict != DRY_RUN]
    ok = total = 0
    for f in faults:
        for w in f.probes:
            ok += w.until_recovery.ok
            total += w.until_recovery.total
    ttrs = [f.time_to_recover for f in faults if f.time_to_recover is not None]
    return TrendPoint(
        journal=journal,
        verdict=worst_verdict(f.verdict for f in faults) if faults else "",
        faults=len(faults),
        availability=Ratio(ok, total),
        worst_time_to_recover=max(ttrs) if ttrs else None,
        never_recovered=any(not f.recovered for f in faults),
    )


def _change(points: Sequence[TrendPoint]) -> str:
    measured = [p for p in points if p.verdict not in ("", UNMEASURED)]
    if len(measured) < 2:
        return NEW
    first, last = measured[0], measured[-1]
    a, b = severity(first.verdict), severity(last.verdict)
    if a != b:
        return BETTER if b < a else WORSE
    fa, fb = first.availability.value, last.availability.value
    if fa is not None and fb is not None and abs(fa - fb) >= 0.01:
        return BETTER if fb > fa else WORSE
    return SAME


def build_trend(runs: Sequence[tuple[str, Report]]) -> tuple[GroupTrend, ...]:
    groups = sorted({f.group for _, r in runs for f in r.faults})
    out = []
    for group in groups:
        points = tuple(_point(name, report, group) for name, report in runs)
        out.append(GroupTrend(group, points, _change(points)))
    return tuple(out)


def trend_to_json(trend: Sequence[GroupTrend]) -> list[dict[str, Any]]:
    return [
        {
            "group": g.group,
            "change": g.change,
            "runs": [
                {
                    "journal": p.journal,
                    "verdict": p.verdict or None,
                    "faults": p.faults,
                    "availability": {
                        "ok": p.availability.ok,
                        "total": p.availability.total,
                        "availability": p.availability.value,
                    },
                    "worst_time_to_recover": p.worst_time_to_recover,
                    "never_recovered": p.never_recovered,
                }
                for p in g.points
            ],
        }
        for g in trend
    ]


def render_trend(trend: Sequence[GroupTrend], journals: Sequence[str]) -> str:
    """One line per group: each run's verdict, availability and worst time to recover."""
    out = [f"Trend over {len(journals)} journals (oldest first):"]
    out += [f"  run {i + 1}: {printable(j, 200)}" for i, j in enumerate(journals)]
    out.append("")
    for g in trend:
        cells = []
        for i, p in enumerate(g.points):
            if not p.verdict:
                cells.append(f"run {i + 1}: no fault")
                continue
            ttr = "never" if p.never_recovered else "-"
            if p.worst_time_to_recover is not None:
                ttr = format_duration(p.worst_time_to_recover)
            cells.append(f"run {i + 1}: {p.verdict} {p.availability.percent()} recovered in {ttr}")
        out.append(f"  {printable(g.group, 40)} ({g.change}): " + " | ".join(cells))
    if not trend:
        out.append("  no faults in any journal")
    out.append(
        "  availability: the group's probes from each fault's start until recovery; "
        "change: the last run against the first"
    )
    return "\n".join(out) + "\n"
