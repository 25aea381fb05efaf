"""The agent as a container beside Compose: what it needs, and a one-line reason
naming the missing setting when it lacks it (socket, pid: host, capabilities)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import AGENT_IMAGE, SESSION, TEST_LABEL

pytestmark = pytest.mark.docker


def run_agent_container(
    tmp_path: Path, value: str, args: list[str], *, privileged: bool
) -> subprocess.CompletedProcess:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[targets]\nvalue = "{value}"\n[faults]\nenabled = ["pause", "kill", "partition"]\n'
    )
    cmd = [
        "docker",
        "run",
        "--rm",
        "--label",
        f"{TEST_LABEL}={SESSION}",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        f"{cfg}:/etc/chaos-agent/config.toml:ro",
        "-e",
        "CHAOS_AGENT_CONFIG=/etc/chaos-agent/config.toml",
    ]
    if privileged:
        cmd += [
            "--pid",
            "host",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "SYS_PTRACE",
        ]
    cmd += [AGENT_IMAGE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def value() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def three(containers, value: str) -> list[dict]:
    return [containers(f"ac{i}", {"chaos.enable": value, "chaos.group": "ac"}) for i in (1, 2, 3)]


def test_without_caps_network_faults_name_the_missing_setting(
    agent_image, containers, tmp_path, value
):
    web = three(containers, value)
    listing = run_agent_container(tmp_path, value, ["targets", "--json"], privileged=False)
    assert listing.returncode == 0, listing.stderr
    out = json.loads(listing.stdout)
    missing = {u["fault"]: u["reason"] for u in out["unavailable_faults"]}
    assert "SYS_ADMIN" in missing["partition"], missing
    assert all(t["eligible"] for t in out["targets"])  # container faults still work
    refused = run_agent_container(
        tmp_path,
        value,
        ["inject", "partition", web[0]["Name"].lstrip("/"), "--duration", "2s"],
        privileged=False,
    )
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "SYS_ADMIN" in lines[0], refused.stderr


def test_kill_without_pid_host_falls_back_to_the_api_with_a_warning(
    agent_image, containers, docker_api, tmp_path, value
):
    web = three(containers, value)
    result = run_agent_container(
        tmp_path,
        value,
        ["inject", "kill", web[1]["Name"].lstrip("/"), "--duration", "2s"],
        privileged=False,
    )
    assert result.returncode == 0, result.stderr
    assert "falling back to the Engine API" in result.stderr
    assert docker_api.inspect_container(web[1]["Id"])["State"]["Running"]  # started again


def test_with_pid_host_and_caps_a_partition_applies_and_heals(
    agent_image, containers, docker_api, tmp_path, value
):
    web = three(containers, value)
    result = run_agent_container(
        tmp_path,
        value,
        ["inject", "partition", web[2]["Name"].lstrip("/"), "--duration", "2s"],
        privileged=True,
    )
    assert result.returncode == 0, result.stderr
    assert "injected partition" in result.stderr and "healed partition" in result.stderr
    rules = subprocess.run(
        [
            "nsenter",
            "-t",
            str(docker_api.inspect_container(web[2]["Id"])["State"]["Pid"]),
            "-n",
            "iptables-save",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "chaos-agent" not in rules and "CHAOS-" not in rules
