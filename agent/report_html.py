"""The report as one self-contained HTML page with a timeline.

Pure: `render_html(report, events)` returns a string. Nothing is fetched: the CSS
and the drawing script are inline, and a Content-Security-Policy forbids every
network request. The summary, verdicts and tables are rendered here (escaped);
the timeline is drawn in the browser from a JSON block, with `textContent` and
`setAttribute` only, so nothing taken from the journal is ever parsed as markup.

Timeline: a lane per container with its faults as bars (one colour per fault
type; hover for details), a strip per probe (green ok, red failing, grey when
no sample), a shared UTC time axis, and a red line where the agent halted.
Every drawn fault carries `data-fault-id`, every probe segment `data-probe`,
`data-ok` and `data-count` (what the browser test reads back).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from agent.availability import Sample
from agent.durations import format_duration
from agent.report import (
    DEGRADED_FLOOR,
    OUTAGE_STREAK_S,
    SETTLE_S,
    FaultReport,
    Report,
    clock,
)
from agent.report_text import summary_line
from agent.textsafe import printable

FAULT_COLOURS = {
    "kill": "#d62728",
    "stop": "#ff7f0e",
    "pause": "#1f77b4",
    "restart": "#9467bd",
    "partition": "#8c564b",
    "loss": "#e377c2",
    "latency": "#7f7f7f",
    "jitter": "#bcbd22",
    "bandwidth": "#17becf",
    "disconnect": "#2ca02c",
}
OTHER_COLOUR = "#555555"
MAX_GAP_FACTOR = 3.0  # a probe sample "covers" at most this many typical intervals


def _e(value: object, limit: int = 200) -> str:
    """Escaped for HTML text and attributes, control characters made visible."""
    return html.escape(printable(value, limit), quote=True)


def probe_segments(samples: Sequence[Sample], span_end: float) -> list[list[Any]]:
    """Runs of equal results: [from, to, ok, count]; a run lasts until the next sample.

    A gap longer than MAX_GAP_FACTOR typical intervals (the agent was not
    running) ends the run early, so it is drawn as "no sample", not as ok.
    """
    if not samples:
        return []
    gaps = sorted(b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False) if b[0] > a[0])
    typical = gaps[len(gaps) // 2] if gaps else 1.0
    reach = typical * MAX_GAP_FACTOR
    segments: list[list[Any]] = []
    for i, (t, ok) in enumerate(samples):
        nxt = samples[i + 1][0] if i + 1 < len(samples) else min(span_end, t + typical)
        to = min(nxt, t + reach)
        last = segments[-1] if segments else None
        if last is not None and last[2] == ok and last[1] >= t:
            last[1] = max(last[1], to)
            last[3] += 1
        else:
            segments.append([t, max(to, t), ok, 1])
    return segments


def _tooltip(f: FaultReport, span_end: float) -> str:
    lines = [
        f"{f.fault} {f.target} (group {f.group})",
        f"fault {f.fault_id}",
        f"from {clock(f.start)} for {format_duration(f.duration(span_end))}"
        + (" - still open: no heal journaled" if f.open else f", heal: {f.heal_how}"),
        f"verdict: {f.verdict}",
    ]
    if f.time_to_recover is not None:
        lines.append(f"recovered after {format_duration(f.time_to_recover)}")
    elif not f.recovered:
        lines.append("the probes never recovered")
    for w in f.probes:
        lines.append(
            f"probe {w.probe}: {w.during.percent()} during, "
            f"{w.until_recovery.percent()} until recovery"
        )
    lines += list(f.notes)
    return "\n".join(printable(line, 300) for line in lines)


def _data(report: Report) -> dict[str, Any]:
    span_start = report.span_start or 0.0
    span_end = report.span_end or span_start
    # one lane per container name: a container recreated by compose keeps its lane
    lanes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in report.faults:
        key = (f.group, f.target)
        lanes.setdefault(key, []).append(
            {
                "id": printable(f.fault_id, 80),
                "fault": printable(f.fault, 40),
                "colour": FAULT_COLOURS.get(f.fault, OTHER_COLOUR),
                "start": f.start,
                "end": f.end if f.end is not None else span_end,
                "open": f.open,
                "verdict": f.verdict,
                "tip": _tooltip(f, span_end),
            }
        )
    return {
        "start": span_start,
        "end": span_end,
        "lanes": [
            {"group": printable(g, 60), "name": printable(n, 60), "faults": faults}
            for (g, n), faults in sorted(lanes.items())
        ],
        "probes": [
            {
                "name": printable(p.name, 60),
                "summary": f"{p.overall.percent()} ({p.overall.ok}/{p.overall.total})",
                "segments": probe_segments(report.samples.get(p.name, ()), span_end),
            }
            for p in report.probes
        ],
        "halts": [{"t": h.t, "reason": printable(h.reason, 300)} for h in report.halts],
    }


def _script_json(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _tables(report: Report) -> str:
    out: list[str] = []
    if report.groups:
        out.append(
            "<h2>Groups</h2><table class='groups'><tr><th>Group</th><th>Faults</th>"
            "<th>Verdict</th><th>Why</th></tr>"
        )
        for g in report.groups:
            out.append(
                f"<tr data-group='{_e(g.group)}'><td>{_e(g.group)}</td><td>{g.faults}</td>"
                f"<td><span class='badge v-{_e(g.verdict)}'>{_e(g.verdict)}</span></td>"
                f"<td>{_e(g.reason, 400)}</td></tr>"
            )
        out.append("</table>")
    if report.findings:
        out.append("<h2>Findings</h2><ul class='findings'>")
        for x in report.findings:
            hurt = ", ".join(x.hurt_by) or "-"
            clean = ", ".join(x.not_hurt_by) or "-"
            hints = "".join(
                f"<li class='hint' data-code='{_e(h.code)}'>{_e(h.text, 400)} "
                f"({_e(', '.join(h.evidence), 200)})</li>"
                for h in x.hints
            )
            out.append(
                f"<li data-finding='{_e(x.group)}'><span class='fgroup'>{_e(x.group)}</span>: "
                f"{_e(x.verdict)}; "
                f"hurt by {_e(hurt)}; not hurt by {_e(clean)}"
                + (f"<ul>{hints}</ul>" if hints else "")
                + "</li>"
            )
        out.append("</ul>")
    out.append("<h2>Probes</h2>")
    if report.probes:
        out.append(
            "<table><tr><th>Probe</th><th>Availability</th><th>Longest down</th>"
            "<th>Endpoint</th></tr>"
        )
        for p in report.probes:
            down = format_duration(p.longest_down_s) if p.longest_down_s else "-"
            out.append(
                f"<tr><td>{_e(p.name)}</td><td>{p.overall.percent()} "
                f"({p.overall.ok}/{p.overall.total})</td><td>{down}</td>"
                f"<td>{_e(p.endpoint)}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append("<p>No probe results in the journal: add <code>[[probes]]</code>.</p>")
    out.append(f"<h2>Faults ({len(report.faults)})</h2>")
    if report.faults:
        names = [p.name for p in report.probes]
        head = "".join(f"<th>{_e(n)}<br><small>during / to recovery</small></th>" for n in names)
        out.append(
            "<table class='faults'><tr><th>Start (UTC)</th><th>Fault</th><th>Target</th>"
            f"<th>Group</th><th>Duration</th>{head}<th>Recovered in</th><th>Verdict</th></tr>"
        )
        span_end = report.span_end or 0.0
        for f in report.faults:
            by_probe = {w.probe: w for w in f.probes}
            cells = "".join(
                f"<td>{_pct(by_probe[n].during.value)} / {_pct(by_probe[n].until_recovery.value)}</td>"
                if n in by_probe
                else "<td>n/a</td>"
                for n in names
            )
            if f.time_to_recover is not None:
                ttr = format_duration(f.time_to_recover)
            else:
                ttr = "-" if f.recovered else "never"
            duration = format_duration(f.duration(span_end)) + ("+ (open)" if f.open else "")
            notes = "".join(f"<div class='note'>{_e(n, 300)}</div>" for n in f.notes)
            out.append(
                f"<tr data-row-fault-id='{_e(f.fault_id, 80)}'><td>{clock(f.start)}</td>"
                f"<td>{_e(f.fault)}</td><td>{_e(f.target)}{notes}</td><td>{_e(f.group)}</td>"
                f"<td>{duration}</td>{cells}<td>{ttr}</td>"
                f"<td><span class='badge v-{_e(f.verdict)}'>{_e(f.verdict)}</span></td></tr>"
            )
        out.append("</table>")
    return "\n".join(out)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.span{color:#555;margin:0 0 12px}
.overall{display:inline-block;font-weight:700;font-size:18px;padding:4px 12px;border-radius:6px;color:#fff}
.spof{margin:10px 0;padding:8px 12px;border-left:4px solid #c62828;background:#fdecea}
.halt{margin:10px 0;padding:8px 12px;border-left:4px solid #6a1b9a;background:#f3e5f5}
.dry{margin:10px 0;padding:8px 12px;border-left:4px solid #777;background:#eee}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td{white-space:pre-wrap;overflow-wrap:break-word}
.badge{padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;white-space:nowrap}
.v-survived{background:#2e7d32}.v-degraded{background:#ef8f00}.v-outage{background:#c62828}
.v-unmeasured,.v-dry-run{background:#888}
.note{color:#8a5a00;font-size:12px}
#timeline{background:#fff;border:1px solid #ddd;padding:8px;overflow-x:auto}
#timeline svg{width:100%;min-width:900px;height:auto;display:block}
.legend>span{display:inline-block;margin-right:14px;font-size:12px}
.legend .swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.thresholds{color:#555;font-size:12px;margin-top:20px}
svg text{font-family:system-ui,sans-serif}
svg .fault:hover{stroke:#000;stroke-width:2}
"""

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var host = document.getElementById("timeline");
  var W = 1200, LABEL = 230, RIGHT = 20, LANE = 24, STRIP = 22, TOP = 34;
  var t0 = data.start, t1 = data.end > data.start ? data.end : data.start + 1;
  var rows = data.lanes.length, strips = data.probes.length;
  var probesTop = TOP + rows * LANE + (rows ? 18 : 0);
  var H = probesTop + strips * (STRIP + 6) + 14;
  function x(t) { return LABEL + (Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0) * (W - LABEL - RIGHT); }
  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) { node.setAttribute(k, String(attrs[k])); }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function text(parent, x0, y0, value, attrs) {
    var node = el("text", Object.assign({x: x0, y: y0}, attrs || {}), parent);
    node.textContent = value;
    return node;
  }
  function tip(node, value) { el("title", {}, node).textContent = value; }
  function short(s, n) { return s.length > n ? s.substr(0, n - 1) + "\u2026" : s; }
  function hms(t) { return new Date(t * 1000).toISOString().substr(11, 8); }
  var svg = el("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "timeline"});
  // time axis and grid
  var steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  var step = steps[steps.length - 1];
  for (var s = 0; s < steps.length; s++) { if ((t1 - t0) / steps[s] <= 10) { step = steps[s]; break; } }
  var axis = el("g", {"class": "axis"}, svg);
  for (var tick = Math.ceil(t0 / step) * step; tick <= t1; tick += step) {
    el("line", {x1: x(tick), x2: x(tick), y1: TOP - 6, y2: H - 8, stroke: "#e4e4e4"}, axis);
    text(axis, x(tick), TOP - 12, hms(tick), {"text-anchor": "middle", "font-size": 11, fill: "#666"});
  }
  text(axis, 8, TOP - 12, "UTC", {"font-size": 11, fill: "#666"});
  // container lanes
  var lanes = el("g", {"class": "lanes"}, svg), bandsToDraw = [];
  data.lanes.forEach(function (lane, i) {
    var y = TOP + i * LANE;
    var g = el("g", {"class": "lane", "data-lane": lane.name, "data-group": lane.group}, lanes);
    el("rect", {x: LABEL, y: y + 2, width: W - LABEL - RIGHT, height: LANE - 4, fill: i % 2 ? "#fafafa" : "#f3f3f3"}, g);
    var label = text(g, 8, y + LANE / 2 + 4, short(lane.name, 24), {"font-size": 12});
    var grp = el("tspan", {fill: "#888", "font-size": 11}, label);
    grp.textContent = "  " + short(lane.group, Math.max(4, 30 - Math.min(lane.name.length, 24)));
    tip(label, lane.name + " (group " + lane.group + ")");
    lane.faults.forEach(function (f) {
      var x0 = x(f.start), x1 = Math.max(x(f.end), x0 + 3);
      var bar = el("rect", {
        "class": "fault fault-" + f.fault, x: x0, y: y + 4, width: x1 - x0, height: LANE - 8, rx: 3,
        fill: f.colour, "fill-opacity": f.open ? 0.55 : 0.9,
        stroke: f.open ? "#000" : "none", "stroke-dasharray": f.open ? "4 3" : "none",
        "data-fault-id": f.id, "data-fault": f.fault, "data-start": f.start, "data-end": f.end,
        "data-open": f.open, "data-verdict": f.verdict
      }, g);
      tip(bar, f.tip);
      if (f.open) { text(g, Math.min(x1 + 3, W - RIGHT - 30), y + LANE / 2 + 4, "open", {"font-size": 10, fill: "#000"}); }
      if (x1 - x0 > 40) {
        var caption = text(g, x0 + 4, y + LANE / 2 + 4, f.fault, {"font-size": 10, fill: "#fff", "pointer-events": "none"});
        caption.setAttribute("class", "caption");
      }
      bandsToDraw.push([x0, x1, f.colour]);
    });
  });
  // probe strips
  var probes = el("g", {"class": "probes"}, svg);
  if (strips && rows) { el("line", {x1: 8, x2: W - RIGHT, y1: probesTop - 10, y2: probesTop - 10, stroke: "#bbb"}, probes); }
  data.probes.forEach(function (p, i) {
    var y = probesTop + i * (STRIP + 6);
    var g = el("g", {"class": "strip", "data-strip": p.name}, probes);
    el("rect", {x: LABEL, y: y, width: W - LABEL - RIGHT, height: STRIP, fill: "#ddd"}, g);
    var label = text(g, 8, y + STRIP / 2 + 4, "probe " + short(p.name, 14), {"font-size": 12, "font-weight": 600});
    tip(label, p.name + ": " + p.summary);
    text(g, LABEL - 8, y + STRIP / 2 + 4, p.summary, {"font-size": 10, fill: "#666", "text-anchor": "end"});
    p.segments.forEach(function (seg) {
      var x0 = x(seg[0]), x1 = Math.max(x(seg[1]), x0 + (seg[2] ? 1 : 2));
      var r = el("rect", {
        "class": "probe-seg " + (seg[2] ? "ok" : "fail"), x: x0, y: y, width: x1 - x0, height: STRIP,
        fill: seg[2] ? "#43a047" : "#e53935", "data-probe": p.name, "data-ok": seg[2],
        "data-count": seg[3], "data-from": seg[0], "data-to": seg[1]
      }, g);
      tip(r, p.name + ": " + (seg[2] ? "ok" : "FAILING") + " " + hms(seg[0]) + " to " + hms(seg[1]) + " (" + seg[3] + " sample" + (seg[3] === 1 ? "" : "s") + ")");
    });
  });
  // each fault's span over the probe strips, so cause and effect line up
  var bands = el("g", {"class": "bands", "pointer-events": "none"}, svg);
  if (strips) {
    bandsToDraw.forEach(function (b) {
      el("rect", {x: b[0], y: probesTop - 3, width: b[1] - b[0], height: strips * (STRIP + 6),
        fill: b[2], "fill-opacity": 0.07, stroke: b[2], "stroke-opacity": 0.8, "stroke-dasharray": "3 2"}, bands);
    });
  }
  // halts
  data.halts.forEach(function (h) {
    var line = el("line", {"class": "halt-line", x1: x(h.t), x2: x(h.t), y1: TOP - 4, y2: H - 8, stroke: "#6a1b9a", "stroke-width": 2}, svg);
    tip(line, "halted: " + h.reason);
    text(svg, x(h.t) + 3, H - 2, "halt", {"font-size": 10, fill: "#6a1b9a"});
  });
  host.appendChild(svg);
  // legend: the fault types that appear
  var seen = {}, legend = document.getElementById("legend");
  data.lanes.forEach(function (lane) { lane.faults.forEach(function (f) { seen[f.fault] = f.colour; }); });
  Object.keys(seen).sort().forEach(function (name) {
    var item = document.createElement("span");
    var swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = seen[name];
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(name));
    legend.appendChild(item);
  });
  host.setAttribute("data-drawn", "true");
})();
"""

_OVERALL_COLOURS = {
    "survived": "#2e7d32",
    "degraded": "#ef8f00",
    "outage": "#c62828",
}


def render_html(report: Report, events: Iterable[object] = ()) -> str:
    """One HTML page, no external resources. `events` is accepted for callers that
    have the raw journal; everything drawn comes from `report` (which keeps the samples).
    """
    del events  # the report already holds the probe samples and the fault intervals
    overall = report.verdict
    head = [
        "<h1>chaos-agent report</h1>",
        f"<p class='span'>{_e(summary_line(report), 600)}</p>",
        f"<div class='overall' style='background:{_OVERALL_COLOURS.get(overall, '#888')}'"
        f" id='overall' data-verdict='{_e(overall)}'>{_e(overall.upper())}</div>",
    ]
    if report.dry_run:
        head.append("<div class='dry'>Dry run: nothing was injected.</div>")
    for sentence in report.single_points_of_failure:
        head.append(f"<div class='spof'>{_e(sentence, 600)}</div>")
    for halt in report.halts:
        head.append(f"<div class='halt'>Halted at {clock(halt.t)}: {_e(halt.reason, 400)}</div>")
    for sentence in report.targets[:3]:
        head.append(f"<p class='span'>Targets: {_e(sentence, 400)}</p>")
    timeline = (
        "<h2>Timeline</h2><div class='legend' id='legend'></div><div id='timeline'></div>"
        "<noscript><p>The timeline is drawn by an inline script; the tables hold every "
        "figure.</p></noscript>"
    )
    thresholds = (
        f"<p class='thresholds'>Verdicts: <strong>outage</strong> when a probe never recovered, fell "
        f"below {DEGRADED_FLOOR:.0%} from the fault's start until recovery, or failed "
        f"{format_duration(OUTAGE_STREAK_S)} in a row; <strong>degraded</strong> when it dipped and "
        f"recovered; <strong>survived</strong> when no probe failed. Failures up to "
        f"{format_duration(SETTLE_S)} after a heal count against the fault.</p>"
    )
    if report.span_start is None:
        body = "\n".join(head) + "<p>The journal holds no events.</p>"
        script = ""
    else:
        body = "\n".join([*head, timeline, _tables(report), thresholds])
        script = (
            f"<script type='application/json' id='report-data'>{_script_json(_data(report))}"
            f"</script>\n<script>{_JS}</script>"
        )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>\n"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>chaos-agent report</title><style>{_CSS}</style></head>\n<body>\n"
        f"{body}\n{script}\n</body></html>\n"
    )
