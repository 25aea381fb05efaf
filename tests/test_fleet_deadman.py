"""The fleet limit holds when an agent dies mid-fault.

Three agents on one engine (own state dirs, host names and opt-in labels), one
coordinator behind a real sshd with max_concurrent = 1. Agents B and C run and
keep asking for faults; agent A injects a pause and then dies: SIGKILL, SIGSTOP
(resumed later), or `inject --detach` (gone by design). Its lease is no longer
renewed, but the coordinator keeps the slot until A's fault's deadline +
heal_grace, and A's dead-man heals inside that. Judged from the engine's own
event stream: the pause intervals of all three agents never overlap, and the
slot is used again after A's fault heals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import journal_events, need, start_agent, wait_for
from tests.coordinator_sshd import SshdServer, sshd_available

pytestmark = [pytest.mark.docker, pytest.mark.sshd]

HOSTS = ["fleet-a", "fleet-b", "fleet-c"]
POLICY = (
    "[fleet]\nmax_concurrent = 1\nmax_per_group = 1\nmin_healthy = 1\n"
    'min_gap = "0s"\nlease_ttl = "3s"\nheal_grace = "5s"\n'
)
A_DURATION = 5.0


@pytest.fixture
def coordinator():
    reason = sshd_available()
    need(not reason, reason)
    srv = SshdServer(HOSTS, POLICY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass


def agent_config(base: Path, srv: SshdServer, host: str, value: str) -> Path:
    coordinator = srv.toml_section(host)
    base.mkdir(parents=True, exist_ok=True)
    text = f"""
[agent]
state_dir = "{base / "state"}"
host = "{host}"
[targets]
value = "{value}"
[schedule]
mean_interval = "2s"
min_gap = "1s"
first_after = "0s"
duration = "1.5s"
[faults]
enabled = ["pause"]
{coordinator}"""
    path = base / "agent.toml"
    path.write_text(text)
    return path


def journal(base: Path) -> list[dict[str, Any]]:
    return journal_events(base / "state")


class PauseEvents:
    """`docker events` streamed from the start (the daemon keeps only its last 256
    events for a later `--since` query, too few on a busy engine)."""

    def __init__(self, values: list[str], where: Path) -> None:
        self.files = {v: where / f"events-{v}.jsonl" for v in values}
        self.procs = []
        for value, path in self.files.items():
            with path.open("w") as out:
                self.procs.append(
                    subprocess.Popen(
                        [
                            "docker",
                            "events",
                            "--filter",
                            f"label=chaos.enable={value}",
                            "--filter",
                            "event=pause",
                            "--filter",
                            "event=unpause",
                            "--format",
                            "{{json .}}",
                        ],
                        stdout=out,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                )
        time.sleep(0.5)  # subscribed before anything happens

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)

    def intervals(self) -> list[tuple[float, float, str]]:
        """[pause, unpause) per container, from the engine's own event stream."""
        time.sleep(1.0)  # the last events reach the stream
        self.close()
        spans: list[tuple[float, float, str]] = []
        for value, path in self.files.items():
            opened: dict[str, float] = {}
            for line in path.read_text().splitlines():
                ev = json.loads(line)
                at = ev["timeNano"] / 1e9
                if ev["Action"] == "pause":
                    opened[ev["id"]] = at
                elif ev["id"] in opened:
                    spans.append((opened.pop(ev["id"]), at, value))
            spans += [(start, float("inf"), value) for start in opened.values()]
        return sorted(spans)


def overlaps(spans: list[tuple[float, float, str]]) -> list[tuple[Any, Any]]:
    return [(a, b) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]


def run_trials(coordinator, containers, docker_api, tmp_path, procs, modes: list[str]) -> None:
    values = {h: f"fd-{h[-1]}-{uuid.uuid4().hex[:6]}" for h in HOSTS}
    made = {
        h: [containers(f"{h}-{i}", {"chaos.enable": v, "chaos.group": h}) for i in (1, 2, 3)]
        for h, v in values.items()
    }
    cfg = {h: agent_config(tmp_path / h, coordinator, h, values[h]) for h in HOSTS}
    recorder = PauseEvents(list(values.values()), tmp_path)
    try:
        _trials(coordinator, docker_api, tmp_path, procs, modes, values, made, cfg, recorder)
    finally:
        recorder.close()


