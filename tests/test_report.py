"""build_report on hand-written journals: verdicts, recovery, torn lines, disorder, hostile names."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from agent import report as rpt
from agent.journal import read_journal
from agent.report import build_report, report_to_json
from agent.report_text import render_table

pytestmark = pytest.mark.pure

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def ev(event: str, t: float, **fields: Any) -> dict[str, Any]:
    return {
        "ts": "",
        "t": T0 + t,
        "event": event,
        "host": "h1",
        "seed": 7,
        "dry_run": False,
    } | fields


def fault(event: str, t: float, fid: str, kind: str, name: str, group: str, **kw: Any) -> dict:
    return ev(
        event,
        t,
        fault_id=fid,
        fault=kind,
        target_kind="container",
        container_id=f"id-{name}",
        container=name,
        group=group,
        duration=30.0,
        injected_at=T0 + t - 0.01 if event == "inject" else kw.pop("injected_at", T0),
        deadline=T0 + t + 30,
        params={},
        **kw,
    )


def probes(until: int, failing: set[int], name: str = "site") -> list[dict]:
    return [
        ev("probe", s, probe=name, kind="http", endpoint="http://lb/", ok=s not in failing)
        for s in range(until + 1)
    ]


def scenario() -> list[dict]:
    site_down = {11, 12} | set(range(101, 136))
    events = [ev("start", 0, targets="3 groups: web (2), db (1), cache (1)")]
    events += probes(200, site_down)
    events += probes(200, set(), name="db-port")
    events += [
        fault("inject", 10, "f1", "kill", "web-2", "web"),
        fault("heal", 40, "f1", "kill", "web-2", "web", how="healed"),
        fault("inject", 60, "f2", "pause", "web-1", "web"),
        fault("heal", 90, "f2", "pause", "web-1", "web", how="already"),
        fault("inject", 100, "f3", "pause", "db-1", "db"),
        fault("heal_failed", 130, "f3", "pause", "db-1", "db", detail="daemon busy"),
        fault("heal", 131, "f3", "pause", "db-1", "db", how="healed"),
        ev("inject_failed", 140, fault_id="f9", fault="stop", container="web-1", group="web"),
        fault("inject", 150, "f4", "stop", "cache-1", "cache"),
        ev("stop", 200),
    ]
    return events


def by_id(report: rpt.Report) -> dict[str, rpt.FaultReport]:
    return {f.fault_id: f for f in report.faults}


def test_verdicts_recovery_and_single_point_of_failure() -> None:
    report = build_report(scenario())
    faults = by_id(report)
    assert list(faults) == ["f1", "f2", "f3", "f4"]

    f1 = faults["f1"]
    assert (f1.fault, f1.target, f1.group, f1.start, f1.end) == (
        "kill",
        "web-2",
        "web",
        T0 + 10,
        T0 + 40,
    )
    site = next(w for w in f1.probes if w.probe == "site")
    assert site.during.ok == 29 and site.during.total == 31
    assert site.longest_down_s == 2.0 and site.recovered_at == T0 + 13
    assert f1.time_to_recover == 3.0 and f1.verdict == rpt.DEGRADED

    f2 = faults["f2"]
    assert f2.verdict == rpt.SURVIVED and f2.time_to_recover is None and f2.recovered
    assert f2.heal_how == "already"

    f3 = faults["f3"]
    assert f3.verdict == rpt.OUTAGE and f3.heal_failures == 1
    assert f3.time_to_recover == 36.0  # failures until 135 (4 s after the heal), ok at 136
    site3 = next(w for w in f3.probes if w.probe == "site")
    assert site3.during.ok == 1 and site3.during.total == 32  # 100 ok, 101..131 failing
    assert site3.until_recovery.total == 37 and site3.longest_down_s == 35.0

    f4 = faults["f4"]
    assert f4.open and f4.end is None and f4.verdict == rpt.SURVIVED
    assert f4.duration(report.span_end or 0) == 50.0
    assert any("no heal in the journal" in n for n in f4.notes)

    groups = {g.group: g for g in report.groups}
    assert {k: g.verdict for k, g in groups.items()} == {
        "web": rpt.DEGRADED,
        "db": rpt.OUTAGE,
        "cache": rpt.SURVIVED,
    }
    assert groups["web"].faults == 2 and groups["web"].worst_fault_id == "f1"
    assert report.verdict == rpt.OUTAGE
    (spof,) = report.single_points_of_failure
    assert spof.startswith("group 'db' is a single point of failure: pause of db-1 at 22:15:00")
    assert report.runs == 1 and report.inject_failed == 1 and report.seeds == (7,)
    assert report.span_s == 200.0
    summary = {p.name: p for p in report.probes}
    assert summary["site"].overall.total == 201 and summary["site"].overall.ok == 201 - 37
    assert summary["site"].longest_down_s == 35.0
    assert summary["db-port"].overall.value == 1.0


def test_order_does_not_matter_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    events = scenario()
    expected = report_to_json(build_report(events))
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    path = tmp_path / "journal.jsonl"
    lines = [json.dumps(e) for e in shuffled]
    lines.insert(50, '{"t": 1700000001.0, "event": "probe", "probe": "si')  # torn mid-line
    lines.append('{"event": "inject", "t": ')  # torn last line (crash mid-write)
    path.write_text("\n".join(lines))
    read = list(read_journal(path))
    assert len(read) == len(events)
    assert report_to_json(build_report(read)) == expected


def test_malformed_events_are_counted_not_fatal() -> None:
    events: list[Any] = scenario()
    events += [
        "not a dict",
        {"event": "probe"},  # no time at all
        {"t": "yesterday", "event": "inject"},
        ev("probe", 5, probe="site", ok="yes"),  # wrong type
        ev("inject", 6),  # no fault id
        ev("heal", 7, fault_id="zz"),  # a heal with no inject and no injected_at
        {"t": True, "event": "stop"},
    ]
    report = build_report(events)
    assert report.skipped_events == 7
    assert [f.fault_id for f in report.faults] == ["f1", "f2", "f3", "f4"]


def test_heal_without_inject_and_clock_skew() -> None:
    events = probes(60, set()) + [
        fault("heal", 20, "lonely", "pause", "web-3", "web", injected_at=T0 + 5, how="healed"),
        # heal journaled before its inject (clock stepped back between the two writes)
        fault("heal", 30, "skew", "kill", "web-4", "web", how="environment"),
        fault("inject", 35, "skew", "kill", "web-4", "web"),
    ]
    faults = by_id(build_report(events))
    assert faults["lonely"].start == T0 + 5 and faults["lonely"].end == T0 + 20
    assert "inject event is missing" in faults["lonely"].notes[0]
    skew = faults["skew"]
    assert skew.start == T0 + 35 and skew.end == T0 + 35 and skew.heal_how == "environment"
    assert any("clock skew" in n for n in skew.notes)


def test_streak_or_no_recovery_is_an_outage() -> None:
    # 6 s down in a row during a long fault: availability stays above 90 %, still an outage
    long_fault = probes(300, set(range(50, 56))) + [
        fault("inject", 10, "a", "kill", "web-1", "web"),
        fault("heal", 250, "a", "kill", "web-1", "web", how="healed"),
    ]
    a = build_report(long_fault).faults[0]
    site = a.probes[0]
    assert (site.until_recovery.value or 0) > 0.9 and site.longest_down_s == 6.0
    assert a.verdict == rpt.OUTAGE and a.time_to_recover == 46.0

    # 4 s down: degraded
    short = probes(300, set(range(50, 54))) + long_fault[-2:]
    assert build_report(short).faults[0].verdict == rpt.DEGRADED

    # never recovers
    dead = probes(60, set(range(15, 61))) + [
        fault("inject", 10, "b", "pause", "db-1", "db"),
        fault("heal", 20, "b", "pause", "db-1", "db", how="healed"),
    ]
    report = build_report(dead)
    b = report.faults[0]
    assert b.verdict == rpt.OUTAGE and not b.recovered and b.time_to_recover is None
    assert "never recovered" in report.single_points_of_failure[0]
    assert "never" in render_table(report)

    # a failure long after the fault (past SETTLE_S) is not its fault
    later = probes(100, {40}) + [
        fault("inject", 10, "c", "kill", "web-1", "web"),
        fault("heal", 20, "c", "kill", "web-1", "web", how="healed"),
    ]
    assert build_report(later).faults[0].verdict == rpt.SURVIVED


def test_overlapping_faults_share_the_blame() -> None:
    events = probes(100, set(range(30, 60))) + [
        fault("inject", 20, "x", "pause", "db-1", "db"),
        fault("inject", 25, "y", "kill", "web-1", "web"),
        fault("heal", 50, "x", "pause", "db-1", "db", how="healed"),
        fault("heal", 55, "y", "kill", "web-1", "web", how="healed"),
    ]
    report = build_report(events)
    assert by_id(report)["x"].overlaps == ("y",)
    assert len(report.single_points_of_failure) == 2
    assert "kill of web-1 overlapped it" in report.single_points_of_failure[0]


def test_unmeasured_dry_run_and_empty() -> None:
    no_probes = [
        fault("inject", 1, "a", "kill", "web-1", "web"),
        fault("heal", 5, "a", "kill", "web-1", "web"),
    ]
    report = build_report(no_probes)
    assert report.faults[0].verdict == rpt.UNMEASURED and report.verdict == rpt.UNMEASURED
    assert "configure [[probes]]" in report.groups[0].reason

    dry = [dict(e, dry_run=True) for e in [ev("start", 0), *no_probes, *probes(10, set())]]
    report = build_report(dry)
    assert report.dry_run and report.faults[0].verdict == rpt.DRY_RUN
    assert "DRY RUN" in render_table(report)

    empty = build_report([])
    assert empty.span_start is None and empty.faults == ()
    assert "no events" in render_table(empty)
    json.dumps(report_to_json(empty))


def test_table_and_json() -> None:
    report = build_report(scenario())
    text = render_table(report)
    print(text)
    lines = text.splitlines()
    assert lines[0].startswith(
        "chaos-agent report: 2023-11-14 22:13:20 to 22:16:40 UTC (3m), 1 run"
    )
    assert "Overall verdict: OUTAGE" in text
    header = next(line for line in lines if line.strip().startswith("START"))
    assert "site" in header and "db-port" in header and "RECOVERED IN" in header
    row = next(line for line in lines if "web-2" in line and "kill" in line)
    assert row.split()[-2:] == ["3s", "degraded"]
    assert "94% / 94%" in row  # 29/31 during, and the recovery ends inside the fault
    assert "0s+ (open)" in next(line for line in lines if "cache-1" in line)
    data = report_to_json(report)
    back = json.loads(json.dumps(data))
    assert back["verdict"] == "outage"
    assert back["faults"][2]["probes"][1]["during"] == {
        "ok": 1,
        "total": 32,
        "availability": 1 / 32,
    }
    assert back["faults"][3]["end"] is None and back["faults"][3]["open"] is True
    assert back["thresholds"]["degraded_floor"] == rpt.DEGRADED_FLOOR
    assert [g["group"] for g in back["groups"]] == ["cache", "db", "web"]


def test_hostile_names_cannot_reach_the_terminal() -> None:
    evil = "web\x1b[2J\x1b]0;pwned\x07\n<script>alert(1)</script>'\""
    events = probes(30, {12}) + [
        fault("inject", 10, "e", "kill", evil, "g\x1b[31m"),
        fault("heal", 20, "e", "kill", evil, "g\x1b[31m", how="healed"),
        ev("halt", 25, reason="probe 'x\x1b[1m' too low\r\n"),
    ]
    text = render_table(build_report(events))
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "web\\x1b[2J" in text
    # the newline inside the name does not start a new line of the table
    assert not any(line.startswith("<script>") for line in text.splitlines())
    assert "web\\x1b[2J\\x1b]0;pwned\\x07\\x0a<script>" in text


def test_settle_window_ends_where_the_next_fault_begins() -> None:
    events = probes(100, {25, 26}) + [
        fault("inject", 10, "a", "kill", "web-1", "web"),
        fault("heal", 20, "a", "kill", "web-1", "web", how="healed"),
        fault("inject", 22, "b", "pause", "db-1", "db"),
        fault("heal", 60, "b", "pause", "db-1", "db", how="healed"),
    ]
    faults = by_id(build_report(events))
    assert faults["a"].verdict == rpt.SURVIVED
    assert faults["b"].verdict == rpt.DEGRADED and faults["b"].time_to_recover == 5.0


def test_environment_and_watchdog_heals_close_a_fault() -> None:
    events = [
        ev("start", 0),
        fault("inject", 10, "k1", "kill", "web-1", "web"),
        fault("healed_by_environment", 14, "k1", "kill", "web-1", "web", how="environment"),
        fault("inject", 20, "p1", "pause", "web-2", "web"),
        fault("watchdog", 52, "p1", "pause", "web-2", "web", how="healed"),
        fault("heal", 60, "p1", "pause", "web-2", "web", how="already"),
        fault("inject", 70, "p2", "pause", "web-3", "web"),
        fault("watchdog", 102, "p2", "pause", "web-3", "web", how="failed"),
        ev("stop", 110),
    ]
    faults = by_id(build_report(events))
    assert faults["k1"].duration(T0 + 110) == 4.0 and faults["k1"].heal_how == "environment"
    assert faults["p1"].duration(T0 + 110) == 32.0  # the first heal ends it
    assert faults["p2"].end is None and faults["p2"].open  # a failed watchdog heal does not
