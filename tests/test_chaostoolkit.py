"""The Chaos Toolkit extension (integrations/chaostoolkit), driven by a real `chaos` CLI.

Chaos Toolkit and the extension live in their own venv ($CHAOS_CTK_VENV, default
.venv-ctk, made by scripts/test.sh); the extension runs this checkout's `chaos-agent`
against the real Docker engine. Every experiment is scoped to the test's own containers
(its own opt-in label value) and its own state directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, ledger_faults, need, wait_for
from tests.test_compose_examples import (
    LOCAL_IMAGES,
    SCOPE_LABEL,
    Stack,
    _wait_healthy,
    need_images,
    stack,
)
from tests.test_compose_examples import compose as compose  # noqa: F401 - the fixture

pytestmark = pytest.mark.docker

CTK_VENV = Path(os.environ.get("CHAOS_CTK_VENV") or REPO / ".venv-ctk")
CHAOS = CTK_VENV / "bin" / "chaos"
EXPERIMENTS = REPO / "integrations" / "chaostoolkit" / "experiments"
AGENT_BIN = Path(sys.executable).parent / "chaos-agent"


@pytest.fixture(scope="module")
def chaos_cli() -> Path:
    need(CHAOS.exists(), f"Chaos Toolkit in {CTK_VENV} (scripts/test.sh creates it)")
    need(AGENT_BIN.exists(), f"chaos-agent installed next to {sys.executable}")
    return CHAOS


def agent_env(tmp: Path, scope: str) -> dict[str, str]:
    """A config scoped to `scope` with its own state directory, for the agent CTK runs."""
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    config = tmp / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{state}"\n\n'
        f'[targets]\nlabel = "{SCOPE_LABEL}"\nvalue = "{scope}"\n\n'
        '[faults]\nenabled = ["pause", "stop", "kill", "restart"]\n'
    )
    return {
        **os.environ,
        "CHAOS_AGENT_CONFIG": str(config),
        "CHAOS_AGENT_BIN": str(AGENT_BIN),
        "PYTHONUNBUFFERED": "1",
    }


def chaos_run(
    chaos: Path, experiment: Path, tmp: Path, env: dict[str, str], *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(chaos), "--no-version-check", "--log-file", str(tmp / "chaostoolkit.log"),
         "run", "--journal-path", str(tmp / "journal.json"), *extra, str(experiment)],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: the test ends every process it left
    )  # fmt: skip


def end_group(proc: subprocess.Popen[str]) -> str:
    """Kill what is left of `chaos run`'s process group (e.g. its `sleep` after a SIGKILL)
    and return its output."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    out, _ = proc.communicate(timeout=30)
    return out or ""


def in_long_wait(pid: int) -> bool:
    """`chaos run` (pid) has started the experiment's `sleep` probe."""
    import psutil

    try:
        return any(c.name() == "sleep" for c in psutil.Process(pid).children())
    except psutil.Error:
        return False