def _trials(coordinator, docker_api, tmp_path, procs, modes, values, made, cfg, recorder) -> None:
    for h in HOSTS[1:]:
        procs.append(start_agent("run", "--no-live", "--config", str(cfg[h])))
    a_base = tmp_path / "fleet-a"
    reused = 0
    for trial, mode in enumerate(modes):
        target = made["fleet-a"][trial % 3]["Name"].lstrip("/")
        args = ["inject", "pause", target, "--duration", f"{A_DURATION}s", "--config"]
        args.append(str(cfg["fleet-a"]))
        if mode == "detach":
            args.append("--detach")
        injected_before = len([e for e in journal(a_base) if e["event"] == "inject"])
        deadline = time.monotonic() + 180
        agent = None
        while time.monotonic() < deadline:  # B and C hold the slot now and then
            agent = start_agent(*args)
            procs.append(agent)
            got = wait_for(
                lambda agent=agent, n=injected_before: (
                    agent.poll() is not None
                    or len([e for e in journal(a_base) if e["event"] == "inject"]) > n
                ),
                30,
                interval=0.05,
            )
            assert got
            if len([e for e in journal(a_base) if e["event"] == "inject"]) > injected_before:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("agent A never got the slot")
        assert agent is not None
        inject = [e for e in journal(a_base) if e["event"] == "inject"][-1]
        if mode == "sigkill":
            agent.send_signal(signal.SIGKILL)
        elif mode == "sigstop":
            agent.send_signal(signal.SIGSTOP)
        else:
            assert agent.wait(timeout=30) == 0
        cid = inject["container_id"]
        healed_at = wait_for(
            lambda cid=cid: (
                not docker_api.inspect_container(cid)["State"]["Paused"] and time.time()
            ),
            A_DURATION + 20,
            interval=0.1,
        )
        assert healed_at - inject["deadline"] < 5.0, f"{mode}: healed late"
        if mode == "sigstop":
            time.sleep(1.0)
            agent.send_signal(signal.SIGCONT)  # wakes to a healed fault and an ended lease
        agent.wait(timeout=30)
        # the slot is used again once A's fault is healed (B or C injects after it)
        before = sum(
            1 for h in HOSTS[1:] for e in journal(tmp_path / h)
            if e["event"] == "inject" and e["t"] > healed_at
        )  # fmt: skip
        reused += before > 0 or bool(
            wait_for(
                lambda healed_at=healed_at: any(
                    e["event"] == "inject" and e["t"] > healed_at
                    for h in HOSTS[1:]
                    for e in journal(tmp_path / h)
                ),
                30,
                interval=0.2,
            )
        )
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)
    spans = recorder.intervals()
    a_spans = [s for s in spans if s[2] == values["fleet-a"]]
    others = [s for s in spans if s[2] != values["fleet-a"]]
    print(f"\nfleet: {len(modes)} A deaths, {len(a_spans)} A faults, {len(others)} B/C faults")
    a_events = [
        (e["event"], round(e["t"], 2), e.get("how") or e.get("reason"))
        for e in journal(a_base)
        if e["event"] in ("inject", "heal", "watchdog", "intent")
    ]
    assert len(a_spans) == len(modes), (a_spans, a_events)
    assert others, "B and C never faulted: nothing was tested"
    assert not overlaps(spans), overlaps(spans)
    assert reused == len(modes)
    assert all(s[1] != float("inf") for s in spans), "a pause was never healed"


def test_dead_agent_keeps_its_slot_until_its_deadman_healed(
    coordinator, containers, docker_api, tmp_path, procs
):
    run_trials(
        coordinator, containers, docker_api, tmp_path, procs, ["sigkill", "sigstop", "detach"]
    )


@pytest.mark.slow
def test_dead_agent_fleet_trials_many(coordinator, containers, docker_api, tmp_path, procs):
    trials = int(os.environ.get("CHAOS_FLEET_TRIALS", "51"))
    modes = [("sigkill", "sigstop", "detach")[i % 3] for i in range(trials)]
    run_trials(coordinator, containers, docker_api, tmp_path, procs, modes)
