"""The report's reading and judging rules on hand-written journals (pure, fast).

Streaming (torn tail, huge line, absurd time: skipped and counted, never fatal),
probe samples timed from the check's start, probes tied to groups, the overlap
sweep, findings and their hints, and the trend across journals (through the CLI).
"""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from agent import report as rpt
from agent.errors import UsageError
from agent.report import build_report, report_to_json
from agent.report_hints import HINTS, findings_for
from agent.report_input import MAX_LINE, journal_paths, stream_journal
from agent.report_text import render_table
from agent.report_trend import build_trend
from tests.conftest import run_cli

pytestmark = pytest.mark.pure

T0 = 1_700_000_000.0


def ev(event: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"t": T0 + t, "event": event, "host": "h1", "seed": 1, "dry_run": False} | fields


def fault(fid: str, kind: str, start: float, end: float, group: str = "web") -> list[dict]:
    common = {"fault_id": fid, "fault": kind, "container": f"{group}-1", "group": group}
    return [ev("inject", start, **common), ev("heal", end, how="healed", **common)]


def probe(t: float, ok: bool, name: str = "site", latency_ms: float = 0.0, **kw: Any) -> dict:
    return ev("probe", t, probe=name, kind="http", endpoint="http://lb/", ok=ok, **kw) | {
        "latency_ms": latency_ms
    }


def write(path: Path, events: list[dict], tail: bytes = b"") -> Path:
    with path.open("wb") as fh:
        for e in events:
            fh.write(json.dumps(e).encode() + b"\n")
        fh.write(tail)
    return path


# --- reading: bounded, never fatal ---------------------------------------------


def test_torn_tail_huge_line_and_absurd_times_are_skipped_and_counted(tmp_path: Path) -> None:
    good = [ev("start", 0), probe(1, True), *fault("f1", "kill", 2, 4), probe(5, True)]
    bad_lines = [
        b'{"t": 1e300, "event": "probe", "probe": "site", "ok": true}',  # year 10^292
        b'{"t": -5, "event": "probe", "probe": "site", "ok": true}',
        b'{"t": 1' + b"0" * 400 + b', "event": "probe", "probe": "site", "ok": true}',
        b'{"t": 1' + b"0" * 5000 + b', "event": "probe"}',  # past int's digit limit
        b'{"ts": "0000-01-01T00:00:00", "event": "probe", "probe": "site", "ok": true}',
        b"[" * 5000,  # nesting deeper than the parser allows
        b'"just a string"',
        b"\xff\xfe not utf-8",
        b'{"t": 1700000001, "event": "probe", "probe": "site", "ok": "yes"}',
    ]
    huge = b'{"event": "probe", "pad": "' + b"x" * (3 * MAX_LINE) + b'"}'
    path = tmp_path / "journal.jsonl"
    write(path, good)
    with path.open("ab") as fh:
        fh.write(b"\n".join([*bad_lines, huge]) + b"\n")
        fh.write(json.dumps(probe(6, False)).encode() + b"\n")
        fh.write(b'{"t": 1700000007, "event": "probe", "pro')  # torn by a crash: no newline
    rep = build_report(stream_journal(path))
    assert rep.skipped_events == len(bad_lines) + 2  # + the huge line and the torn tail
    assert rep.probes[0].overall.total == 3  # 1, 5 and 6 s: every other probe line was bad
    assert [f.fault_id for f in rep.faults] == ["f1"]
    render_table(rep)  # nothing in it can break the clock formatting
    json.dumps(report_to_json(rep))