def agent_journal(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "state" / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_chaos_discover_lists_the_activities(chaos_cli: Path, tmp_path: Path) -> None:
    out = tmp_path / "discovery.json"
    proc = subprocess.run(
        [str(chaos_cli), "--no-version-check", "--log-file", str(tmp_path / "ctk.log"),
         "discover", "--no-system-info", "--no-install", "--discovery-path", str(out),
         "chaosagent"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    discovery = json.loads(out.read_text())
    assert discovery["extension"]["name"] == "chaosagent"
    found = {(a["type"], a["mod"], a["name"]) for a in discovery["activities"]}
    assert found == {
        ("action", "chaosagent.actions", "inject_fault"),
        ("action", "chaosagent.actions", "inject_fault_on_group"),
        ("action", "chaosagent.actions", "heal_all"),
        ("action", "chaosagent.actions", "engage_kill_switch"),
        ("action", "chaosagent.actions", "release_kill_switch"),
        ("probe", "chaosagent.probes", "eligible_targets"),
        ("probe", "chaosagent.probes", "active_faults"),
        ("probe", "chaosagent.probes", "group_health"),
        ("probe", "chaosagent.probes", "healthy_members"),
        ("probe", "chaosagent.probes", "last_verdict"),
    }
    inject = next(a for a in discovery["activities"] if a["name"] == "inject_fault")
    args = {a["name"]: a.get("type") for a in inject["arguments"]}
    assert args["fault"] == "string" and args["duration"] == "string"
    assert args["force"] == "boolean" and inject["return_type"] == "mapping"


def test_web_replicas_experiment_holds_and_rolls_back(
    docker_api: Any, compose: list[str], chaos_cli: Path, tmp_path: Path
) -> None:
    need_images(docker_api, LOCAL_IMAGES["WEB_IMAGE"], LOCAL_IMAGES["HAPROXY_IMAGE"])
    s: Stack
    with stack("web-replicas", tmp_path, compose) as s:
        s.scope(["web"])
        s.up("web", "balancer")
        s.wait_ok(body="hello from")
        web_ids = s.run("ps", "-q", "web").split()
        _wait_healthy(docker_api, web_ids)
        env = {
            **agent_env(tmp_path, s.project),
            "BALANCER_URL": s.url,
            "WEB_GROUP": f"{s.project}/web",
            "FAULT_DURATION": "60s",  # outlives the experiment: the rollback must heal it
        }
        proc = chaos_run(chaos_cli, EXPERIMENTS / "web-replicas-pause.json", tmp_path, env)
        try:
            proc.wait(timeout=240)
        finally:
            out = end_group(proc)
        assert proc.returncode == 0, out
        journal = json.loads((tmp_path / "journal.json").read_text())
        assert journal["status"] == "completed" and not journal["deviated"], out
        assert journal["steady_states"]["before"]["steady_state_met"], out
        assert journal["steady_states"]["after"]["steady_state_met"], out
        runs = {r["activity"]["name"]: r for r in journal["run"]}
        injected = runs["pause-one-web-replica"]["output"]
        assert injected["active"] and injected["fault"] == "pause", injected
        assert injected["group"] == f"{s.project}/web"
        faulted = runs["faults-while-paused"]["output"]
        assert [f["fault_id"] for f in faulted] == [injected["fault_id"]]
        # the hypothesis after the method ran while the replica was still frozen
        after = {p["activity"]["name"]: p for p in journal["steady_states"]["after"]["probes"]}
        # (2 unless a healthcheck of another replica flapped on a loaded machine)
        assert after["healthy-web-replicas"]["output"] in (1, 2), after
        assert after["balancer-answers"]["output"]["status"] == 200
        # the rollback healed it (long before the 60 s deadline): nothing left
        (rollback,) = journal["rollbacks"]
        assert rollback["status"] == "succeeded", rollback
        assert any(injected["target_name"] in line for line in rollback["output"]), rollback
        assert ledger_faults(tmp_path / "state") == []
        for cid in web_ids:
            assert docker_api.inspect_container(cid)["State"]["Status"] == "running"
        events = [e["event"] for e in agent_journal(tmp_path)]
        assert "inject" in events and "heal" in events and "watchdog" not in events


@pytest.fixture
def replicas(containers: Any) -> tuple[str, list[str]]:
    """Three opted-in replicas of one group; returns (scope, container ids)."""
    scope = f"ctk{uuid.uuid4().hex[:8]}"
    ids = [
        containers(f"ctk-web{i}", {SCOPE_LABEL: scope, "chaos.group": f"{scope}-web"})["Id"]
        for i in range(3)
    ]
    return scope, ids


@pytest.mark.parametrize(
    ("sig", "strategy", "healer"),
    [
        (signal.SIGINT, "always", "rollback"),
        (signal.SIGTERM, "default", "watchdog"),
        (signal.SIGKILL, "default", "watchdog"),
    ],
)
def test_interrupted_experiment_leaves_nothing_broken(
    docker_api: Any,
    chaos_cli: Path,
    replicas: tuple[str, list[str]],
    tmp_path: Path,
    sig: signal.Signals,
    strategy: str,
    healer: str,
) -> None:
    scope, ids = replicas
    env = {
        **agent_env(tmp_path, scope),
        "TARGET_GROUP": f"{scope}-web",
        # long enough to be mid-fault when the signal lands on a loaded machine; the
        # rollback case heals at once, so its fault may be long
        "FAULT_DURATION": "60s" if healer == "rollback" else "12s",
        "WAIT_S": "300",
    }
    experiment = EXPERIMENTS / "pause-and-wait.yaml"
    proc = chaos_run(chaos_cli, experiment, tmp_path, env, "--rollback-strategy", strategy)
    try:
        # mid-fault: one replica paused by the agent, the experiment in its long wait
        records = wait_for(lambda: ledger_faults(tmp_path / "state"), timeout=120, interval=0.2)
        victim = records[0]["target_id"]
        assert victim in ids
        wait_for(lambda: docker_api.inspect_container(victim)["State"]["Paused"], timeout=30)
        # signal only once the method is in its wait: Chaos Toolkit turns an interrupt that
        # lands inside a Python action into a failed activity and goes on
        wait_for(lambda: in_long_wait(proc.pid), timeout=60, interval=0.2)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        out = end_group(proc)

    # healed by the rollback (SIGINT, --rollback-strategy always) or by the agent's
    # watchdog at the deadline (SIGTERM with the default strategy, SIGKILL): either way
    # nothing is left paused
    def healed() -> bool:
        if docker_api.inspect_container(victim)["State"]["Paused"]:
            return False
        kinds = {e["event"] for e in agent_journal(tmp_path)}
        return "heal" in kinds if healer == "rollback" else "watchdog" in kinds

    wait_for(healed, timeout=90, interval=0.2)
    for cid in ids:
        state = docker_api.inspect_container(cid)["State"]
        assert state["Running"] and not state["Paused"], (cid, state)
    events = agent_journal(tmp_path)
    heals = [e for e in events if e["event"] in ("heal", "watchdog")]
    assert [(e["event"], e["how"], e["container_id"]) for e in heals] == [
        ("heal" if healer == "rollback" else "watchdog", "healed", victim)
    ], heals
    if sig != signal.SIGKILL:
        journal = json.loads((tmp_path / "journal.json").read_text())
        assert journal["status"] == "interrupted", out
        assert bool(journal["rollbacks"]) == (healer == "rollback"), journal["rollbacks"]
    # the watchdog never writes the ledger: the agent's next call (any inject, `heal`)
    # finds the fault healed and clears the record
    done = subprocess.run(
        [str(AGENT_BIN), "heal"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert ledger_faults(tmp_path / "state") == []
    assert not docker_api.inspect_container(victim)["State"]["Paused"]


ACTIVITIES_SCRIPT = """
import json, sys
from chaoslib.exceptions import ActivityFailed
from chaosagent import actions, probes
group, first = sys.argv[1], sys.argv[2]
out = {}
out["eligible"] = sorted(probes.eligible_targets(group=group, fault="pause"))
out["health_before"] = probes.group_health(group)
out["inject"] = actions.inject_fault("pause", first, "60s")
out["active"] = probes.active_faults()
out["health_during"] = probes.group_health(group)
out["engage"] = actions.engage_kill_switch()
out["active_after_switch"] = probes.active_faults()
try:
    actions.inject_fault("pause", first, "60s")
    out["refused"] = ""
except ActivityFailed as exc:
    out["refused"] = str(exc)
out["release"] = actions.release_kill_switch()
out["on_group"] = actions.inject_fault_on_group("stop", group, "60s")
out["healed"] = actions.heal_all()
out["verdict"] = probes.last_verdict()
print(json.dumps(out))
"""


def test_extension_activities_against_the_agent(
    docker_api: Any, chaos_cli: Path, replicas: tuple[str, list[str]], tmp_path: Path
) -> None:
    """Every action and probe, called as Chaos Toolkit calls them, on real containers."""
    scope, ids = replicas
    group = f"{scope}-web"
    names = sorted(docker_api.inspect_container(c)["Name"].lstrip("/") for c in ids)
    env = agent_env(tmp_path, scope)
    proc = subprocess.run(
        [str(CTK_VENV / "bin" / "python"), "-c", ACTIVITIES_SCRIPT, group, names[0]],
        env=env, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["eligible"] == names
    assert out["health_before"] == {
        "group": group, "members": 3, "running": 3, "healthy": 3, "faulted": 0
    }  # fmt: skip
    assert out["inject"]["active"] and out["inject"]["target_name"] == names[0]
    assert [f["fault_id"] for f in out["active"]] == [out["inject"]["fault_id"]]
    assert out["health_during"]["faulted"] == 1 and out["health_during"]["healthy"] == 2
    # the kill switch heals the detached fault at once and makes inject refuse
    assert out["engage"]["engaged"] and out["active_after_switch"] == []
    assert "kill switch" in out["refused"], out["refused"]
    assert not out["release"]["engaged"]
    assert not Path(out["release"]["kill_switch"]).exists()
    assert out["on_group"]["active"] and out["on_group"]["fault"] == "stop"
    assert out["on_group"]["target_name"] in names
    assert len(out["healed"]) == 1 and out["on_group"]["target_name"] in out["healed"][0]
    assert out["verdict"] in ("survived", "unmeasured"), out["verdict"]
    assert ledger_faults(tmp_path / "state") == []
    for cid in ids:
        state = docker_api.inspect_container(cid)["State"]
        assert state["Running"] and not state["Paused"], state
