"""Each fault's verdict and time to recover while the agent runs, by the report's own rules.

A journal observer for weeks-long runs: metrics (the time-to-recover histogram, verdicts
by group) and notifications (a verdict per group when the agent stops) need what
`report` says about a fault without reading the whole journal again. Rather than a
second, online copy of the report's rules (which would drift), this keeps the journal's
events since the oldest fault still being judged and asks `agent.report.build_report`
about that window once the fault's outcome can no longer change:

- it was healed, every probe that watches its group has a check that began after the
  fault's attribution window (its heal + `SETTLE_S`, cut at the next fault's start),
- and every probe that failed during it has recovered.

A fault whose probes never recover (or a configured probe that never reports) is judged
as it stands `give_up_s` after its heal, so
memory stays bounded; `flush()` judges whatever is left (at stop). Memory: the probe
samples since the oldest fault being judged, i.e. a fault's duration plus a few seconds
in a healthy run.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.config import PROBE_TIMEOUT_MAX
from agent.report import (
    SETTLE_S,
    FaultReport,
    GroupVerdict,
    build_report,
    group_verdicts,
    watches,
)

HEAL_EVENTS = ("heal", "healed_by_environment", "watchdog")
FAULT_EVENTS = ("inject", "heal_failed", "stuck", *HEAL_EVENTS)
LATE_S = PROBE_TIMEOUT_MAX + 1.0  # a check is journaled at most this long after it began
GIVE_UP_S = 3600.0  # judge a fault whose probes stay down this long after its heal as is


def _time(e: dict[str, Any]) -> float | None:
    t = e.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return None
    return float(t)


def _check_start(e: dict[str, Any], t: float) -> float:
    """When a probe check began (the report times samples this way)."""
    latency = e.get("latency_ms")
    if isinstance(latency, int | float) and not isinstance(latency, bool) and latency > 0:
        return t - float(latency) / 1000.0
    return t


class FaultOutcomes:
    """Feed every journal event to `observe`; it returns the faults judged by that event."""

    def __init__(
        self,
        *,
        probes: Mapping[str, tuple[str, ...]] | None = None,
        give_up_s: float = GIVE_UP_S,
        late_s: float = LATE_S,
    ) -> None:
        """`probes`: the configured probes and the groups each declares, so a fault healed
        before a probe's first check waits for it; without them, the probes seen so far."""
        self.give_up_s = give_up_s
        self.late_s = late_s
        self._events: list[dict[str, Any]] = []  # since the oldest fault being judged
        self._pending: dict[str, dict[str, Any]] = {}  # fault_id -> its inject event
        self._healed: dict[str, float] = {}  # fault_id -> heal time, for pending faults
        self._starts: list[float] = []  # inject times within the window, ascending
        self._last_check: dict[str, float] = {}  # probe -> start of its newest check
        self._probe_groups: dict[str, tuple[str, ...]] = dict(probes or {})
        self._tried_at: dict[str, float] = {}  # fault_id -> last time it was asked about

    # -- feeding ---------------------------------------------------------------------------
    def observe(self, e: dict[str, Any]) -> list[FaultReport]:
        kind = e.get("event")
        t = _time(e)
        if t is None or not isinstance(kind, str):
            return []
        if kind == "probe":
            name = e.get("probe")
            if not isinstance(name, str):
                return []
            self._last_check[name] = max(self._last_check.get(name, -math.inf), _check_start(e, t))
            declared = e.get("groups")
            if isinstance(declared, list) and declared:
                self._probe_groups[name] = tuple(g for g in declared if isinstance(g, str))
            if self._pending:
                self._events.append(e)
                return self._judge_ready(t)
            return []
        if kind not in FAULT_EVENTS:
            return []
        fid = e.get("fault_id")
        if not isinstance(fid, str) or not fid:
            return []
        if kind == "inject":
            if fid not in self._pending:
                self._pending[fid] = e
                self._starts.append(t)
                self._events.append(e)
            return []
        if fid not in self._pending:
            return []
        self._events.append(e)
        if kind in HEAL_EVENTS and e.get("how") != "failed" and fid not in self._healed:
            self._healed[fid] = t
            return self._judge_ready(t)
        return []

    def flush(self) -> list[FaultReport]:
        """Judge every fault still pending, as the journal stands (at stop)."""
        return self._judge(list(self._pending))

    # -- judging ---------------------------------------------------------------------------
    def _settle_end(self, healed: float) -> float:
        later = [s for s in self._starts if s > healed]
        return min(healed + SETTLE_S, min(later)) if later else healed + SETTLE_S

    def _judge_ready(self, now: float) -> list[FaultReport]:
        cutoff = now - self.late_s  # every check that began before this has been journaled
        known = set(self._last_check) | set(self._probe_groups)
        ready: list[str] = []
        asked: list[tuple[str, float, list[str]]] = []  # (fault, its settle end, watchers)
        for fid, healed in self._healed.items():
            settle_end = self._settle_end(healed)
            group = str(self._pending[fid].get("group", ""))
            watchers = watchers_of(group, known, self._probe_groups)
            if now - healed >= self.give_up_s:
                ready.append(fid)
            elif settle_end < cutoff and all(
                self._last_check.get(n, -math.inf) > settle_end for n in watchers
            ):
                if now - self._tried_at.get(fid, -math.inf) >= 1.0:  # at most once a second
                    asked.append((fid, settle_end, watchers))
        judged = self._judge(ready)
        if asked:
            report = build_report(self._events)
            found = {f.fault_id: f for f in report.faults}
            done = []
            for fid, settle_end, watchers in asked:
                self._tried_at[fid] = now
                f = found.get(fid)
                if f is not None and self._final(f, report.samples, watchers, cutoff, settle_end):
                    done.append(f)
            judged += done
            self._forget([f.fault_id for f in done])
        return judged

    @staticmethod
    def _final(
        f: FaultReport,
        samples: Mapping[str, Sequence[tuple[float, bool]]],
        watchers: Sequence[str],
        cutoff: float,
        settle_end: float,
    ) -> bool:
        """Whether no check still to come can change `f`: the report's window for each
        watching probe ends at its first check after the settle window (or after its
        recovery), and that check began before `cutoff`."""
        if not f.recovered:
            return False
        windows = {w.probe: w for w in f.probes}
        for name in watchers:
            w = windows.get(name)
            if w is None:
                return False  # configured, not heard from yet
            after = max(settle_end, w.recovered_at if w.recovered_at is not None else -math.inf)
            times = [t for t, _ in samples.get(name, ())]
            i = bisect.bisect_right(times, after)
            if i >= len(times) or times[i] > cutoff:
                return False
        return True

    def _judge(self, fault_ids: list[str]) -> list[FaultReport]:
        if not fault_ids:
            return []
        wanted = set(fault_ids)
        reports = {f.fault_id: f for f in build_report(self._events).faults if f.fault_id in wanted}
        self._forget(fault_ids)
        return [reports[fid] for fid in fault_ids if fid in reports]

    def _forget(self, fault_ids: Iterable[str]) -> None:
        for fid in fault_ids:
            self._pending.pop(fid, None)
            self._healed.pop(fid, None)
            self._tried_at.pop(fid, None)
        if not self._pending:
            self._events.clear()
            self._starts.clear()
            return
        injects = {id(e) for e in self._pending.values()}
        keep_from = next(i for i, e in enumerate(self._events) if id(e) in injects)
        del self._events[:keep_from]
        oldest = min(float(e["t"]) for e in self._pending.values())
        self._starts = [s for s in self._starts if s >= oldest]


def watchers_of(
    group: str, known: Iterable[str], groups: Mapping[str, tuple[str, ...]]
) -> list[str]:
    """The probes (heard from or configured) that speak for `group`."""
    return [n for n in known if watches(groups.get(n, ()), group)]


class GroupOutcomes:
    """The worst judged fault per group, for a verdict per group without keeping them all."""

    def __init__(self) -> None:
        self._worst: dict[str, FaultReport] = {}
        self._count: dict[str, int] = {}

    def add(self, reports: Iterable[FaultReport]) -> None:
        from agent.report import severity

        for f in reports:
            self._count[f.group] = self._count.get(f.group, 0) + 1
            old = self._worst.get(f.group)
            if old is None or severity(f.verdict) > severity(old.verdict):
                self._worst[f.group] = f

    def verdicts(self) -> list[tuple[GroupVerdict, int]]:
        """(the group's verdict, how many of its faults were judged), by group name."""
        found, _ = group_verdicts(list(self._worst.values()))
        return [(v, self._count[v.group]) for v in found]
