"""What a run did and what it did to the site: built from the journal, nothing else.

Pure: `build_report(events)` takes the journal's events (any order, some of them
malformed) and returns dataclasses; `report_to_json` presents them as JSON and
`agent.report_text.render_table` as text (agent.report_html as a page). No I/O here: the CLI streams the journal (agent.report_input).

A probe sample is placed at the moment its check STARTED (`t - latency_ms`): a
check that waited out a 1 s timeout was failing from its start, so five such
checks in a row are a 5 s run of failures, not 4 s. A probe that declares
`groups` judges only faults in those groups (see `watches`).

How faults are judged (the thresholds are named constants below):
- A fault lasts from its `inject` event to its `heal` event (same fault_id).
  Without a heal it is open: still active, or left by a crash; it is drawn up to
  the end of the journal and flagged.
- Probe failures from the fault's start until `SETTLE_S` after its end are
  attributed to it (a replica coming back can still hurt), unless another
  fault starts in between: from then on they are the next fault's.
- Time to recover: from the fault's start until every probe that failed has
  succeeded again after its last attributed failure. None if no probe failed.
- Verdict per fault: `survived` when no probe failed; `outage` when a probe never
  recovered, its availability from the fault's start until recovery fell below
  `DEGRADED_FLOOR`, or it failed for `OUTAGE_STREAK_S` or longer in a row;
  `degraded` otherwise; `unmeasured` without probe samples; `dry-run` when
  nothing was injected. A group's verdict is the worst of its faults.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.availability import Ratio, Sample
from agent.durations import format_duration

if TYPE_CHECKING:
    from agent.report_hints import Finding

SETTLE_S = 10.0  # failures up to this long after a fault's heal still count against it
DEGRADED_FLOOR = 0.90  # availability below this (fault start until recovery) is an outage
OUTAGE_STREAK_S = 5.0  # failing this long without one success in between is an outage

SURVIVED = "survived"
DEGRADED = "degraded"
OUTAGE = "outage"
UNMEASURED = "unmeasured"
DRY_RUN = "dry-run"
_SEVERITY = {DRY_RUN: -2, UNMEASURED: -1, SURVIVED: 0, DEGRADED: 1, OUTAGE: 2}


@dataclass(frozen=True)
class ProbeDuringFault:
    probe: str
    during: Ratio  # samples between the fault's start and its end
    until_recovery: Ratio  # samples between the fault's start and recovery (or its end)
    longest_down_s: float  # longest run of failures starting during the attribution window
    recovered_at: float | None  # first success after the last attributed failure
    failed: bool  # at least one attributed failure
    recovered: bool  # failed and then succeeded again (True when it never failed)


@dataclass(frozen=True)
class FaultReport:
    fault_id: str
    fault: str
    target: str
    target_id: str
    group: str
    host: str
    start: float
    end: float | None  # None: no heal in the journal
    planned_s: float | None  # the duration the agent planned
    heal_how: str  # healed | already | environment | gone | "" (open)
    open: bool
    stuck: bool
    dry_run: bool
    heal_failures: int
    probes: tuple[ProbeDuringFault, ...]
    time_to_recover: float | None  # None: no probe failed, or they never recovered
    recovered: bool
    verdict: str
    overlaps: tuple[str, ...]  # fault ids active at the same time (attribution is shared)
    notes: tuple[str, ...]
    converged_s: float | None = None  # Swarm: fault start until the service converged again

    def duration(self, span_end: float) -> float:
        return (self.end if self.end is not None else span_end) - self.start

    def describe(self) -> str:
        return f"{self.fault} of {self.target}"


@dataclass(frozen=True)
class GroupVerdict:
    group: str
    verdict: str
    faults: int
    worst_fault_id: str
    reason: str


@dataclass(frozen=True)
class ProbeSummary:
    name: str
    kind: str
    endpoint: str
    overall: Ratio
    longest_down_s: float
    first_t: float
    last_t: float
    groups: tuple[str, ...] = ()  # the groups it speaks for; () = every group
    resolution_s: float | None = None  # median spacing of its checks: shorter outages can hide


@dataclass(frozen=True)
class Halt:
    t: float
    reason: str


@dataclass(frozen=True)
class Report:
    span_start: float | None
    span_end: float | None
    runs: int
    hosts: tuple[str, ...]
    seeds: tuple[Any, ...]
    dry_run: bool
    targets: tuple[str, ...]  # the selection sentences from `start` events
    faults: tuple[FaultReport, ...]
    groups: tuple[GroupVerdict, ...]
    probes: tuple[ProbeSummary, ...]
    single_points_of_failure: tuple[str, ...]  # sentences naming groups that caused an outage
    halts: tuple[Halt, ...]
    inject_failed: int
    skipped_events: int  # events that could not be read (no time, wrong types)
    samples: Mapping[str, Sequence[Sample]] = field(default_factory=dict)  # by start time
    findings: tuple[Finding, ...] = ()  # per hurt group: what hurt, the evidence, hints

    @property
    def verdict(self) -> str:
        """The run's overall verdict: the worst group verdict."""
        return _worst([g.verdict for g in self.groups]) if self.groups else UNMEASURED

    @property
    def span_s(self) -> float:
        if self.span_start is None or self.span_end is None:
            return 0.0
        return self.span_end - self.span_start