def test_a_huge_torn_tail_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = write(tmp_path / "journal.jsonl", [ev("start", 0), probe(1, True)])
    with path.open("ab") as fh:
        fh.write(b'{"event": "probe", "detail": "')
        for _ in range(40):  # 40 MiB without a newline
            fh.write(b"y" * (1 << 20))
    tracemalloc.start()
    try:
        events = list(stream_journal(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events[-1] is None and len(events) == 3
    assert peak < 8 * MAX_LINE, peak  # a few chunks, never the 40 MiB line


def test_journal_paths_expand_directories_and_refuse_missing(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [])
    b = write(tmp_path / "b.jsonl", [])
    (tmp_path / "notes.txt").write_text("x")
    assert journal_paths([str(tmp_path)]) == [a, b]
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    for missing in (tmp_path / "missing.jsonl", empty):
        with pytest.raises(UsageError):
            journal_paths([str(missing)])


# --- timing: a failing check counts from its start ------------------------------


def test_timed_out_checks_count_from_their_start() -> None:
    """Five 1 s timeouts in a row are a 5 s run of failures: an outage, as fast refusals are."""
    events = [ev("start", 0), *fault("f1", "pause", 10, 30)]
    for s in range(0, 60):
        if 10 <= s < 15:  # the check started at s and gave up 1 s later
            events.append(probe(s + 1.0, False, latency_ms=1000.0))
        else:
            events.append(probe(s + 0.005, True, latency_ms=5.0))
    timed_out = build_report(events).faults[0]
    assert timed_out.probes[0].longest_down_s == pytest.approx(5.0)
    assert timed_out.verdict == rpt.OUTAGE

    refused = [
        e if e["event"] != "probe" or e["ok"] else probe(e["t"] - T0 - 1, False) for e in events
    ]
    fast = build_report(refused).faults[0]
    assert fast.probes[0].longest_down_s == pytest.approx(timed_out.probes[0].longest_down_s)
    assert fast.verdict == rpt.OUTAGE


def test_absurd_latency_is_not_believed() -> None:
    events = [probe(10, False, latency_ms=1e12), probe(11, True)]
    assert build_report(events).samples["site"][0][0] == T0 + 10


# --- probes tied to groups -------------------------------------------------------


def test_a_fault_is_judged_only_by_the_probes_watching_its_group() -> None:
    events = [
        ev("start", 0),
        *fault("a", "kill", 10, 20, "shop/web"),
        *fault("b", "kill", 12, 22, "blog/web"),
    ]
    for s in range(40):
        # the shop's probe fails during both faults; the blog's never does
        events.append(probe(s, not 10 <= s < 22, name="shop-site", groups=["shop"]))
        events.append(probe(s, True, name="blog-site", groups=["blog/web"]))
        events.append(probe(s, True, name="whole-site"))  # declares nothing: watches all
    rep = build_report(events)
    by_id = {f.fault_id: f for f in rep.faults}
    assert [w.probe for w in by_id["a"].probes] == ["shop-site", "whole-site"]
    assert [w.probe for w in by_id["b"].probes] == ["blog-site", "whole-site"]
    assert by_id["a"].verdict == rpt.OUTAGE and by_id["b"].verdict == rpt.SURVIVED
    assert [x.group for x in rep.findings] == ["shop/web"]
    assert {p.name: p.groups for p in rep.probes}["shop-site"] == ("shop",)
    assert rpt.watches((), "x/y") and rpt.watches(("x",), "x/y") and not rpt.watches(("y",), "x/y")


# --- overlaps: the sweep equals the pairwise definition --------------------------


def test_overlap_sweep_matches_pairwise_definition() -> None:
    rng = random.Random(5)
    events: list[dict] = [ev("start", 0), probe(0, True), probe(5000, True)]
    spans: dict[str, tuple[float, float]] = {}
    for i in range(300):
        start = rng.uniform(0, 4000)
        end = start + rng.choice([0.0, rng.uniform(0, 60), rng.uniform(0, 600)])
        fid = f"f{i:03d}"
        pair = fault(fid, "kill", start, end, f"g{i % 7}")
        if i % 25 == 0:
            pair = pair[:1]  # open: drawn to the end of the journal
            end = 5000.0
        events += pair
        spans[fid] = (T0 + start, T0 + end)
    rep = build_report(events)
    for f in rep.faults:
        s, e = spans[f.fault_id]
        expected = {o for o, (s2, e2) in spans.items() if o != f.fault_id and s2 <= e and s <= e2}
        assert set(f.overlaps) == expected, f.fault_id


# --- findings and hints ---------------------------------------------------------


def _site_failing(windows: list[tuple[float, float]], until: int = 400) -> list[dict]:
    return [probe(s, not any(a <= s < b for a, b in windows)) for s in range(until)]


def test_frozen_backend_hint_names_pause_and_its_evidence() -> None:
    events = [
        *fault("k", "kill", 10, 30),
        *fault("p", "pause", 50, 70),
        *fault("s", "stop", 90, 110),
    ]
    events += _site_failing([(50, 56)])
    (finding,) = build_report(events).findings
    assert finding.hurt_by == ("pause",) and finding.not_hurt_by == ("kill", "stop")
    assert finding.evidence == ("p",) and finding.single_point_of_failure
    assert finding.longest_down_s == pytest.approx(6.0)
    codes = [h.code for h in finding.hints]
    assert codes[0] == "frozen-backend" and "slow-detection" in codes
    assert "fails under pause but not under kill or stop" in finding.hints[0].text


def test_no_redundancy_hint_needs_every_kind_and_total_loss() -> None:
    events = [*fault("k", "kill", 10, 20), *fault("p", "pause", 50, 60)]
    total = build_report(events + _site_failing([(10, 21), (50, 61)])).findings[0]
    assert [h.code for h in total.hints] == ["no-redundancy"]
    # a third of the requests lost (a balancer without checks): not "nothing else serves"
    partial = events + [
        probe(s / 3, s % 3 != 0 or not (30 <= s < 63 or 150 <= s < 183)) for s in range(300)
    ]
    codes = [h.code for h in build_report(partial).findings[0].hints]
    assert "no-redundancy" not in codes and "partial-loss" in codes
    # a share lost until 2 s before the heal: the last failure is no "recovery"
    events = [*fault("k", "stop", 10, 20)]
    events += [probe(s / 5, s % 3 != 0 or not 50 <= s < 90) for s in range(150)]
    codes = [h.code for h in build_report(events).findings[0].hints]
    assert codes == ["partial-loss"], codes


def test_late_recovery_and_never_recovered_hints() -> None:
    late = build_report([*fault("a", "stop", 10, 20), *_site_failing([(10, 26)], 40)])
    assert [h.code for h in late.findings[0].hints] == ["late-recovery"]
    assert "until 6s after the heal" in late.findings[0].hints[0].text
    dead = build_report([*fault("a", "stop", 10, 20), *_site_failing([(10, 99)], 40)])
    assert "never-recovered" in [h.code for h in dead.findings[0].hints]


def test_network_only_hint() -> None:
    events = [*fault("k", "kill", 10, 20), *fault("l", "latency", 50, 60)]
    rep = build_report(events + _site_failing([(50, 52)]))
    assert [h.code for h in rep.findings[0].hints][:1] == ["slow-member"]


def test_survived_and_dry_run_groups_have_no_finding() -> None:
    events = [*fault("k", "kill", 10, 20), *_site_failing([])]
    assert build_report(events).findings == ()
    assert findings_for((), ()) == ()
    assert len(HINTS) == len({rule.__name__ for rule in HINTS})


# --- trend across journals -------------------------------------------------------


def test_trend_says_better_after_a_fix(tmp_path: Path) -> None:
    weak = write(
        tmp_path / "1-weak.jsonl", [*fault("p1", "pause", 10, 20), *_site_failing([(10, 16)], 40)]
    )
    good = write(tmp_path / "2-good.jsonl", [*fault("p2", "pause", 10, 20), *_site_failing([], 40)])
    trend = build_trend(
        [
            (str(weak), build_report(stream_journal(weak))),
            (str(good), build_report(stream_journal(good))),
        ]
    )
    assert [(g.group, g.change) for g in trend] == [("web", "better")]
    assert [p.verdict for p in trend[0].points] == [rpt.OUTAGE, rpt.SURVIVED]

    out = run_cli("report", "--journal", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [r["journal"] for r in data["runs"]] == [str(weak), str(good)]
    assert data["trend"][0]["change"] == "better"
    assert data["trend"][0]["runs"][0]["availability"]["availability"] < 1.0

    text = run_cli("report", "--journal", str(weak), "--journal", str(good))
    assert "web (better): run 1: outage" in text.stdout and "run 2: survived" in text.stdout

    refused = run_cli("report", "--journal", str(tmp_path), "--html", str(tmp_path / "x.html"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.html").exists()


# --- promises of docs/probes-and-report.md ----------------------------------------


def test_resolution_is_the_median_spacing_and_shown() -> None:
    events = [probe(s * 0.2, True) for s in range(100)] + [
        probe(30 + s, True, name="slow") for s in range(5)
    ]
    rep = build_report(events)
    res = {p.name: p.resolution_s for p in rep.probes}
    assert res["site"] == pytest.approx(0.2) and res["slow"] == pytest.approx(1.0)
    assert "EVERY" in render_table(rep) and "200ms" in render_table(rep)
    assert report_to_json(rep)["probes"][0]["resolution_s"] == pytest.approx(0.2)


def test_a_short_fault_with_one_failed_check_is_an_outage_unless_sampled_densely() -> None:
    # 3 s fault, one check a second, one failure: 3 of 4 checks = 75 % < 90 %
    events = [*fault("a", "kill", 10, 13), *_site_failing([(11, 12)], 60)]
    f = build_report(events).faults[0]
    assert f.verdict == rpt.OUTAGE and f.probes[0].until_recovery.value == pytest.approx(0.75)
    # the same fault checked ten times a second, one 100 ms failure: 30 of 31 = degraded
    dense = [*fault("a", "kill", 10, 13)] + [probe(s / 10, s != 110) for s in range(600)]
    assert build_report(dense).faults[0].verdict == rpt.DEGRADED
    # one failure inside a 50 s fault at one check a second: 50 of 51, degraded
    events = [*fault("a", "kill", 10, 60), *_site_failing([(40, 41)], 80)]
    assert build_report(events).faults[0].verdict == rpt.DEGRADED


def test_a_fault_cut_short_by_the_end_of_the_run_is_judged_on_what_was_journaled() -> None:
    events = [*fault("a", "stop", 10, 20), *_site_failing([(15, 99)], 20)]
    f = build_report(events).faults[0]
    assert f.verdict == rpt.OUTAGE and not f.recovered and f.time_to_recover is None
    assert "never" in render_table(build_report(events))


def test_mean_gap_is_min_gap_plus_the_exponential_tail() -> None:
    import math

    from agent.planner import next_gap

    rng = random.Random(3)
    for mean, floor in ((120.0, 30.0), (20.0, 10.0)):
        draws = [next_gap(rng, mean, floor) for _ in range(40_000)]
        expected = floor + mean * math.exp(-floor / mean)
        assert sum(draws) / len(draws) == pytest.approx(expected, rel=0.03)


def test_html_lists_findings_and_hints_escaped() -> None:
    from agent.report_html import render_html

    events = [
        *fault("p", "pause", 50, 70, "<b>web</b>"),
        *fault("s", "stop", 90, 110, "<b>web</b>"),
    ]
    page = render_html(build_report(events + _site_failing([(50, 56)])))
    assert "data-code='frozen-backend'" in page and "fails under pause but not under stop" in page
    assert "<b>web</b>" not in page and "&lt;b&gt;web&lt;/b&gt;" in page
