"""The agent's core on a real Docker engine: only eligible containers are touched,
every fault heals (after its duration, on SIGTERM, after a crash), identity is pinned.

Each test uses its own opt-in label value, so the agent under test only ever sees
the containers that this test created.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ledger_faults, run_cli, start_agent, wait_for

pytestmark = pytest.mark.docker


def write_config(tmp_path: Path, value: str, extra: str = "", **schedule: str) -> Path:
    sched = {"mean_interval": "1s", "min_gap": "0.5s", "first_after": "0s", "duration": "2s"}
    sched.update(schedule)
    lines = [
        "[agent]",
        f'state_dir = "{tmp_path / "state"}"',
        "[targets]",
        f'value = "{value}"',
        "[schedule]",
        *[f'{k} = "{v}"' for k, v in sched.items()],
        extra,
    ]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def journal(tmp_path: Path) -> list[dict]:
    path = tmp_path / "state" / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ledger(tmp_path: Path) -> list[dict]:
    return ledger_faults(tmp_path / "state")


def wait_event(tmp_path: Path, event: str, timeout: float = 15.0) -> dict:
    return wait_for(
        lambda: next((e for e in journal(tmp_path) if e["event"] == event), None), timeout
    )


def state(api, cid: str) -> dict:
    return api.inspect_container(cid)["State"]


class EventRecorder:
    """Collects the engine's container events for a set of ids (the ground truth)."""

    def __init__(self, api, ids: set[str]) -> None:
        self.api, self.ids, self.events = api, ids, []
        time.sleep(0.3)  # events of the containers' creation stay out
        self.since = time.time()

    def collect(self) -> list[tuple[str, str]]:
        until = time.time() + 0.5
        time.sleep(0.6)
        stream = self.api.events(
            since=self.since, until=until, decode=True, filters={"type": "container"}
        )
        for ev in stream:
            if ev.get("id") in self.ids or ev.get("Actor", {}).get("ID") in self.ids:
                self.events.append(
                    (ev.get("id") or ev["Actor"]["ID"], ev.get("status") or ev.get("Action"))
                )
        return self.events


@pytest.fixture
def value() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup_procs():
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def group_of_three(containers, value: str, group: str, **kw) -> list[dict]:
    return [
        containers(f"{group}-{i}", {"chaos.enable": value, "chaos.group": group}, **kw)
        for i in (1, 2, 3)
    ]


