"""The live view, rendered by rich into a recording console and, if tmux exists, a real terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, need

from agent.live import LiveView, countdown, plain_line, render

NOW = 1_700_000_000.0


def snapshot(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "host": "web-host",
        "dry_run": False,
        "targets_sentence": "2 groups: web (3 replicas), db (2 replicas)",
        "groups": [
            {
                "name": "web",
                "members": [
                    {
                        "name": "web-1",
                        "state": "running",
                        "health": "healthy",
                        "eligible": True,
                        "reason": "",
                    },
                    {
                        "name": "web-2",
                        "state": "paused",
                        "health": "healthy",
                        "eligible": False,
                        "reason": "under a fault",
                    },
                    {
                        "name": "web-3",
                        "state": "running",
                        "health": "none",
                        "eligible": False,
                        "reason": "would leave 1 healthy",
                    },
                ],
            },
            {
                "name": "db",
                "members": [
                    {
                        "name": "db-1",
                        "state": "running",
                        "health": "healthy",
                        "eligible": True,
                        "reason": "",
                    }
                ],
            },
        ],
        "active": [
            {
                "fault_id": "f-1",
                "fault": "pause",
                "target": "web-2",
                "group": "web",
                "deadline": NOW + 12.2,
            }
        ],
        "next_fault_at": NOW + 95,
        "probes": {
            "site": {
                "last_ok": True,
                "last_detail": "HTTP 200",
                "ok": 58,
                "total": 60,
                "latency_ms": 3.4,
                "window": 60.0,
            },
            "db": {
                "last_ok": False,
                "last_detail": "connection refused",
                "ok": 1,
                "total": 4,
                "latency_ms": 0.2,
                "window": 60.0,
            },
        },
        "halted": None,
    }
    base.update(over)
    return base


def shown(snap: dict[str, Any], width: int = 120, now: float = NOW) -> str:
    from rich.console import Console

    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor")
    console.print(render(snap, now))
    return console.export_text(styles=False)


@pytest.mark.pure
def test_render_shows_groups_faults_countdown_and_probes() -> None:
    text = shown(snapshot())
    print(text)
    assert "chaos-agent web-host" in text
    assert "2 groups: web (3 replicas)" in text
    for needle in ("web-1", "web-2", "paused", "no: under a fault", "db-1", "yes"):
        assert needle in text
    fault_line = next(line for line in text.splitlines() if "pause " in line and "web-2" in line)
    assert "13s" in fault_line and "f-1" in fault_line
    assert "Next fault in 1m35s" in text
    site = next(line for line in text.splitlines() if line.strip().startswith("site"))
    assert "ok" in site and "97% (58/60) over 60s" in site and "3.4 ms" in site
    db = next(
        line for line in text.splitlines() if line.strip().startswith("db ") and "FAIL" in line
    )
    assert "connection refused" in db


@pytest.mark.pure
def test_countdown_ticks_between_updates() -> None:
    clock = [NOW]
    view = LiveView(clock=lambda: clock[0])
    view.update(snapshot())
    from rich.console import Console

    def draw() -> str:
        console = Console(record=True, width=120)
        console.print(view)
        return console.export_text()

    assert "13s" in draw()
    clock[0] += 10
    assert "3s" in draw() and "13s" not in draw()
    clock[0] += 10
    assert "due" in draw()


@pytest.mark.pure
def test_halt_dry_run_and_empty_snapshot() -> None:
    text = shown(
        snapshot(halted="probe 'site' at 40%", dry_run=True, active=[], next_fault_at=None)
    )
    assert "HALTED: probe 'site' at 40%" in text and "DRY RUN" in text
    assert "No active fault." in text and "none planned" in text
    bare = shown({})
    assert "chaos-agent ?" in bare and "No probes configured" in bare


@pytest.mark.pure
def test_hostile_names_are_text_not_markup_or_escapes() -> None:
    evil = "[bold red]web[/] \x1b[2J\x1b]0;x\x07\nnext"
    snap = snapshot(
        active=[
            {
                "fault_id": "f",
                "fault": "kill",
                "target": evil,
                "group": "[link=http://x]g",
                "deadline": NOW + 5,
            }
        ],
        host="h\x1b[31m",
    )
    text = shown(snap, width=200)
    assert "[bold red]web[/]" in text and "[link=http://x]g" in text
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2J" in text
    line = plain_line(snap, now=NOW)
    assert "\n" not in line and "\x1b" not in line and "[bold red]web[/]" in line


@pytest.mark.pure
def test_plain_line() -> None:
    line = plain_line(snapshot(), now=NOW)
    assert line == (
        "web-host; 1 active: pause web-2 (web) 13s left; next fault in 1m35s; "
        "probes: site ok 97% (58/60), db FAIL (connection refused) 25% (1/4)"
    )
    assert plain_line({"host": "h", "halted": "stop"}, now=NOW) == (
        "h; no active fault; no fault planned; HALTED: stop"
    )


@pytest.mark.pure
def test_countdown_format() -> None:
    assert [countdown(s) for s in (-1, 0, 0.2, 59, 60, 61, 3599, 3600, 7325)] == [
        "due",
        "due",
        "1s",
        "59s",
        "1m00s",
        "1m01s",
        "59m59s",
        "1h00m",
        "2h02m",
    ]


@pytest.mark.host
def test_live_view_in_a_real_terminal(tmp_path: Path) -> None:
    """tmux gives the view a real TTY; the pane must show the redrawn view, not a scroll of copies."""
    tmux = shutil.which("tmux")
    need(tmux is not None, "tmux (apt-get install -y tmux)")
    script = tmp_path / "view.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests")!r}]
            from test_live import snapshot
            from agent.live import LiveView
            now = time.time()
            with LiveView(refresh_per_second=8) as view:
                for i in range(12):
                    view.update(snapshot(active=[{{"fault_id": "f-1", "fault": "pause",
                        "target": "web-2", "group": "web", "deadline": now + 30}}],
                        next_fault_at=now + 90, host=f"tick-{{i}}"))
                    time.sleep(0.1)
            print("DONE")
            time.sleep(30)
            """
        )
    )
    base = [str(tmux), "-S", str(tmp_path / "tmux.sock")]  # a private server, not the user's
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run(
        [*base, "new-session", "-d", "-x", "130", "-y", "45", f"{sys.executable} {script}"],
        check=True,
        env=env,
        timeout=10,
    )
    try:
        screen = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*base, "capture-pane", "-p"], capture_output=True, text=True, timeout=5
            ).stdout
            if "DONE" in screen:
                break
            time.sleep(0.2)
        assert "DONE" in screen, screen
        assert "chaos-agent tick-11" in screen
        assert screen.count("chaos-agent tick-") == 1  # redrawn in place
        assert "Active faults (1)" in screen and "web-2" in screen and "FAIL" in screen
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=10)
