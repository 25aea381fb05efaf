"""Dense probes against a real loopback server: `samples = N` checks per interval,
started on a fixed schedule whether or not earlier checks answered; `groups` journaled;
samples placed at the check's start."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import Probe, parse_toml_text
from agent.errors import ConfigError
from agent.journal import Journal, read_journal
from agent.probes import ProbeResult, ProbeRunner, run_check
from tests.conftest import wait_for

pytestmark = pytest.mark.pure


class _Slow(http.server.BaseHTTPRequestHandler):
    """Answers after `delay` seconds; counts requests in flight."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        st = self.server.state  # type: ignore[attr-defined]
        with st["lock"]:
            st["inflight"] += 1
            st["max_inflight"] = max(st["max_inflight"], st["inflight"])
        counted = True
        try:
            st["release"].wait(st["delay"])
            # no longer in flight once answered: a sequential probe sends its next check as
            # soon as it reads this answer, maybe before this thread runs again
            with st["lock"]:
                st["inflight"] -= 1
                counted = False
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the probe gave up on this request
        finally:
            if counted:
                with st["lock"]:
                    st["inflight"] -= 1


@pytest.fixture
def slow_server() -> Iterator[tuple[str, dict]]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    srv.daemon_threads = True
    srv.block_on_close = False
    state = {
        "lock": threading.Lock(),
        "inflight": 0,
        "max_inflight": 0,
        "delay": 2.0,
        "release": threading.Event(),
    }
    srv.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    try:
        yield f"http://{host}:{port}/", state
    finally:
        state["release"].set()
        srv.shutdown()
        srv.server_close()
        thread.join(2)


def test_dense_probe_does_not_wait_for_slow_checks(
    slow_server: tuple[str, dict], tmp_path: Path
) -> None:
    """Every check times out (the server answers after 2 s, the timeout is 0.5 s); the
    probe still starts checks every interval/samples, overlapping: a sequential prober
    can never have two requests in flight."""
    url, state = slow_server
    path = tmp_path / "journal.jsonl"
    probe = Probe(
        name="site", kind="http", url=url, interval=0.5, timeout=0.5, samples=5, groups=("shop",)
    )
    lock = threading.Lock()
    flying = {"now": 0, "max": 0}

    def counted(p: Probe) -> ProbeResult:
        with lock:
            flying["now"] += 1
            flying["max"] = max(flying["max"], flying["now"])
        try:
            return run_check(p)
        finally:
            with lock:
                flying["now"] -= 1

    runner = ProbeRunner((probe,), Journal(path, host="h"), check=counted)
    runner.start()
    try:
        wait_for(lambda: runner.snapshot()["site"]["failures_in_a_row"] >= 12, timeout=30)
    finally:
        runner.stop()
    assert not any(t.name.startswith("probe-") for t in threading.enumerate())
    # open loop: several checks in flight at once (the server saw them overlap too),
    # never more than timeout / spacing + 1
    assert 2 <= flying["max"] <= 6 and state["max_inflight"] >= 2, (flying, state)
    events = [e for e in read_journal(path) if e["event"] == "probe"]
    assert len(events) >= 12 and all(e["groups"] == ["shop"] for e in events)
    assert all(not e["ok"] and "no answer within" in e["detail"] for e in events)
    # the in-memory samples (the stop condition's) sit at each check's start
    with runner._lock:
        starts = [t for t, _ in runner._samples["site"]]
    journaled_starts = [e["t"] - e["latency_ms"] / 1000 for e in events]
    assert len(starts) == len(events)
    assert all(any(abs(s - j) < 0.002 for j in journaled_starts) for s in starts)
    assert all(e["latency_ms"] >= 400 for e in events)  # so start and end really differ


def test_single_sample_probe_stays_sequential(slow_server: tuple[str, dict]) -> None:
    url, state = slow_server
    state["delay"] = 0.3
    probe = Probe(name="site", kind="http", url=url, interval=0.05, timeout=1.0)
    # one check at a time: the server never sees two of them at once
    runner = ProbeRunner((probe,), Journal(None, host="h"))
    runner.start()
    try:
        wait_for(lambda: (runner.snapshot()["site"]["total"] or 0) >= 3, timeout=30)
    finally:
        runner.stop()
    assert state["max_inflight"] == 1


def test_samples_and_groups_are_config_keys() -> None:
    config = parse_toml_text(
        '[agent]\nstate_dir = "/tmp/x"\n[[probes]]\nurl = "http://127.0.0.1:1/"\n'
        'samples = 5\ngroups = ["shop", "blog/web"]\n',
        source="t.toml",
    )
    assert config.probes[0].samples == 5 and config.probes[0].groups == ("shop", "blog/web")
    for bad in ("samples = 0", "samples = 21", 'groups = "shop"'):
        with pytest.raises(ConfigError):
            parse_toml_text(
                f'[agent]\nstate_dir = "/tmp/x"\n[[probes]]\nurl = "http://127.0.0.1:1/"\n{bad}\n',
                source="t.toml",
            )
