"""The HTML report rendered by a real headless Chromium: what it drew must match the journal."""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import need
from test_report import T0, ev, fault, probes, scenario

from agent.report import build_report
from agent.report_html import probe_segments, render_html
from agent.textsafe import printable

pytestmark = pytest.mark.browser

EVIL = "web-9</script><script>document.title='pwned'</script>\"'&<b>\n\x1b[31mred"


class Dom(html.parser.HTMLParser):
    """Every element with its attributes, and the text of <title> elements inside the SVG."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[tuple[str, str]] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self._stack and self._stack.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._stack:
            self.texts.append((self._stack[-1], data))

    def having(self, attr: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if attr in a]


def chromium(tmp_path: Path, page: Path, *extra: str) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    need(exe is not None, "headless Chromium (apt-get install -y chromium)")
    profile = tmp_path / "profile"
    result = subprocess.run(
        [
            str(exe),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def hostile_journal() -> list[dict[str, Any]]:
    events = scenario()
    events += [
        fault("inject", 170, "f5", "partition", EVIL, 'g<i>"x'),
        fault("heal", 180, "f5", "partition", EVIL, 'g<i>"x', how="gone"),
        ev("halt", 190, reason="probe 'site' <b>too low</b>\x1b[0m"),
    ]
    return events


def test_timeline_in_a_real_browser_matches_the_journal(tmp_path: Path) -> None:
    events = hostile_journal()
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(events), events), encoding="utf-8")
    dom = Dom()
    dom.feed(chromium(tmp_path, page, "--dump-dom"))

    # the page's own script ran to the end
    assert any(a.get("id") == "timeline" and a.get("data-drawn") == "true" for _, a in dom.elements)
    # nothing from the journal became markup: exactly our two script elements, title untouched
    assert [t for t, _ in dom.elements if t == "script"] == ["script", "script"]
    assert [d for t, d in dom.texts if t == "title"][0] == "chaos-agent report"
    assert not [t for t, _ in dom.elements if t in ("b", "i")]

    # faults drawn = inject/heal pairs in the journal, with their exact times
    injects = {e["fault_id"]: e["t"] for e in events if e["event"] == "inject"}
    heals = {e["fault_id"]: e["t"] for e in events if e["event"] == "heal"}
    span_end = max(e["t"] for e in events)
    drawn = {a["data-fault-id"]: a for a in dom.having("data-fault-id") if "fault" in a["class"]}
    assert set(drawn) == set(injects)
    for fid, attrs in drawn.items():
        assert float(attrs["data-start"]) == injects[fid]
        assert float(attrs["data-end"]) == heals.get(fid, span_end)
        assert attrs["data-open"] == ("false" if fid in heals else "true")
    assert drawn["f4"]["data-open"] == "true"  # no heal: open-ended, flagged
    assert drawn["f1"]["data-fault"] == "kill" and drawn["f5"]["data-fault"] == "partition"
    assert drawn["f3"]["data-verdict"] == "outage"

    # one lane per container; the hostile name is shown as text, escapes made visible
    lanes = {a["data-lane"] for a in dom.having("data-lane")}
    names = {e["container"] for e in events if e["event"] == "inject"}
    assert lanes == {printable(n, 60) for n in names}
    assert printable(EVIL, 60) in lanes and "\x1b" not in "".join(lanes)

    # probe strips: failing samples drawn = failing probe events in the journal
    for name in ("site", "db-port"):
        results = [e["ok"] for e in events if e["event"] == "probe" and e["probe"] == name]
        segs = [a for a in dom.having("data-probe") if a["data-probe"] == name]
        fails = sum(int(a["data-count"]) for a in segs if a["data-ok"] == "false")
        oks = sum(int(a["data-count"]) for a in segs if a["data-ok"] == "true")
        assert (fails, oks) == (results.count(False), results.count(True))
    site_fail = [
        a for a in dom.having("data-probe") if a["data-probe"] == "site" and a["data-ok"] == "false"
    ]
    assert [(float(a["data-from"]) - T0, float(a["data-to"]) - T0) for a in site_fail] == [
        (11.0, 13.0),
        (101.0, 136.0),
    ]
    # the halt is drawn, the summary and verdicts are on top
    assert len([a for a in dom.having("class") if a["class"] == "halt-line"]) == 1
    overall = next(a for a in dom.having("data-verdict") if a.get("id") == "overall")
    assert overall["data-verdict"] == "outage"
    assert {a["data-group"] for _, a in dom.elements if "data-group" in a and _ == "tr"} >= {
        "web",
        "db",
        "cache",
    }


def test_page_is_self_contained_and_escaped() -> None:
    events = hostile_journal()
    text = render_html(build_report(events), events)
    assert not re.search(r"""(?:src|href)\s*=|@import|url\(|<link|<iframe""", text, re.I)
    assert "default-src 'none'" in text
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert "\x1b" not in text
    assert "&lt;b&gt;too low&lt;/b&gt;" in text  # halt reason escaped in the summary


def test_probe_segments_merge_runs_and_show_gaps() -> None:
    samples = [(0.0, True), (1.0, True), (2.0, False), (3.0, True), (100.0, True)]
    assert probe_segments(samples, span_end=101.0) == [
        [0.0, 2.0, True, 2],
        [2.0, 3.0, False, 1],
        [3.0, 6.0, True, 1],  # the agent stopped: the gap is not drawn as "ok"
        [100.0, 101.0, True, 1],
    ]
    assert probe_segments([], 5.0) == []


def test_empty_journal_renders() -> None:
    text = render_html(build_report([]), [])
    assert "no events" in text and "<script" not in text


def test_screenshot_renders(tmp_path: Path) -> None:
    events = hostile_journal() + probes(200, set(), name="zz")
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(events), events), encoding="utf-8")
    shot = tmp_path / "shot.png"
    chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1300,1100")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
