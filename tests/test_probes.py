"""Probes against real servers on loopback, and the pure window / stop-condition logic."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import availability
from agent.availability import Ratio, window_counts
from agent.config import Probe, StopSection, parse_toml_text
from agent.journal import Journal, read_journal
from agent.probes import ProbeResult, ProbeRunner, check_http, check_tcp, run_check

pytestmark = pytest.mark.pure

# --- a switchable HTTP server -------------------------------------------------


class Switch:
    def __init__(self) -> None:
        self.mode = "ok"
        self.release = threading.Event()
        self.hits = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    switch: Switch

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        sw = self.server.switch  # type: ignore[attr-defined]
        sw.hits += 1
        mode = sw.mode
        if mode == "hang":
            sw.release.wait(10)
            return
        if mode == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "trickle":
            self.send_response(200)
            self.end_headers()
            for _ in range(40):
                if sw.release.wait(0.1):
                    return
                try:
                    self.wfile.write(b".")
                    self.wfile.flush()
                except OSError:
                    return
            return
        status, body, headers = {
            "ok": (200, b"hello replica-2 OK", {}),
            "error": (500, b"boom", {}),
            "redirect": (302, b"", {"Location": "http://127.0.0.1:1/elsewhere"}),
            "wrongbody": (200, b"maintenance page", {}),
        }[mode]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[str, Switch]]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.block_on_close = False
    srv.switch = Switch()  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    try:
        yield f"http://{host}:{port}", srv.switch  # type: ignore[attr-defined]
    finally:
        srv.switch.release.set()  # type: ignore[attr-defined]
        srv.shutdown()
        srv.server_close()
        thread.join(2)


def http_probe(url: str, **kw: object) -> Probe:
    return Probe(name="site", kind="http", url=url, **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- HTTP ---------------------------------------------------------------------


def test_http_ok_and_body(server: tuple[str, Switch]) -> None:
    url, _ = server
    r = check_http(http_probe(url + "/health?x=1", body_contains="OK"))
    assert r == ProbeResult(True, r.latency_ms, "HTTP 200", 200)
    assert r.latency_ms < 1000


def test_http_wrong_status(server: tuple[str, Switch]) -> None:
    url, sw = server
    sw.mode = "error"
    r = check_http(http_probe(url))
    assert not r.ok and r.status == 500 and r.detail == "HTTP 500, expected 200"
    # and a probe that expects 500 is satisfied by it
    assert check_http(http_probe(url, expect_status=500)).ok


def test_http_body_missing(server: tuple[str, Switch]) -> None:
    url, sw = server
    sw.mode = "wrongbody"
    r = check_http(http_probe(url, body_contains="OK"))
    assert not r.ok and r.status == 200 and "lacks 'OK'" in r.detail


def test_http_does_not_follow_redirects(server: tuple[str, Switch]) -> None:
    url, sw = server
    sw.mode = "redirect"
    r = check_http(http_probe(url))
    assert not r.ok and r.status == 302
    assert sw.hits == 1
    assert check_http(http_probe(url, expect_status=302)).ok


def test_http_hanging_server_times_out(server: tuple[str, Switch]) -> None:
    url, sw = server
    sw.mode = "hang"
    began = time.monotonic()
    r = check_http(http_probe(url, timeout=0.3))
    took = time.monotonic() - began
    assert not r.ok and r.detail == "no answer within 300ms"
    assert 0.25 < took < 1.0


def test_http_trickling_body_is_cut_at_the_deadline(server: tuple[str, Switch]) -> None:
    url, sw = server
    sw.mode = "trickle"  # 200 then one byte every 100 ms for 4 s, never the substring
    began = time.monotonic()
    r = check_http(http_probe(url, timeout=0.5, body_contains="never"))
    took = time.monotonic() - began
    assert not r.ok and "within 500ms" in r.detail
    assert took < 1.2


def test_http_connection_closed(server: tuple[str, Switch]) -> None:
    url, sw = server
    sw.mode = "close"
    r = check_http(http_probe(url))
    assert not r.ok and r.status is None
    assert r.detail in ("connection closed without a response", "connection reset")


def test_http_refused() -> None:
    r = check_http(http_probe(f"http://127.0.0.1:{free_port()}/"))
    assert not r.ok and r.detail == "connection refused"


# --- TCP ----------------------------------------------------------------------


def test_tcp_listening_and_closed_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        ok = check_tcp(Probe(name="db", kind="tcp", address=f"127.0.0.1:{port}"))
        assert ok.ok and ok.detail == "connected"
    closed = check_tcp(Probe(name="db", kind="tcp", address=f"127.0.0.1:{free_port()}"))
    assert not closed.ok and closed.detail == "connection refused"


def test_run_check_never_raises() -> None:
    r = run_check(Probe(name="bad", kind="tcp", address="nonsense"))
    assert not r.ok and r.detail


# --- the runner ---------------------------------------------------------------


def test_runner_journals_results_and_halts(server: tuple[str, Switch], tmp_path: Path) -> None:
    url, sw = server
    journal = Journal(tmp_path / "journal.jsonl", host="h1")
    port = free_port()
    probes = (
        http_probe(url, interval=0.05, timeout=0.3),
        Probe(name="db", kind="tcp", address=f"127.0.0.1:{port}", interval=0.05, timeout=0.3),
    )
    runner = ProbeRunner(probes, journal, window=30)
    stop = StopSection(min_availability=0.8, window=30, min_samples=5)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and runner.snapshot()["site"]["total"] < 6:
            time.sleep(0.05)
        snap = runner.snapshot()
        assert snap["site"]["last_ok"] is True and snap["site"]["availability"] == 1.0
        assert snap["db"]["last_ok"] is False and snap["db"]["last_detail"] == "connection refused"
        assert snap["db"]["failures_in_a_row"] >= 5
        reason = runner.halt_reason(stop)
        assert reason is not None and "'db'" in reason and "0.0%" in reason and "80%" in reason
        assert runner.halt_reason(StopSection(min_availability=0.0)) is None
        sw.mode = "error"
        while time.monotonic() < deadline and runner.snapshot()["site"]["last_ok"]:
            time.sleep(0.05)
        assert runner.snapshot()["site"]["last_detail"] == "HTTP 500, expected 200"
    finally:
        began = time.monotonic()
        runner.stop()
        assert time.monotonic() - began < 1.5
    assert not any(t.name.startswith("probe-") for t in threading.enumerate())
    events = [e for e in read_journal(tmp_path / "journal.jsonl") if e["event"] == "probe"]
    assert {e["probe"] for e in events} == {"site", "db"}
    sample = next(e for e in events if e["probe"] == "db")
    assert sample["ok"] is False and sample["kind"] == "tcp" and sample["host"] == "h1"
    assert set(sample) >= {"t", "ts", "latency_ms", "status", "detail", "endpoint"}
    json.dumps(events)  # plain JSON types only


def test_runner_stop_is_prompt_even_while_a_check_hangs(server: tuple[str, Switch]) -> None:
    url, sw = server
    sw.mode = "hang"
    runner = ProbeRunner((http_probe(url, interval=5, timeout=0.5),), Journal(None, host="h"))
    runner.start()
    time.sleep(0.1)
    began = time.monotonic()
    runner.stop()
    assert time.monotonic() - began < 1.0


# --- pure: window and stop condition -----------------------------------------


def test_window_counts_edges() -> None:
    samples = [(100.0, True), (110.0, False), (120.0, True), (130.0, False), (999.0, False)]
    assert window_counts(samples, now=130, window=20) == Ratio(1, 2)  # 120, 130 only
    assert window_counts(samples, now=130, window=30) == Ratio(1, 3)  # 110 < t <= 130
    assert window_counts(samples, now=130, window=1000) == Ratio(2, 4)  # future sample ignored
    assert window_counts([], now=1, window=1).value is None
    assert Ratio(0, 0).percent() == "n/a" and Ratio(1, 3).percent() == "33.3%"


def test_stop_condition_needs_min_samples_and_a_floor() -> None:
    stop = StopSection(min_availability=0.8, window=10, min_samples=5)
    four_failures = {"site": [(float(t), False) for t in range(4)]}
    assert availability.halt_reason(four_failures, stop, now=5) is None  # too few samples
    five = {"site": [(float(t), t != 0) for t in range(5)]}  # 4/5 = 80 %: not below
    assert availability.halt_reason(five, stop, now=5) is None
    six = {
        "ok": [(float(t), True) for t in range(6)],
        "site": [(float(t), t > 1) for t in range(6)],
    }
    reason = availability.halt_reason(six, stop, now=6)
    assert reason == (
        "probe 'site' succeeded 4 of 6 times (66.7%) over the last 10s, "
        "below the stop condition's 80%"
    )
    # old failures slide out of the window
    assert availability.halt_reason(six, StopSection(0.8, window=3, min_samples=2), now=6) is None
    assert availability.halt_reason(six, StopSection(0.0, 10, 1), now=6) is None


def test_config_keys_reach_the_probe() -> None:
    cfg = parse_toml_text(
        """
