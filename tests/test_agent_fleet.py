"""The agent with a real coordinator behind a real sshd, faulting real containers:
leases gate every fault, a fleet halt heals at the next renew, and a coordinator
that goes away means no new faults while active ones still heal on time."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.conftest import need, run_cli
from tests.coordinator_sshd import SshdServer, sshd_available
from tests.test_agent_docker import (
    group_of_three,
    journal,
    ledger,
    start_agent,
    state,
    wait_event,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.sshd]

POLICY = '[fleet]\nmax_concurrent = 1\nmax_per_group = 1\nmin_healthy = 1\nmin_gap = "0s"\nlease_ttl = "6s"\n'


@pytest.fixture
def coordinator():
    reason = sshd_available()
    need(not reason, reason)
    srv = SshdServer(["agent-a"], POLICY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def fleet_config(tmp_path, srv: SshdServer, value: str, duration: str) -> str:
    coordinator = srv.toml_section("agent-a")
    text = f"""
[agent]
state_dir = "{tmp_path / "state"}"
host = "agent-a"
[targets]
value = "{value}"
[schedule]
mean_interval = "1s"
min_gap = "0.5s"
first_after = "0s"
duration = "{duration}"
[faults]
enabled = ["pause"]
{coordinator}"""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def test_fleet_halt_heals_at_next_renew_and_blocks_new_faults(
    coordinator, containers, docker_api, tmp_path, procs
):
    value = f"fleet-{time.time_ns()}"
    group_of_three(containers, value, "fh")
    cfg = fleet_config(tmp_path, coordinator, value, "120s")
    proc = start_agent("run", "--config", cfg)
    procs.append(proc)
    inject = wait_event(tmp_path, "inject", timeout=30)
    assert inject["group"] == "fh"
    assert state(docker_api, inject["container_id"])["Paused"]
    lease = ledger(tmp_path)[0]["lease"]
    assert lease["token"] >= 1
    status = coordinator.cli("status", "--json")
    assert "agent-a" in status.stdout, status.stderr
    halted = coordinator.cli("halt", "--reason", "test")
    assert halted.returncode == 0, halted.stderr
    t0 = time.monotonic()
    wait_for(lambda: not state(docker_api, inject["container_id"])["Paused"], 10)
    # renews run every min(2 s, ttl/3): a halt heals within the documented 5 s
    assert time.monotonic() - t0 < 5.0
    heal = wait_event(tmp_path, "heal", timeout=5)  # journaled right after the effect
    assert "lease refused" in heal["reason"]
    # the next attempts are refused by the coordinator, and say why
    wait_for(
        lambda: any(
            "halt" in (e.get("reason") or "")
            for e in journal(tmp_path)
            if e["event"] == "skip" and e["t"] > heal["t"]
        ),
        15,
    )
    assert len([e for e in journal(tmp_path) if e["event"] == "inject"]) == 1
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode == 0


def test_coordinator_gone_means_no_new_faults_but_active_ones_heal_on_time(
    coordinator, containers, docker_api, tmp_path, procs
):
    value = f"fleet-{time.time_ns()}"
    group_of_three(containers, value, "fg")
    cfg = fleet_config(tmp_path, coordinator, value, "4s")
    proc = start_agent("run", "--config", cfg)
    procs.append(proc)
    inject = wait_event(tmp_path, "inject", timeout=30)
    coordinator.kill()  # listener and every session: the agent's channel breaks
    wait_for(lambda: not state(docker_api, inject["container_id"])["Paused"], 12)
    healed_at = time.time()
    assert healed_at - inject["deadline"] < 4.0, "the fault outlived its deadline"
    time.sleep(4)
    events = journal(tmp_path)
    assert len([e for e in events if e["event"] == "inject"]) == 1
    skips = [e["reason"] for e in events if e["event"] == "skip" and e["t"] > inject["t"]]
    assert any("coordinator" in r for r in skips), skips
    assert any(e["event"] == "error" and "coordinator" in e["message"] for e in events)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode == 0
    assert ledger(tmp_path) == []


def test_unknown_host_key_is_one_error_line(coordinator, containers, docker_api, tmp_path):
    """Issue 10, item 11: the refusal was printed twice (engine log + command error)."""
    value = f"fleet-{time.time_ns()}"
    web = group_of_three(containers, value, "fk")
    cfg = fleet_config(tmp_path, coordinator, value, "5s")
    coordinator.known_hosts.write_text("# nothing known\n")
    name = web[0]["Name"].lstrip("/")
    result = run_cli("inject", "pause", name, "--config", cfg, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "host key" in lines[0] and "not in" in lines[0]
    assert not state(docker_api, web[0]["Id"])["Paused"]
    assert any(e["event"] == "error" and "host key" in e["message"] for e in journal(tmp_path))
