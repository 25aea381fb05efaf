"""The dead-man heal outlives the agent's container.

The agent runs as the compose examples run it (its image, `pid: host`, the socket
and a state directory mounted) and does `inject FAULT --duration`; the agent's
container is then killed (`docker kill`) or removed (`docker rm -f`) mid-fault.
The dead-man, a sibling container with its own cgroup, must bring the target back
by deadline + 5 s (ground truth from the engine, not the agent's words), clear
the ledger, and remove itself: nothing is left afterwards.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AGENT_IMAGE, SESSION, TEST_LABEL, journal_events, ledger_faults, wait_for

pytestmark = pytest.mark.docker
DEADMAN_LABEL = "chaos.deadman.owner"


@pytest.fixture
def agent_containers(docker_api: Any) -> Iterator[list[str]]:
    """Agent containers and the dead-men they armed: all removed at the end."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    for owner in _owners:
        for c in docker_api.containers(all=True, filters={"label": f"{DEADMAN_LABEL}={owner}"}):
            subprocess.run(["docker", "rm", "-f", c["Id"]], capture_output=True, timeout=60)
    _owners.clear()


_owners: list[str] = []


def first(state: Path, kind: str) -> dict[str, Any] | None:
    return next((e for e in journal_events(state) if e.get("event") == kind), None)


def start_agent_container(
    tmp_path: Path, value: str, fault: str, target: str, duration: str
) -> tuple[str, Path]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[agent]\nhost = "dm-{value}"\n[targets]\nvalue = "{value}"\n'
        f'[faults]\nenabled = ["{fault}"]\n[faults.stop]\ntimeout = "1s"\n'
    )
    name = f"dm-agent-{uuid.uuid4().hex[:8]}"
    cmd = [
        "docker", "run", "-d", "--name", name, "--label", f"{TEST_LABEL}={SESSION}",
        "--pid", "host",
        "--cap-add", "NET_ADMIN", "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE",
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-v", f"{cfg}:/etc/chaos-agent/config.toml:ro",
        # the image's VOLUME bound to a directory of ours: no anonymous volume is left
        "-v", f"{state}:/var/lib/chaos-agent",
        "-e", "CHAOS_AGENT_CONFIG=/etc/chaos-agent/config.toml",
        AGENT_IMAGE, "inject", fault, target, "--duration", duration,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return name, state


def our_rules(pid: int) -> str:
    text = ""
    for tool in ("iptables-save", "ip6tables-save"):
        text += subprocess.run(
            ["nsenter", "-t", str(pid), "-n", tool], capture_output=True, text=True
        ).stdout
    return "\n".join(line for line in text.splitlines() if "CHAOS-" in line)


def is_normal(docker_api: Any, fault: str, cid: str, pid: int) -> bool:
    st = docker_api.inspect_container(cid)["State"]
    if fault == "partition":
        return st["Running"] and not our_rules(pid)
    return bool(st["Running"]) and not st["Paused"]


def faulted(docker_api: Any, fault: str, cid: str, pid: int) -> bool:
    st = docker_api.inspect_container(cid)["State"]
    if fault == "pause":
        return bool(st["Paused"])
    if fault == "stop":
        return not st["Running"]
    return bool(our_rules(pid))


CASES = [
    pytest.param("kill", "pause", id="docker-kill-pause"),
    pytest.param("rm", "stop", id="docker-rm-stop"),
    pytest.param("kill", "partition", id="docker-kill-partition"),
    pytest.param("rm", "pause", id="docker-rm-pause", marks=pytest.mark.slow),
    pytest.param("kill", "stop", id="docker-kill-stop", marks=pytest.mark.slow),
    pytest.param("rm", "partition", id="docker-rm-partition", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("death", "fault"), CASES)
def test_killed_agent_container_is_healed_by_its_sibling_deadman(
    agent_image, agent_containers, containers, docker_api, tmp_path, death, fault
):
    value = f"dm-{uuid.uuid4().hex[:8]}"
    made = [containers(f"dm{i}", {"chaos.enable": value, "chaos.group": value}) for i in (1, 2, 3)]
    target = made[0]
    cid, pid = target["Id"], int(target["State"]["Pid"])
    name, state = start_agent_container(tmp_path, value, fault, target["Name"].lstrip("/"), "8s")
    agent_containers.append(name)
    inject = wait_for(lambda: first(state, "inject"), 60, interval=0.1)
    owner = (state / "agent.lock").read_text().split(" ")[-1]
    _owners.append(owner)
    assert faulted(docker_api, fault, cid, pid), "the fault did not land"

    # one dead-man per agent, visible in `docker ps`, in its own container
    listed = docker_api.containers(filters={"label": f"{DEADMAN_LABEL}={owner}"})
    assert len(listed) == 1, listed
    assert listed[0]["Names"][0].startswith("/chaos-deadman-")
    status = subprocess.run(
        ["docker", "exec", name, "chaos-agent", "status", "--json"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["deadman"].startswith("container chaos-deadman-")

    if death == "kill":
        subprocess.run(["docker", "kill", name], check=True, capture_output=True, timeout=30)
    else:
        subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True, timeout=30)
    assert faulted(docker_api, fault, cid, pid), "killing the agent healed it: nothing tested"

    healed_at = wait_for(
        lambda: is_normal(docker_api, fault, cid, pid) and time.time(), 40, interval=0.1
    )
    assert healed_at - inject["deadline"] < 5.0, (
        f"healed {healed_at - inject['deadline']:.1f}s late"
    )
    # the engine's own event stream confirms the heal action, after the deadline
    action = {"pause": "unpause", "stop": "start", "partition": None}[fault]
    if action:
        seen = subprocess.run(
            ["docker", "events", "--since", str(int(inject["t"])), "--until",
             str(int(time.time()) + 1), "--filter", f"container={cid}", "--format", "{{.Action}}"],
            capture_output=True, text=True, timeout=30,
        ).stdout.split()  # fmt: skip
        assert action in seen, seen
    # nothing left: the dead-man removed itself, the ledger is clear
    wait_for(
        lambda: not docker_api.containers(all=True, filters={"label": f"{DEADMAN_LABEL}={owner}"}),
        20,
        interval=0.2,
    )
    assert ledger_faults(state) == []
    assert any(e["event"] == "watchdog" and e.get("how") != "failed" for e in journal_events(state))


def test_deadman_stands_down_when_the_agent_heals_itself(
    agent_image, agent_containers, containers, docker_api, tmp_path
):
    value = f"dm-{uuid.uuid4().hex[:8]}"
    made = [containers(f"dq{i}", {"chaos.enable": value, "chaos.group": value}) for i in (1, 2, 3)]
    name, state = start_agent_container(tmp_path, value, "pause", made[0]["Name"][1:], "2s")
    agent_containers.append(name)
    wait_for(lambda: first(state, "inject"), 60, interval=0.1)
    owner = (state / "agent.lock").read_text().split(" ")[-1]
    _owners.append(owner)
    done = subprocess.run(["docker", "wait", name], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0"
    assert not docker_api.inspect_container(made[0]["Id"])["State"]["Paused"]
    wait_for(
        lambda: not docker_api.containers(all=True, filters={"label": f"{DEADMAN_LABEL}={owner}"}),
        20,
        interval=0.2,
    )
    assert ledger_faults(state) == []
    assert not [e for e in journal_events(state) if e["event"] == "watchdog"], "healed twice"