def test_only_eligible_containers_are_touched(containers, docker_api, tmp_path, value):
    web = group_of_three(containers, value, "web")
    solo = containers("solo", {"chaos.enable": value})
    guard = containers(
        "guard", {"chaos.enable": value, "chaos.group": "web", "chaos.protect": "true"}
    )
    plain = containers("plain", {})
    agent_like = containers(
        "fake-agent", {"chaos.enable": value, "chaos.group": "web", "chaos.agent": "true"}
    )
    cfg = write_config(
        tmp_path,
        value,
        '[faults]\nenabled = ["pause", "stop", "kill", "restart"]',
        duration="1s",
        mean_interval="0.7s",
        min_gap="0.3s",
    )
    recorder = EventRecorder(docker_api, {c["Id"] for c in [*web, solo, guard, plain, agent_like]})

    targets = run_cli("targets", "--config", str(cfg), "--json")
    assert targets.returncode == 0, targets.stderr
    verdicts = {t["name"]: t for t in json.loads(targets.stdout)["targets"]}
    assert verdicts[solo["Name"].lstrip("/")]["reason"].startswith("group")
    assert verdicts[guard["Name"].lstrip("/")]["reason"] == "protected (chaos.protect=true)"
    assert verdicts[agent_like["Name"].lstrip("/")]["reason"] == "is the chaos agent itself"
    assert plain["Name"].lstrip("/") not in verdicts

    result = run_cli("run", "--config", str(cfg), "--for", "9s", "--seed", "3", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Targeting" in result.stderr

    touched = {cid for cid, _ in recorder.collect()}
    injects = [e for e in journal(tmp_path) if e["event"] == "inject"]
    assert len(injects) >= 2, result.stderr
    assert touched, "the engine saw no container event at all"
    assert touched <= {c["Id"] for c in web}
    # never more than one at a time: each inject is healed before the next
    events = [
        e for e in journal(tmp_path) if e["event"] in ("inject", "heal", "healed_by_environment")
    ]
    open_faults = 0
    for e in events:
        open_faults += 1 if e["event"] == "inject" else -1
        assert open_faults <= 1
    for c in [*web, solo, guard, plain]:
        s = state(docker_api, c["Id"])
        assert s["Running"] and not s["Paused"], c["Name"]
    assert ledger(tmp_path) == []


def test_pause_heals_after_its_duration(containers, docker_api, tmp_path, value):
    web = group_of_three(containers, value, "p")
    cfg = write_config(tmp_path, value)
    target = web[0]["Name"].lstrip("/")
    proc = start_agent("inject", "pause", target, "--duration", "2s", "--config", str(cfg))
    try:
        wait_for(lambda: state(docker_api, web[0]["Id"])["Paused"], 10)
        assert ledger(tmp_path)[0]["target_id"] == web[0]["Id"]  # recorded while active
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert not state(docker_api, web[0]["Id"])["Paused"]
    assert elapsed < 4.0
    assert ledger(tmp_path) == []
    heal = [e for e in journal(tmp_path) if e["event"] == "heal"][0]
    assert heal["how"] == "healed" and heal["container_id"] == web[0]["Id"]


def test_sigkill_during_pause_then_restart_unpauses_within_5s(
    containers, docker_api, tmp_path, value, cleanup_procs
):
    web = group_of_three(containers, value, "k")
    cfg = write_config(tmp_path, value, duration="60s")
    target = web[1]["Name"].lstrip("/")
    proc = start_agent("inject", "pause", target, "--duration", "60s", "--config", str(cfg))
    cleanup_procs.append(proc)
    wait_for(lambda: state(docker_api, web[1]["Id"])["Paused"], 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=5)
    assert state(docker_api, web[1]["Id"])["Paused"]  # nothing healed it yet
    t0 = time.monotonic()
    again = start_agent("run", "--config", str(cfg), "--for", "4s", "--dry-run")
    cleanup_procs.append(again)
    # a dry run must not heal real faults (it touches nothing): still paused
    again.wait(timeout=20)
    assert state(docker_api, web[1]["Id"])["Paused"]
    t0 = time.monotonic()
    real = start_agent("run", "--config", str(cfg), "--for", "3s")
    cleanup_procs.append(real)
    wait_for(lambda: not state(docker_api, web[1]["Id"])["Paused"], 5)
    recovered_in = time.monotonic() - t0
    real.wait(timeout=20)
    assert real.returncode == 0, real.stderr.read()
    assert recovered_in < 5.0
    assert ledger(tmp_path) == []
    assert any(e["event"] == "recover" for e in journal(tmp_path))


def test_never_unpauses_a_container_it_did_not_pause(containers, docker_api, tmp_path, value):
    web = group_of_three(containers, value, "n")
    cfg = write_config(tmp_path, value)
    docker_api.pause(web[0]["Id"])  # paused by someone else
    # a stop fault recorded by a "previous run", then the container restarted by a person
    result = run_cli(
        "inject",
        "stop",
        web[1]["Name"].lstrip("/"),
        "--duration",
        "60s",
        "--detach",
        "--config",
        str(cfg),
    )
    assert result.returncode == 0, result.stderr
    assert not state(docker_api, web[1]["Id"])["Running"]
    docker_api.start(web[1]["Id"])  # a person brings it back: new StartedAt
    docker_api.stop(web[1]["Id"], timeout=1)  # ... and stops it again on purpose
    healed = run_cli("heal", "--config", str(cfg))
    assert healed.returncode == 0, healed.stderr
    assert "environment" in healed.stdout
    assert state(docker_api, web[0]["Id"])["Paused"]  # not ours: untouched
    assert not state(docker_api, web[1]["Id"])["Running"]  # a new instance: untouched
    assert ledger(tmp_path) == []


def test_dry_run_touches_nothing_and_seed_replays(containers, docker_api, tmp_path, value):
    web = group_of_three(containers, value, "d")
    web += group_of_three(containers, value, "e")
    recorder = EventRecorder(docker_api, {c["Id"] for c in web})
    runs = []
    for i in range(2):
        cfg_dir = tmp_path / f"run{i}"
        cfg_dir.mkdir()
        cfg = write_config(cfg_dir, value, duration="0.3s", mean_interval="0.4s", min_gap="0.4s")
        result = run_cli("run", "--dry-run", "--seed", "11", "--for", "4s", "--config", str(cfg))
        assert result.returncode == 0, result.stderr
        assert "would" in result.stderr
        events = journal(cfg_dir)
        assert all(e["dry_run"] for e in events)
        runs.append([(e["fault"], e["container"]) for e in events if e["event"] == "inject"])
    assert recorder.collect() == []  # no Docker event on any container
    assert len(runs[0]) >= 3
    n = min(len(runs[0]), len(runs[1]))
    assert runs[0][:n] == runs[1][:n]
    other = tmp_path / "other"
    other.mkdir()
    cfg = write_config(other, value, duration="0.3s", mean_interval="0.4s", min_gap="0.4s")
    run_cli("run", "--dry-run", "--seed", "12", "--for", "4s", "--config", str(cfg))
    assert [(e["fault"], e["container"]) for e in journal(other) if e["event"] == "inject"][
        :n
    ] != runs[0][:n]


def test_kill_is_a_crash_that_restart_policies_see(containers, docker_api, tmp_path, value):
    web = group_of_three(containers, value, "r", restart="always")
    target = web[0]
    before = docker_api.inspect_container(target["Id"])
    # Docker applies a restart policy only to a container that ran 10 s or more
    time.sleep(max(0.0, 10.5 - (time.time() - _started(before))))
    cfg = write_config(tmp_path, value)
    result = run_cli(
        "inject", "kill", target["Name"].lstrip("/"), "--duration", "4s", "--config", str(cfg)
    )
    assert result.returncode == 0, result.stderr
    after = docker_api.inspect_container(target["Id"])
    assert after["RestartCount"] >= 1, "the restart policy did not fire"
    assert after["State"]["Running"]
    inject = [e for e in journal(tmp_path) if e["event"] == "inject"][0]
    assert inject["extra"]["via"] == "host-pid"
    heal = [
        e
        for e in journal(tmp_path)
        if e["event"] in ("heal", "healed_by_environment") and e.get("fault_id")
    ][0]
    assert heal["how"] == "environment"


def test_api_kill_is_started_again_after_the_duration(containers, docker_api, tmp_path, value):
    web = group_of_three(containers, value, "a", restart="always")
    cfg = write_config(tmp_path, value, '[faults.kill]\nmode = "api"')
    result = run_cli(
        "inject", "kill", web[2]["Name"].lstrip("/"), "--duration", "2s", "--config", str(cfg)
    )
    assert result.returncode == 0, result.stderr
    s = state(docker_api, web[2]["Id"])
    assert s["Running"]
    heal = [e for e in journal(tmp_path) if e["event"] == "heal"][0]
    assert heal["how"] == "healed"  # the agent started it: the API kill disabled the policy


def _started(info: dict) -> float:
    from agent.faults.container import parse_started_at

    return parse_started_at(info["State"]["StartedAt"])


def test_sigterm_heals_everything_and_exits_0(
    containers, docker_api, tmp_path, value, cleanup_procs
):
    group_of_three(containers, value, "s")
    cfg = write_config(tmp_path, value, '[faults]\nenabled = ["pause", "stop"]', duration="120s")
    proc = start_agent("run", "--config", str(cfg))
    cleanup_procs.append(proc)
    inject = wait_event(tmp_path, "inject")
    cid = inject["container_id"]
    s = state(docker_api, cid)
    assert s["Paused"] or not s["Running"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    assert proc.returncode == 0, proc.stderr.read()
    s = state(docker_api, cid)
    assert s["Running"] and not s["Paused"]
    assert ledger(tmp_path) == []
    assert journal(tmp_path)[-1]["event"] == "stop"


def test_heal_that_fails_exits_nonzero_and_keeps_the_record(
    containers, docker_api, tmp_path, value, cleanup_procs
):
    net = docker_api.create_network(f"chaos-test-{value}", labels={"chaos.test": "x"})
    try:
        web = group_of_three(containers, value, "f", network=net["Id"])
        cfg = write_config(tmp_path, value, '[faults]\nenabled = ["stop"]', duration="120s")
        proc = start_agent("run", "--config", str(cfg))
        cleanup_procs.append(proc)
        inject = wait_event(tmp_path, "inject")
        for c in web:  # take the network away: the stopped one cannot start again
            if c["Id"] != inject["container_id"]:
                docker_api.disconnect_container_from_network(c["Id"], net["Id"], force=True)
        docker_api.remove_network(net["Id"])
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 1
        assert "could not be healed" in proc.stderr.read()
        kept = ledger(tmp_path)
        assert [r["target_id"] for r in kept] == [inject["container_id"]]
        assert kept[0]["heal_attempts"] >= 1
        assert any(e["event"] == "heal_failed" for e in journal(tmp_path))
        status = run_cli("status", "--config", str(cfg))
        assert inject["container"] in status.stdout
    finally:
        try:
            docker_api.remove_network(net["Id"])
        except Exception:  # noqa: BLE001
            pass


def test_second_agent_on_same_state_dir_refuses(containers, tmp_path, value, cleanup_procs):
    group_of_three(containers, value, "l")
    cfg = write_config(tmp_path, value, first_after="60s")
    first = start_agent("run", "--config", str(cfg))
    cleanup_procs.append(first)
    wait_event(tmp_path, "start")
    second = run_cli("run", "--config", str(cfg), "--for", "2s")
    assert second.returncode == 1
    assert f"another chaos-agent (pid {first.pid})" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=15)
    assert first.returncode == 0


def test_runtime_errors_are_one_line_exit_1(tmp_path, value):
    cfg = write_config(tmp_path, value)
    missing = run_cli("inject", "pause", "no-such-container-xyz", "--config", str(cfg))
    assert missing.returncode == 1
    assert "no opted-in target named 'no-such-container-xyz'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    down = run_cli(
        "targets", "--config", str(cfg), env={"DOCKER_HOST": "unix:///tmp/no-docker-here.sock"}
    )
    assert down.returncode == 1
    assert "unix:///tmp/no-docker-here.sock" in down.stderr and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1


