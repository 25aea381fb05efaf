"""The journal: one emission point with observers, size rotation, crash safety,
and readers (report, recovery) that see the whole rotated set, oldest first."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agent.journal import Journal, journal_files, journal_lines, read_journal, rotate
from tests.conftest import REPO, run_cli, wait_for

pytestmark = pytest.mark.pure


def test_rotates_by_size_keeps_n_and_reads_oldest_first(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, host="h", max_bytes=2000, keep=3)
    for i in range(300):
        journal.write("probe", seq=i)
    files = journal_files(path)
    assert [f.name for f in files] == [
        "journal.jsonl.3",
        "journal.jsonl.2",
        "journal.jsonl.1",
        "journal.jsonl",
    ]
    assert all(f.stat().st_size <= 2000 for f in files)
    seqs = [e["seq"] for e in read_journal(path)]
    assert seqs == list(range(seqs[0], 300))  # contiguous, in order, newest kept
    assert seqs[0] > 0  # the oldest were dropped
    assert len(list(journal_lines(path))) == len(seqs)


def test_no_rotation_when_max_bytes_is_zero(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, host="h", max_bytes=0, keep=3)
    for i in range(200):
        journal.write("probe", seq=i)
    assert journal_files(path) == [path]


def test_a_gap_left_by_a_crash_mid_rotation_keeps_the_order(tmp_path):
    path = tmp_path / "journal.jsonl"
    for n, seqs in ((3, (0, 1)), (1, (4, 5))):  # .2 already moved to .3, .1 -> .2 never ran
        (tmp_path / f"journal.jsonl.{n}").write_text(
            "".join(json.dumps({"event": "x", "seq": s}) + "\n" for s in seqs)
        )
    path.write_text(json.dumps({"event": "x", "seq": 6}) + "\n")
    assert [e["seq"] for e in read_journal(path)] == [0, 1, 4, 5, 6]
    rotate(path, 3)  # the next rotation closes the gap, still in order
    assert [f.name for f in journal_files(path)] == [f"journal.jsonl.{n}" for n in (3, 2, 1)]
    assert [e["seq"] for e in read_journal(path)] == [0, 1, 4, 5, 6]
    rotate(path, 3)  # and only then drops the oldest
    assert [e["seq"] for e in read_journal(path)] == [4, 5, 6]


def test_a_torn_last_line_does_not_swallow_the_next_event(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps({"event": "a"}) + "\n" + '{"event": "tor')
    Journal(path, host="h").write("b")
    assert [e["event"] for e in read_journal(path)] == ["a", "b"]


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agent.journal import Journal
    j = Journal(Path(sys.argv[1]), host="h", max_bytes=600, keep=50)
    seq = int(sys.argv[2])
    print("go", flush=True)
    while True:
        j.write("probe", seq=seq, pad="x" * (seq % 37))
        seq += 1
    """
)


def test_sigkill_mid_rotation_loses_and_reorders_nothing(tmp_path):
    """Kill a writer that rotates every few lines, restart it, many times: the rotated set
    read back is strictly increasing (no duplicate, no reorder), only torn lines missing."""
    path = tmp_path / "journal.jsonl"
    start = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(start)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "go\n"
            wait_for(lambda: len(journal_files(path)) > 3, 30, 0.01)
            time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        seqs = [e["seq"] for e in read_journal(path)]
        assert seqs == sorted(set(seqs)), "duplicate or out-of-order events"
        start = seqs[-1] + 1000  # the next writer's events all come later
    assert len(journal_files(path)) <= 51


def test_observers_see_every_event_even_without_a_file_and_never_break_it(tmp_path):
    seen: list[str] = []

    def broken(_entry: dict) -> None:
        raise RuntimeError("observer bug")

    journal = Journal(None, host="h")
    journal.subscribe(broken)
    journal.subscribe(lambda e: seen.append(e["event"]))
    journal.write("start")
    journal.write("stop")
    assert seen == ["start", "stop"]
    assert journal.observer_errors == 2


def test_report_and_recovery_read_across_the_rotated_set(tmp_path):
    """An inject in a rotated file and nothing after it: `report` counts it, and the
    engine's recovery (read_journal) finds it."""
    state = tmp_path / "state"
    path = state / "journal.jsonl"
    journal = Journal(path, host="h", max_bytes=1500, keep=20)
    journal.write("start", targets="t")
    journal.write(
        "inject", fault_id="f1", fault="pause", target_kind="container", container_id="c" * 64,
        container="web-1", group="web", duration=1.0, injected_at=time.time(),
        deadline=time.time() + 1,
    )  # fmt: skip
    for i in range(40):
        journal.write("probe", probe="p", ok=True, latency_ms=1.0, seq=i)
    assert len(journal_files(path)) > 2
    assert journal_files(path)[0] != path
    assert [e["event"] for e in read_journal(path)][:2] == ["start", "inject"]
    result = run_cli("report", "--journal", str(path), "--json")
    assert result.returncode == 0, result.stderr
    faults = json.loads(result.stdout)["faults"]
    assert [f["target"] for f in faults] == ["web-1"]
