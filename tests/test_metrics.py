"""Prometheus metrics: the journal observer's arithmetic (pure), the textfile mode, and a
real Prometheus server scraping a running agent that faults real containers: PromQL agrees
with the journal, and every query of the shipped Grafana dashboard returns data."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.metrics import Metrics, MetricsExporter, skip_code
from agent.ops_config import MetricsSection
from tests.conftest import (
    REPO,
    need,
    pause_run_config,
    replica_probes,
    run_cli,
    start_agent,
    wait_for,
)

DASHBOARD = REPO / "packaging" / "grafana" / "chaos-agent.json"


def fault(event: str, fid: str, t: float, **kw: Any) -> dict[str, Any]:
    base = {"event": event, "t": t, "fault_id": fid, "fault": "pause", "group": "web"}
    return {**base, "injected_at": t - 3, "deadline": t - 0.01, **kw}


def test_journal_events_become_bounded_series():
    m = Metrics(host="h", window=10)
    value = m.registry.get_sample_value
    m.observe({"event": "start", "t": 100.0})
    m.observe({**fault("inject", "a", 100), "injected_at": 100, "deadline": 103})
    m.observe({**fault("inject", "b", 100), "group": "db"})
    assert value("chaos_agent_active_faults", {"fault": "pause", "group": "web"}) == 1
    m.observe(fault("heal_failed", "a", 103))
    m.observe(fault("stuck", "a", 104))
    assert value("chaos_agent_stuck_faults") == 1
    m.observe({**fault("heal", "a", 105), "how": "healed"})
    m.observe({**fault("watchdog", "b", 106), "group": "db", "how": "healed"})
    assert value("chaos_agent_active_faults", {"fault": "pause", "group": "web"}) == 0
    assert value("chaos_agent_active_faults", {"fault": "pause", "group": "db"}) == 0
    assert value("chaos_agent_stuck_faults") == 0
    assert value("chaos_agent_heals_total", {"outcome": "healed"}) == 1
    assert value("chaos_agent_heals_total", {"outcome": "watchdog"}) == 1
    assert value("chaos_agent_heals_total", {"outcome": "failed"}) == 1
    assert value("chaos_agent_faults_injected_total", {"fault": "pause", "group": "web"}) == 1
    assert value("chaos_agent_fault_duration_seconds_count", {"fault": "pause"}) == 2
    for i, ok in enumerate([True, False, True, True]):
        m.observe(
            {"event": "probe", "t": 200.0 + i * 4, "probe": "site", "ok": ok, "latency_ms": 20}
        )
    # window 10 s: the sample at t=200 fell out; 2 of the last 3 ok
    assert value("chaos_agent_probe_availability_ratio", {"probe": "site"}) == pytest.approx(2 / 3)
    assert value("chaos_agent_probe_latency_seconds", {"probe": "site"}) == pytest.approx(0.02)
    m.observe({"event": "halt", "reason": "kill switch /x/STOP present: healing all"})
    assert value("chaos_agent_kill_switch_engaged") == 1
    m.observe({"event": "resume", "reason": "kill switch removed"})
    assert value("chaos_agent_kill_switch_engaged") == 0
    m.observe({"event": "skip", "reason": "web-1 <script>: 99 unique words"})
    m.update_from_snapshot(
        {
            "groups": [{"name": "web", "members": [{"state": "running", "eligible": True}] * 3}],
            "next_fault_at": 300.0,
        }
    )
    assert value("chaos_agent_group_members", {"group": "web", "state": "running"}) == 3
    assert value("chaos_agent_group_eligible_members", {"group": "web"}) == 3
    text = m.render().decode()
    assert "<script>" not in text and "container_id" not in text
    assert 'chaos_agent_build_info{host="h"' in text


def test_skip_reasons_map_to_a_fixed_set():
    codes = {skip_code(r) for r in ("outside the schedule window", "coordinator unreachable: x", "a" * 500, "\x1b[31m")}  # fmt: skip
    assert codes == {"window", "coordinator", "other"}


def test_textfile_is_written_for_node_exporter(tmp_path):
    path = tmp_path / "chaos.prom"
    m = Metrics(host="h")
    m.observe({**fault("inject", "a", 1.0), "injected_at": 1.0, "deadline": 2.0})
    exporter = MetricsExporter(MetricsSection(textfile=str(path), textfile_interval=1.0), m)
    exporter.start()
    try:
        wait_for(lambda: path.exists() and "chaos_agent_faults_injected_total" in path.read_text())
    finally:
        exporter.stop()
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left behind


# --- a real Prometheus server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: Any) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def instant(self, query: str, at: float | None = None) -> list[dict]:
        params: dict[str, Any] = {"query": query}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.get("/api/v1/query", **params)["result"]

    def scalar(self, query: str, at: float | None = None) -> float | None:
        result = self.instant(query, at)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(tmp_path) -> Iterator[tuple[Prometheus, int]]:
    binary = shutil.which("prometheus")
    need(binary is not None, "Prometheus (apt-get install --no-install-recommends prometheus)")
    agent_port, web_port = free_port(), free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: chaos-agent\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{agent_port}']\n"
    )
    proc = subprocess.Popen(
        [
            str(binary), f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        prom = Prometheus(f"http://127.0.0.1:{web_port}")

        def ready() -> bool:
            try:
                prom.get("/api/v1/status/buildinfo")
                return True
            except OSError:
                return False

        wait_for(ready, 60, 0.2)
        yield prom, agent_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def journal(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if a.get("expr")]
    return exprs


@pytest.mark.docker
def test_prometheus_scrapes_a_running_agent_and_agrees_with_the_journal(
    containers, prometheus, tmp_path
):
    prom, port = prometheus
    value = f"m-{uuid.uuid4().hex[:8]}"
    web = [containers(f"ops-m-{i}", {"chaos.enable": value, "chaos.group": "mweb"}) for i in (1, 2, 3)]  # fmt: skip
    cfg, state = pause_run_config(
        tmp_path, value, min_gap="5s", first_after="1s", duration="2s",
        extra=[
            "[metrics]", "enabled = true", f"port = {port}",
            "[[notify.targets]]", 'kind = "json"', 'url = "http://127.0.0.1:1/refused"',
            *replica_probes(web, "web", "500ms", "400ms"),
        ],
    )  # fmt: skip
    wait_for(lambda: prom.instant('up{job="chaos-agent"}'), 30, 0.3)  # scraping (target down yet)
    proc = start_agent("run", "--config", str(cfg), "--for", "150s")
    try:
        # one fault done and healed, the next one started (min_gap 5 s > duration 2 s)
        wait_for(lambda: len([e for e in journal(state / "journal.jsonl") if e["event"] == "inject"]) >= 2, 60, 0.2)  # fmt: skip

        def agree() -> bool:
            injected = len([e for e in journal(state / "journal.jsonl") if e["event"] == "inject"])
            return prom.scalar("sum(chaos_agent_faults_injected_total)") == injected

        wait_for(agree, 30, 0.3)
        events = journal(state / "journal.jsonl")
        injects = [e for e in events if e["event"] == "inject"]
        heals = {e["fault_id"]: e for e in events if e["event"] == "heal"}
        first = injects[0]
        heal = heals[first["fault_id"]]
        middle = (first["t"] + heal["t"]) / 2
        assert prom.scalar("sum(chaos_agent_active_faults)", middle) == 1
        assert prom.scalar('chaos_agent_active_faults{group="mweb"}', middle) == 1
        after = injects[1]["t"]  # about 3 s later: scraped a few times in between
        between = prom.get("/api/v1/query_range", query="sum(chaos_agent_active_faults)", start=f"{heal['t']:.3f}", end=f"{after:.3f}", step="0.2")["result"]  # fmt: skip
        assert "0" in {v for _, v in between[0]["values"]}, between
        # availability: Prometheus' last scraped value matches the journal's probes up to it
        wait_for(
            lambda: prom.instant('chaos_agent_probe_availability_ratio{probe="web-1"}'), 20, 0.3
        )
        for i in (1, 2, 3):
            series = prom.instant(f'chaos_agent_probe_availability_ratio{{probe="web-{i}"}}')
            at, scraped = float(series[0]["value"][0]), float(series[0]["value"][1])
            samples = [e["ok"] for e in journal(state / "journal.jsonl") if e["event"] == "probe" and e["probe"] == f"web-{i}" and e["t"] <= at]  # fmt: skip
            assert scraped == pytest.approx(sum(samples) / len(samples), abs=0.1)
        # every container has a probe: the paused one's availability dipped
        assert prom.scalar("min(min_over_time(chaos_agent_probe_availability_ratio[5m]))") < 1
        # faults judged while running agree with `report` on the same journal: the first n
        # faults (judged in order here, they do not overlap), verdicts and time to recover
        wait_for(lambda: prom.scalar("sum(chaos_agent_fault_verdicts_total)"), 80, 0.3)
        scraped_at = time.time()  # one instant for every query below
        got = {r["metric"]["verdict"]: int(float(r["value"][1])) for r in prom.instant("chaos_agent_fault_verdicts_total", scraped_at)}  # fmt: skip
        ttr_sum = prom.scalar("sum(chaos_agent_time_to_recover_seconds_sum)", scraped_at)
        n = sum(got.values())
        rep = json.loads(run_cli("report", "--journal", str(state / "journal.jsonl"), "--json").stdout)  # fmt: skip
        first = sorted(rep["faults"], key=lambda f: f["start"])[:n]
        want: dict[str, int] = {}
        for f in first:
            want[f["verdict"]] = want.get(f["verdict"], 0) + 1
        assert {k: v for k, v in got.items() if v} == want, (got, first)
        recovered = [f["time_to_recover"] for f in first if f["time_to_recover"] is not None]
        assert recovered, "a paused container's own probe failed, then recovered"
        assert ttr_sum == pytest.approx(sum(recovered), abs=0.01)
        # the kill switch, engaged and released, is seen by Prometheus (and the halts annotation)
        (state / "STOP").touch()
        wait_for(lambda: prom.scalar("chaos_agent_kill_switch_engaged") == 1, 30, 0.3)
        (state / "STOP").unlink()
        wait_for(lambda: prom.scalar("chaos_agent_kill_switch_engaged") == 0, 30, 0.3)
        now = time.time()
        start = min(e["t"] for e in events) - 5
        for expr in dashboard_queries():
            data = prom.get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{now:.3f}", step="1")  # fmt: skip
            assert data["result"], f"dashboard query returned no data: {expr}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "agent.toml"
        cfg.write_text(
            f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[targets]\nvalue = "none-{uuid.uuid4().hex[:6]}"\n'
            f"[metrics]\nenabled = true\nport = {port}\n"
        )
        result = run_cli("run", "--dry-run", "--for", "1s", "--config", str(cfg))
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line.lower()]) == 1