def test_corrupt_ledger_recovers_from_journal_and_injects_nothing(
    containers, docker_api, tmp_path, value
):
    web = group_of_three(containers, value, "c")
    cfg = write_config(tmp_path, value)
    result = run_cli(
        "inject",
        "pause",
        web[0]["Name"].lstrip("/"),
        "--duration",
        "600s",
        "--detach",
        "--config",
        str(cfg),
    )
    assert result.returncode == 0, result.stderr
    assert state(docker_api, web[0]["Id"])["Paused"]
    ledger_path = tmp_path / "state" / "ledger.json"
    ledger_path.write_bytes(ledger_path.read_bytes()[:40])  # torn write
    run = run_cli("run", "--config", str(cfg), "--for", "5s", timeout=60)
    assert run.returncode == 1
    assert "corrupt" in run.stderr
    assert not state(docker_api, web[0]["Id"])["Paused"]
    assert not any(
        e["event"] == "inject" and e["t"] > time.time() - 5 for e in journal(tmp_path)[2:]
    )
    assert list((tmp_path / "state").glob("ledger.json.corrupt-*"))
    again = run_cli("run", "--config", str(cfg), "--for", "1s")
    assert again.returncode == 0, again.stderr


def test_unwritable_ledger_means_no_injection(containers, docker_api, tmp_path, value):
    web = group_of_three(containers, value, "u")
    cfg = write_config(tmp_path, value)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "ledger.json").mkdir()  # cannot be replaced by a file
    result = run_cli("inject", "pause", web[0]["Name"].lstrip("/"), "--config", str(cfg))
    assert result.returncode == 1
    assert "ledger" in result.stderr
    assert not state(docker_api, web[0]["Id"])["Paused"]