# --- building -----------------------------------------------------------------

MAX_T = 253_402_300_799.0  # 9999-12-31 23:59:59 UTC: later (or negative) times are unreadable
MAX_LATENCY_S = 86_400.0  # a larger latency_ms is not believed: the sample keeps its `t`


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _moment(value: object) -> float | None:
    t = _number(value)
    return t if t is not None and 0.0 <= t <= MAX_T else None


def _time_of(event: Mapping[str, Any]) -> float | None:
    if "t" in event:
        t = _moment(event.get("t"))
        if t is not None:
            return t
    ts = event.get("ts")
    if isinstance(ts, str) and ts:
        try:
            parsed = dt.datetime.fromisoformat(ts)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        try:
            return _moment(parsed.timestamp())
        except (OverflowError, ValueError, OSError):
            return None
    return None


def _probe_start(t: float, latency_ms: object) -> float:
    """When the check began: a check that waited out its timeout failed from its start."""
    latency = _number(latency_ms)
    if latency is None or not 0.0 < latency <= MAX_LATENCY_S * 1000:
        return t
    return max(0.0, t - latency / 1000.0)


def _text(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


class _Fault:
    def __init__(self, fault_id: str, event: Mapping[str, Any], start: float) -> None:
        self.fault_id = fault_id
        self.fault = _text(event.get("fault"), "?")
        self.target = _text(event.get("container"), "?")
        self.target_id = _text(event.get("container_id"))
        self.group = _text(event.get("group"), "?")
        self.host = _text(event.get("host"))
        self.dry_run = event.get("dry_run") is True
        self.planned = _number(event.get("duration"))
        self.start = start
        self.end: float | None = None
        self.heal_how = ""
        self.converged_s: float | None = None
        self.stuck = False
        self.heal_failures = 0
        self.inject_seen = False
        self.notes: list[str] = []


class _Series:
    """One probe's samples, sorted by time, with a running count of successes for O(1) ratios."""

    def __init__(self, samples: list[Sample]) -> None:
        if any(samples[i][0] > samples[i + 1][0] for i in range(len(samples) - 1)):
            samples.sort(key=lambda s: s[0])
        self.samples = samples
        self.times = [t for t, _ in samples]
        oks = array("q", [0])
        running = 0
        for _, ok in samples:
            running += ok
            oks.append(running)
        self._oks = oks

    def index(self, t: float) -> int:
        return bisect.bisect_left(self.times, t)

    def between(self, start: float, end: float) -> Ratio:
        """Samples with `start <= t <= end`."""
        lo = bisect.bisect_left(self.times, start)
        hi = bisect.bisect_right(self.times, end)
        if hi <= lo:
            return Ratio(0, 0)
        return Ratio(self._oks[hi] - self._oks[lo], hi - lo)


def _probe_window(
    name: str, series: _Series, start: float, end: float, settle_end: float
) -> ProbeDuringFault:
    """One probe's figures for one fault."""
    during = series.between(start, end)
    samples = series.samples
    longest = 0.0
    streak_from: float | None = None
    last_fail: float | None = None  # last failure that belongs to this fault
    recovered_at: float | None = None
    for i in range(series.index(start), len(samples)):
        t, ok = samples[i]
        if not ok:
            if streak_from is None:
                if t > settle_end:
                    break  # a new failure after the window belongs to someone else
                streak_from = t
            last_fail = t
            recovered_at = None
        elif streak_from is not None:
            longest = max(longest, t - streak_from)
            streak_from = None
            recovered_at = t
        elif t > settle_end:
            break
    if streak_from is not None and last_fail is not None:
        longest = max(longest, last_fail - streak_from)
    if last_fail is None:
        return ProbeDuringFault(name, during, during, 0.0, None, False, True)
    until_end = max(end, recovered_at if recovered_at is not None else settle_end)
    until = series.between(start, until_end)
    return ProbeDuringFault(
        name, during, until, longest, recovered_at, True, recovered_at is not None
    )


def _judge(windows: Sequence[ProbeDuringFault]) -> str:
    if not any(w.until_recovery.total for w in windows):
        return UNMEASURED
    if not any(w.failed for w in windows):
        return SURVIVED
    for w in windows:
        if not w.failed:
            continue
        value = w.until_recovery.value
        if not w.recovered or w.longest_down_s >= OUTAGE_STREAK_S:
            return OUTAGE
        if value is not None and value < DEGRADED_FLOOR:
            return OUTAGE
    return DEGRADED


def _worst(verdicts: Iterable[str]) -> str:
    return max(verdicts, key=lambda v: _SEVERITY.get(v, 0), default=UNMEASURED)


def severity(verdict: str) -> int:
    """How bad a verdict is: dry-run < unmeasured < survived < degraded < outage."""
    return _SEVERITY.get(verdict, 0)


def worst_verdict(verdicts: Iterable[str]) -> str:
    """The worst of `verdicts` (unmeasured when there are none)."""
    return _worst(verdicts)


def _fault_figures(f: FaultReport) -> str:
    parts = []
    for w in f.probes:
        if not w.failed:
            continue
        text = f"probe {w.probe!r} at {w.until_recovery.percent()} until recovery"
        if w.longest_down_s:
            text += f", down {format_duration(w.longest_down_s)} in a row"
        if not w.recovered:
            text += ", never recovered"
        parts.append(text)
    return "; ".join(parts)


def watches(declared: Iterable[str], group: str) -> bool:
    """Whether a probe declaring `declared` groups speaks for `group`.

    A probe that declares nothing watches every group; an entry names a group
    exactly, or a compose project (the part of `project/service` before the slash).
    """
    names = tuple(declared)
    if not names:
        return True
    project = group.split("/", 1)[0]
    return group in names or project in names


_FAULT_EVENTS = frozenset(
    ("inject", "heal", "heal_failed", "stuck", "healed_by_environment", "watchdog")
)


def build_report(events: Iterable[object]) -> Report:
    """Read the journal's events (any order, malformed ones skipped) into a Report.

    One pass, streaming: only probe samples and the (few) fault, start and halt
    events are kept, so a journal of any length is read in bounded memory per
    sample. A line that is not an object, has no readable time (or an absurd
    one), or has fields of the wrong type is counted in `skipped_events`.
    """
    skipped = 0
    kept: list[tuple[float, int, dict[str, Any]]] = []  # every event but probes
    raw_samples: dict[str, list[Sample]] = {}
    probe_meta: dict[str, tuple[str, str]] = {}
    probe_groups: dict[str, tuple[str, ...]] = {}
    hosts: dict[str, None] = {}
    span_start = math.inf
    span_end = -math.inf
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            skipped += 1
            continue
        kind = event.get("event")
        if not isinstance(kind, str):
            skipped += 1
            continue
        t = event.get("t")
        if type(t) is not float or not 0.0 <= t <= MAX_T:  # the fast path: a float in range
            t = _time_of(event)
            if t is None:
                skipped += 1
                continue
        if t < span_start:
            span_start = t
        if t > span_end:
            span_end = t
        host = event.get("host")
        if isinstance(host, str) and host not in hosts:
            hosts[host] = None
        if kind == "probe":
            name, ok = event.get("probe"), event.get("ok")
            if not isinstance(name, str) or not isinstance(ok, bool):
                skipped += 1
                continue
            series = raw_samples.get(name)
            if series is None:
                series = raw_samples[name] = []
                probe_meta[name] = (_text(event.get("kind")), _text(event.get("endpoint")))
            latency = event.get("latency_ms")
            if (
                type(latency) is float
                and 0.0 < latency <= MAX_LATENCY_S * 1000
                and latency <= t * 1000
            ):
                series.append((t - latency / 1000.0, ok))
            else:
                series.append((_probe_start(t, latency), ok))
            declared = event.get("groups")
            if isinstance(declared, list) and declared:
                probe_groups[name] = tuple(g for g in declared if isinstance(g, str))
            continue
        kept.append((t, i, event))
    kept.sort(key=lambda item: (item[0], item[1]))

    faults: dict[str, _Fault] = {}
    halts: list[Halt] = []
    seeds: dict[Any, None] = {}
    targets: dict[str, None] = {}
    runs = inject_failed = 0
    any_dry = False
    all_dry = True
    for t, _, e in kept:
        kind = e["event"]
        if kind == "start":
            runs += 1
            seed = e.get("seed")
            if isinstance(seed, int | str) and not isinstance(seed, bool):
                seeds[seed] = None
            if e.get("dry_run") is True:
                any_dry = True
            else:
                all_dry = False
            sentence = e.get("targets")
            if isinstance(sentence, str) and sentence:
                targets[sentence] = None
            continue
        if kind == "halt":
            halts.append(Halt(t, _text(e.get("reason"), "no reason given")))
            continue
        if kind == "inject_failed":
            inject_failed += 1
            continue
        if kind not in _FAULT_EVENTS:
            continue
        fid = e.get("fault_id")
        if kind in ("healed_by_environment", "watchdog"):
            if e.get("how") == "failed":
                continue
            kind = "heal"  # a restart policy, or the watchdog, ended the fault
        if not isinstance(fid, str) or not fid:
            skipped += 1
            continue
        f = faults.get(fid)
        if kind == "inject":
            if f is None:
                f = faults[fid] = _Fault(fid, e, t)
            elif not f.inject_seen:  # a heal came first (clock skew): take the real start
                f.start = t
            f.inject_seen = True
        elif kind == "heal":
            if f is None:
                started = _moment(e.get("injected_at"))
                if started is None:
                    skipped += 1
                    continue
                f = faults[fid] = _Fault(fid, e, started)
                f.notes.append("its inject event is missing from the journal")
            if f.end is None:
                f.end = t
                f.heal_how = _text(e.get("how"), "healed")
                f.converged_s = _number(e.get("converged_s"))
                f.stuck = False
        elif f is not None and kind == "heal_failed":
            f.heal_failures += 1
        elif f is not None and kind == "stuck":
            f.stuck = True

    have_span = span_start <= span_end
    series_by_name = {name: _Series(raw_samples[name]) for name in sorted(raw_samples)}
    del raw_samples
    last_t = span_end if have_span else 0.0
    reports = _fault_reports(faults, series_by_name, probe_groups, last_t)
    groups, spofs = _group_verdicts(reports)
    probes = tuple(
        ProbeSummary(
            name=name,
            kind=probe_meta.get(name, ("", ""))[0],
            endpoint=probe_meta.get(name, ("", ""))[1],
            overall=series.between(-math.inf, math.inf),
            longest_down_s=_longest_down(series.samples),
            first_t=series.times[0],
            last_t=series.times[-1],
            groups=probe_groups.get(name, ()),
            resolution_s=_median_spacing(series.times),
        )
        for name, series in series_by_name.items()
    )
    from agent.report_hints import findings_for

    return Report(
        span_start=span_start if have_span else None,
        span_end=span_end if have_span else None,
        runs=runs,
        hosts=tuple(hosts),
        seeds=tuple(seeds),
        dry_run=any_dry and all_dry,
        targets=tuple(targets),
        faults=reports,
        groups=groups,
        probes=probes,
        single_points_of_failure=spofs,
        halts=tuple(halts),
        inject_failed=inject_failed,
        skipped_events=skipped,
        samples={name: series.samples for name, series in series_by_name.items()},
        findings=findings_for(reports, groups),
    )


def _fault_reports(
    faults: Mapping[str, _Fault],
    series_by_name: Mapping[str, _Series],
    probe_groups: Mapping[str, tuple[str, ...]],
    span_end: float,
) -> tuple[FaultReport, ...]:
    ordered = sorted(faults.values(), key=lambda f: (f.start, f.fault_id))
    intervals = [(f.start, f.end if f.end is not None else max(span_end, f.start)) for f in ordered]
    starts = [s for s, _ in intervals]
    # overlaps by a sweep over start times: O(F log F + pairs), not O(F^2)
    overlapping: list[list[int]] = [[] for _ in ordered]
    for i, (_, end) in enumerate(intervals):
        end = max(end, starts[i])
        for j in range(i + 1, bisect.bisect_right(starts, end)):
            overlapping[i].append(j)
            overlapping[j].append(i)
    watchers: dict[str, tuple[str, ...]] = {}
    reports: list[FaultReport] = []
    for i, f in enumerate(ordered):
        start, end = intervals[i]
        notes = list(f.notes)
        if end < start:
            notes.append("its heal is journaled before its inject (clock skew)")
            end = start
        if f.end is None:
            notes.append(
                "no heal in the journal: still active, or left behind by a crash "
                "(the next start reconciles it)"
            )
        if f.stuck:
            notes.append("marked stuck: heal kept failing")
        # failures after a heal are this fault's, until the next fault begins
        k = bisect.bisect_right(starts, end)
        settle_end = min(end + SETTLE_S, starts[k]) if k < len(starts) else end + SETTLE_S
        names = watchers.get(f.group)
        if names is None:
            names = watchers[f.group] = tuple(
                n for n in series_by_name if watches(probe_groups.get(n, ()), f.group)
            )
        windows = tuple(_probe_window(n, series_by_name[n], start, end, settle_end) for n in names)
        failed = [w for w in windows if w.failed]
        recovered = all(w.recovered for w in windows)
        ttr: float | None = None
        if failed and recovered:
            ttr = max(w.recovered_at or start for w in failed) - start
        reports.append(
            FaultReport(
                fault_id=f.fault_id,
                fault=f.fault,
                target=f.target,
                target_id=f.target_id,
                group=f.group,
                host=f.host,
                start=start,
                end=f.end if f.end is None else end,
                planned_s=f.planned,
                heal_how=f.heal_how,
                open=f.end is None,
                stuck=f.stuck,
                dry_run=f.dry_run,
                heal_failures=f.heal_failures,
                probes=windows,
                time_to_recover=ttr,
                recovered=recovered,
                verdict=DRY_RUN if f.dry_run else _judge(windows),
                overlaps=tuple(ordered[j].fault_id for j in sorted(overlapping[i])),
                notes=tuple(notes),
                converged_s=f.converged_s,
            )
        )
    return tuple(reports)


def _median_spacing(times: Sequence[float]) -> float | None:
    """The median gap between consecutive checks (from at most ~20k evenly picked gaps)."""
    if len(times) < 2:
        return None
    step = max(1, (len(times) - 1) // 20_000)
    gaps = sorted(times[i + 1] - times[i] for i in range(0, len(times) - 1, step))
    return gaps[len(gaps) // 2]


def _longest_down(samples: Sequence[Sample]) -> float:
    longest = 0.0
    since: float | None = None
    last_fail = 0.0
    for t, ok in samples:
        if not ok:
            since = t if since is None else since
            last_fail = t
        elif since is not None:
            longest = max(longest, t - since)
            since = None
    if since is not None:
        longest = max(longest, last_fail - since)
    return longest


def _group_verdicts(
    faults: Sequence[FaultReport],
) -> tuple[tuple[GroupVerdict, ...], tuple[str, ...]]:
    by_group: dict[str, list[FaultReport]] = {}
    for f in faults:
        by_group.setdefault(f.group, []).append(f)
    verdicts: list[GroupVerdict] = []
    spofs: list[str] = []
    by_id = {f.fault_id: f for f in faults}
    for group in sorted(by_group):
        members = by_group[group]
        worst = max(members, key=lambda f: (_SEVERITY.get(f.verdict, 0), -f.start))
        verdict = worst.verdict
        n = len(members)
        if verdict == SURVIVED:
            reason = (
                f"probes stayed up during {'the' if n == 1 else f'all {n}'} fault{'s' * (n > 1)}"
            )
        elif verdict == UNMEASURED:
            reason = "no probe samples during its faults: configure [[probes]]"
        elif verdict == DRY_RUN:
            reason = "dry run: nothing was injected"
        else:
            reason = f"{worst.describe()} at {clock(worst.start)}: {_fault_figures(worst)}"
            if worst.time_to_recover is not None:
                reason += f"; recovered after {format_duration(worst.time_to_recover)}"
        verdicts.append(GroupVerdict(group, verdict, n, worst.fault_id, reason))
        if verdict == OUTAGE:
            sentence = (
                f"group {group!r} is a single point of failure: {worst.describe()} at "
                f"{clock(worst.start)} caused an outage ({_fault_figures(worst)})"
            )
            others = [by_id[o] for o in worst.overlaps if o in by_id]
            if others:
                shown = ", ".join(o.describe() for o in others)
                sentence += f"; {shown} overlapped it, so the cause may be shared"
            spofs.append(sentence)
    return tuple(verdicts), tuple(spofs)


def group_verdicts(
    faults: Sequence[FaultReport],
) -> tuple[tuple[GroupVerdict, ...], tuple[str, ...]]:
    """Each group's verdict (the worst of its faults) and the single points of failure."""
    return _group_verdicts(faults)


# --- presenting ---------------------------------------------------------------


def clock(t: float, *, date: bool = False) -> str:
    """UTC wall-clock time of `t`, e.g. 12:01:10 (or 2024-05-01 12:01:10)."""
    moment = dt.datetime.fromtimestamp(t, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def report_to_json(report: Report) -> dict[str, Any]:
    """Plain JSON types; ratios carry ok, total and availability (null without samples).

    Built field by field (no deep copies), so 20k faults serialise in well under a
    second. The shape is documented in docs/report-json.md.
    """

    def ratio(r: Ratio) -> dict[str, Any]:
        return {"ok": r.ok, "total": r.total, "availability": r.value}

    span_end = report.span_end
    faults = [
        {
            "fault_id": f.fault_id,
            "fault": f.fault,
            "target": f.target,
            "target_id": f.target_id,
            "group": f.group,
            "host": f.host,
            "start": f.start,
            "end": f.end,
            "duration": f.duration(span_end if span_end is not None else f.start),
            "planned_s": f.planned_s,
            "heal_how": f.heal_how,
            "open": f.open,
            "stuck": f.stuck,
            "dry_run": f.dry_run,
            "heal_failures": f.heal_failures,
            "probes": [
                {
                    "probe": w.probe,
                    "during": ratio(w.during),
                    "until_recovery": ratio(w.until_recovery),
                    "longest_down_s": w.longest_down_s,
                    "recovered_at": w.recovered_at,
                    "failed": w.failed,
                    "recovered": w.recovered,
                }
                for w in f.probes
            ],
            "time_to_recover": f.time_to_recover,
            "recovered": f.recovered,
            "verdict": f.verdict,
            "overlaps": list(f.overlaps),
            "notes": list(f.notes),
            "converged_s": f.converged_s,
        }
        for f in report.faults
    ]
    return {
        "span": {"start": report.span_start, "end": report.span_end, "seconds": report.span_s},
        "runs": report.runs,
        "hosts": list(report.hosts),
        "seeds": list(report.seeds),
        "dry_run": report.dry_run,
        "targets": list(report.targets),
        "verdict": report.verdict,
        "single_points_of_failure": list(report.single_points_of_failure),
        "findings": [
            {
                "group": x.group,
                "verdict": x.verdict,
                "single_point_of_failure": x.single_point_of_failure,
                "hurt_by": list(x.hurt_by),
                "not_hurt_by": list(x.not_hurt_by),
                "worst_availability": x.worst_availability,
                "longest_down_s": x.longest_down_s,
                "evidence": list(x.evidence),
                "hints": [
                    {"code": h.code, "text": h.text, "evidence": list(h.evidence)} for h in x.hints
                ],
            }
            for x in report.findings
        ],
        "halts": [{"t": h.t, "reason": h.reason} for h in report.halts],
        "probes": [
            {
                "name": p.name,
                "kind": p.kind,
                "endpoint": p.endpoint,
                "groups": list(p.groups),
                "resolution_s": p.resolution_s,
                "overall": ratio(p.overall),
                "longest_down_s": p.longest_down_s,
                "first_t": p.first_t,
                "last_t": p.last_t,
            }
            for p in report.probes
        ],
        "faults": faults,
        "groups": [
            {
                "group": g.group,
                "verdict": g.verdict,
                "faults": g.faults,
                "worst_fault_id": g.worst_fault_id,
                "reason": g.reason,
            }
            for g in report.groups
        ],
        "inject_failed": report.inject_failed,
        "skipped_events": report.skipped_events,
        "thresholds": {
            "settle_s": SETTLE_S,
            "degraded_floor": DEGRADED_FLOOR,
            "outage_streak_s": OUTAGE_STREAK_S,
        },
    }
