"""The report as plain aligned text: what `chaos-agent report` prints.

Presents agent.report's dataclasses (built from the journal) without colours and with
every string from the journal made printable; agent.report_html draws the same as a page.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.availability import Ratio
from agent.durations import format_duration
from agent.report import (
    DEGRADED_FLOOR,
    OUTAGE_STREAK_S,
    SETTLE_S,
    FaultReport,
    Report,
    clock,
)
from agent.textsafe import printable


def _pct(ratio: Ratio) -> str:
    value = ratio.value
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _ttr(f: FaultReport) -> str:
    if f.time_to_recover is not None:
        return format_duration(f.time_to_recover)
    if not f.recovered:
        return "never"
    return "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = (c.ljust(w) for c, w in zip(row, widths, strict=True))
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def summary_line(report: Report) -> str:
    """One sentence: the span, runs, hosts and the overall verdict."""
    if report.span_start is None or report.span_end is None:
        return "The journal holds no events."
    crosses = clock(report.span_start, date=True)[:10] != clock(report.span_end, date=True)[:10]
    text = (
        f"{clock(report.span_start, date=True)} to {clock(report.span_end, date=crosses)} UTC "
        f"({format_duration(report.span_s)}), {report.runs} run{'s' * (report.runs != 1)}"
    )
    if report.hosts:
        text += ", host " + ", ".join(printable(h, 60) for h in report.hosts)
    if report.seeds:
        text += ", seed " + ", ".join(printable(s, 30) for s in report.seeds)
    return text


def render_table(report: Report) -> str:
    """The report as plain aligned text (no colours, no escapes from the journal)."""
    out = [f"chaos-agent report: {summary_line(report)}"]
    if report.dry_run:
        out.append("DRY RUN: nothing was injected; probes measured the site as it was.")
    out.append(f"Overall verdict: {report.verdict.upper()}")
    for sentence in report.single_points_of_failure:
        out.append(f"  ! {printable(sentence, 400)}")
    for halt in report.halts:
        out.append(f"Halted at {clock(halt.t)}: {printable(halt.reason, 400)}")

    out += ["", "Probes (whole journal)"]
    if report.probes:
        rows = [
            [
                printable(p.name, 40),
                f"{p.overall.percent()} ({p.overall.ok}/{p.overall.total})",
                format_duration(p.longest_down_s) if p.longest_down_s else "-",
                format_duration(p.resolution_s) if p.resolution_s else "-",
                printable(p.endpoint, 80)
                + (f" (groups: {printable(', '.join(p.groups), 80)})" if p.groups else ""),
            ]
            for p in report.probes
        ]
        out += _table(["PROBE", "AVAILABILITY", "LONGEST DOWN", "EVERY", "ENDPOINT"], rows)
        out.append("  EVERY: median time between checks; a shorter outage can go unseen")
    else:
        out.append("  none journaled: add [[probes]] to the config to measure availability")

    out += ["", f"Faults ({len(report.faults)})"]
    span_end = report.span_end or 0.0
    if report.faults:
        names = [p.name for p in report.probes]
        headers = ["START", "FAULT", "TARGET", "GROUP", "DURATION"]
        headers += [printable(n, 20) for n in names] + ["RECOVERED IN", "VERDICT"]
        swarm = any(f.converged_s is not None for f in report.faults)
        if swarm:  # Swarm: time until the service had all its tasks running again
            headers.append("CONVERGED IN")
        rows = []
        for f in report.faults:
            by_probe = {w.probe: w for w in f.probes}
            duration = format_duration(f.duration(span_end)) + ("+ (open)" if f.open else "")
            row = [
                clock(f.start),
                printable(f.fault, 20),
                printable(f.target, 40),
                printable(f.group, 30),
                duration,
            ]
            for n in names:
                w = by_probe.get(n)
                row.append(f"{_pct(w.during)} / {_pct(w.until_recovery)}" if w else "n/a")
            row += [_ttr(f), f.verdict + (" (stuck)" if f.stuck else "")]
            if swarm:
                row.append("-" if f.converged_s is None else format_duration(f.converged_s))
            rows.append(row)
        out += _table(headers, rows)
        if names:
            out.append("  per probe: availability during the fault / from its start until recovery")
    else:
        out.append("  none")

    out += ["", "Groups"]
    if report.groups:
        rows = [
            [printable(g.group, 30), str(g.faults), g.verdict, printable(g.reason, 300)]
            for g in report.groups
        ]
        out += _table(["GROUP", "FAULTS", "VERDICT", "WHY"], rows)
    else:
        out.append("  no faults, so no verdicts")

    if report.findings:
        out += ["", "Findings (per group a fault hurt)"]
    for x in report.findings:
        hurt = ", ".join(printable(k, 20) for k in x.hurt_by) or "-"
        clean = ", ".join(printable(k, 20) for k in x.not_hurt_by) or "-"
        out.append(
            f"  {printable(x.group, 40)}: {x.verdict}; hurt by {hurt}; not hurt by {clean}; "
            f"evidence {', '.join(printable(i, 40) for i in x.evidence[:8])}"
            + (f" (+{len(x.evidence) - 8})" if len(x.evidence) > 8 else "")
        )
        for h in x.hints:
            out.append(
                f"    hint: {h.text} [{', '.join(printable(i, 40) for i in h.evidence[:5])}]"
            )

    notes = [f"{f.fault_id}: {printable(n, 200)}" for f in report.faults for n in f.notes]
    if report.inject_failed:
        notes.append(f"{report.inject_failed} injection(s) failed and changed nothing")
    if report.skipped_events:
        notes.append(f"{report.skipped_events} unreadable journal event(s) skipped")
    if notes:
        out += ["", "Notes"] + [f"  - {n}" for n in notes]
    out += [
        "",
        f"Verdicts: outage = a probe never recovered, fell below {DEGRADED_FLOOR:.0%} "
        f"or failed {format_duration(OUTAGE_STREAK_S)} in a row; degraded = it dipped "
        f"and recovered; failures up to {format_duration(SETTLE_S)} after a heal count.",
    ]
    return "\n".join(out) + "\n"