def test_watchdog_heals_when_the_agent_is_gone_for_good(
    containers, docker_api, tmp_path, value, cleanup_procs
):
    group_of_three(containers, value, "w")
    cfg = write_config(tmp_path, value, '[faults]\nenabled = ["pause"]', duration="3s")
    proc = start_agent("run", "--config", str(cfg))
    cleanup_procs.append(proc)
    inject = wait_event(tmp_path, "inject")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=5)
    cid = inject["container_id"]
    assert state(docker_api, cid)["Paused"]
    late = wait_for(lambda: not state(docker_api, cid)["Paused"] and time.time(), 15)
    assert late - inject["deadline"] < 5.0, "the watchdog healed too late"
    wait_event(tmp_path, "watchdog", timeout=5)  # journaled right after the effect

    # the watchdog leaves once the agent is gone and nothing is pending
    def watchdogs() -> list[str]:
        out = subprocess.run(
            ["pgrep", "-f", f"agent.watchdog --state-dir {tmp_path / 'state'} "],
            capture_output=True,
            text=True,
        )
        return out.stdout.split()

    wait_for(lambda: not watchdogs(), 10)
    # with nobody holding the state lock, the dead-man cleared what it healed
    assert ledger(tmp_path) == []
    again = run_cli("heal", "--config", str(cfg))
    assert again.returncode == 0, again.stderr


def test_hostile_names_are_printed_escaped_and_never_executed(
    containers, docker_api, tmp_path, value
):
    marker = tmp_path / "pwned"
    group = f"g;$(touch {marker})`id`'\"\x1b[31m"
    web = [containers(f"h{i}", {"chaos.enable": value, "chaos.group": group}) for i in (1, 2, 3)]
    cfg = write_config(tmp_path, value, '[faults]\nenabled = ["pause"]', duration="1s")
    result = run_cli("run", "--config", str(cfg), "--once", timeout=60)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert "\x1b" not in result.stderr and "\\x1b[31m" in result.stderr
    assert all(not state(docker_api, c["Id"])["Paused"] for c in web)