[[probes]]
name = "site"
url = "http://127.0.0.1:8080/health"
expect_status = 204
body_contains = "ok"
interval = "500ms"
timeout = "2s"

[[probes]]
name = "db"
address = "127.0.0.1:3306"

[stop]
min_availability = 0.9
window = "30s"
min_samples = 3
""",
        source="t.toml",
    )
    site, db = cfg.probes
    assert (site.kind, site.expect_status, site.interval, site.timeout) == ("http", 204, 0.5, 2.0)
    assert db.kind == "tcp" and db.address == "127.0.0.1:3306"
    assert cfg.stop == StopSection(0.9, 30.0, 3)


def test_journal_from_a_real_runner_feeds_the_report(
    server: tuple[str, Switch], tmp_path: Path
) -> None:
    """Probe events written by the runner and fault events written with fault_fields()
    make a report: the fault during which the server failed is the one blamed."""
    from agent.journal import fault_fields
    from agent.model import ActiveFault
    from agent.report import OUTAGE, SURVIVED, build_report

    url, sw = server
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, host="h1", seed=3)
    runner = ProbeRunner((http_probe(url, interval=0.05, timeout=0.3),), journal)

    def fault_at(fid: str, name: str, group: str) -> ActiveFault:
        now = time.time()
        return ActiveFault(fid, "pause", "container", "id-" + name, name, group, now, now + 0.5)

    runner.start()
    try:
        time.sleep(0.3)
        calm = fault_at("calm", "web-1", "web")
        journal.write("inject", **fault_fields(calm))
        time.sleep(0.5)
        journal.write("heal", how="healed", detail="", **fault_fields(calm))
        time.sleep(0.3)
        bad = fault_at("bad", "db-1", "db")
        journal.write("inject", **fault_fields(bad))
        sw.mode = "error"
        time.sleep(0.5)
        journal.write("heal", how="healed", detail="", **fault_fields(bad))
        time.sleep(0.2)
        sw.mode = "ok"
        time.sleep(0.3)
    finally:
        runner.stop()
    report = build_report(read_journal(path))
    verdicts = {f.fault_id: f.verdict for f in report.faults}
    assert verdicts == {"calm": SURVIVED, "bad": OUTAGE}  # failed 0.5 s of a 0.5 s fault
    bad_fault = next(f for f in report.faults if f.fault_id == "bad")
    assert bad_fault.time_to_recover is not None and 0.5 < bad_fault.time_to_recover < 1.2
    assert report.single_points_of_failure[0].startswith("group 'db' is a single point")