def test_kill_switch_heals_within_5s_and_blocks_new_faults(
    containers, docker_api, tmp_path, value, cleanup_procs
):
    group_of_three(containers, value, "ks")
    cfg = write_config(tmp_path, value, '[faults]\nenabled = ["pause"]', duration="120s")
    proc = start_agent("run", "--config", str(cfg))
    cleanup_procs.append(proc)
    inject = wait_event(tmp_path, "inject")
    assert state(docker_api, inject["container_id"])["Paused"]
    stop_file = tmp_path / "state" / "STOP"
    stop_file.touch()
    t0 = time.monotonic()
    wait_for(lambda: not state(docker_api, inject["container_id"])["Paused"], 5)
    assert time.monotonic() - t0 < 5.0
    time.sleep(2.5)  # the schedule would fire every ~1 s: nothing new may start
    injects = [e for e in journal(tmp_path) if e["event"] == "inject"]
    assert len(injects) == 1
    assert any(e["event"] == "halt" for e in journal(tmp_path))
    stop_file.unlink()
    wait_for(lambda: len([e for e in journal(tmp_path) if e["event"] == "inject"]) >= 2, 15)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    assert proc.returncode == 0
    assert ledger(tmp_path) == []


def test_once_faults_one_target_and_returns_after_the_heal(containers, docker_api, tmp_path, value):
    web = group_of_three(containers, value, "o")
    cfg = write_config(tmp_path, value, '[faults]\nenabled = ["stop"]', duration="1s")
    result = run_cli("run", "--config", str(cfg), "--once", "--seed", "1", timeout=60)
    assert result.returncode == 0, result.stderr
    events = [e["event"] for e in journal(tmp_path)]
    assert events.count("inject") == 1 and events.count("heal") == 1
    assert events[-1] == "stop"
    assert all(state(docker_api, c["Id"])["Running"] for c in web)


def test_stop_condition_halts_heals_and_exits_3(containers, docker_api, tmp_path, value):
    import socket

    group_of_three(containers, value, "sc")
    with socket.socket() as s:  # a port with nothing listening: the probe fails
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    extra = (
        '[faults]\nenabled = ["pause"]\n'
        f'[[probes]]\nname = "site"\nkind = "tcp"\naddress = "127.0.0.1:{port}"\ninterval = "0.2s"\n'
        'timeout = "0.2s"\n[stop]\nmin_availability = 0.8\nwindow = "3s"\nmin_samples = 5\n'
    )
    cfg = write_config(tmp_path, value, extra, duration="120s", first_after="0s")
    result = run_cli("run", "--config", str(cfg), "--for", "60s", timeout=90)
    assert result.returncode == 3, result.stderr
    events = journal(tmp_path)
    halt = next(e for e in events if e["event"] == "halt")
    assert "site" in halt["reason"]
    assert any(e["event"] == "probe" and e["ok"] is False for e in events)
    assert ledger(tmp_path) == []
    for e in events:
        if e["event"] == "inject":
            assert not state(docker_api, e["container_id"])["Paused"]


def test_sigterm_heals_first_even_while_a_probe_hangs(
    containers, docker_api, tmp_path, value, cleanup_procs
):
    """A probe endpoint that accepts and never answers (timeout 30 s) must not delay the
    heal on SIGTERM: the heal lands at once, the agent exits within its stop budget."""
    import socket

    group_of_three(containers, value, "hp")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshake; nothing ever replies
        port = listener.getsockname()[1]
        extra = (
            '[faults]\nenabled = ["pause"]\n'
            f'[[probes]]\nname = "hang"\nkind = "http"\nurl = "http://127.0.0.1:{port}/"\n'
            'interval = "1s"\ntimeout = "30s"\n'
        )
        cfg = write_config(tmp_path, value, extra, duration="120s")
        proc = start_agent("run", "--config", str(cfg))
        cleanup_procs.append(proc)
        cid = wait_event(tmp_path, "inject", timeout=30)["container_id"]
        assert state(docker_api, cid)["Paused"]
        proc.send_signal(signal.SIGTERM)
        # before this change the heal waited for the probe's 30 s check to run out
        wait_for(lambda: not state(docker_api, cid)["Paused"], timeout=20, interval=0.2)
        proc.wait(timeout=30)  # stop_timeout 8 s: the hanging probe thread is not waited for
        assert proc.returncode == 0, proc.stderr.read()
    events = journal(tmp_path)
    assert [e["event"] for e in events if e["event"] in ("heal", "stop")] == ["heal", "stop"]
    assert ledger(tmp_path) == []
