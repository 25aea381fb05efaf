"""chaos-agent against a real rootful Podman (its Docker-compatible API), beside Docker.

`scripts/podman-engine.sh` (called by scripts/test.sh) installs Debian's podman, starts
`podman system service` on /run/podman/podman.sock and copies the web image in. The agent
is pointed at Podman with $CONTAINER_HOST (no $DOCKER_HOST): the same variable a Podman
user sets. Everything created carries `chaos.test=<session>` and is removed at the end.

The first tests are pure (socket discovery, engine detection, self-detection paths).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.adapters.docker_engine import (
    DOCKER_SOCKET,
    PODMAN_SOCKET,
    DockerEngine,
    container_id_from,
    docker_endpoint,
    engine_kind_of,
)
from tests.conftest import REPO, SESSION, TEST_LABEL, WEB_IMAGE, ledger_faults, need, wait_for

PODMAN_URL = f"unix://{PODMAN_SOCKET}"
CID = "a" * 64

# --- pure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "present", "expected"),
    [
        ({}, {DOCKER_SOCKET, PODMAN_SOCKET}, f"unix://{DOCKER_SOCKET}"),  # Docker first
        ({}, {PODMAN_SOCKET}, PODMAN_URL),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, {"/run/user/1000/podman/podman.sock"},
         "unix:///run/user/1000/podman/podman.sock"),
        ({}, set(), f"unix://{DOCKER_SOCKET}"),  # nothing: Docker's, named in the error
        ({"CONTAINER_HOST": PODMAN_URL}, {DOCKER_SOCKET}, PODMAN_URL),
        ({"DOCKER_HOST": "tcp://10.0.0.1:2375", "CONTAINER_HOST": PODMAN_URL}, set(),
         "tcp://10.0.0.1:2375"),
    ],
)  # fmt: skip
def test_socket_discovery_order(env: dict[str, str], present: set[str], expected: str) -> None:
    assert docker_endpoint(env, exists=lambda p: p in present) == expected


def test_engine_kind_from_version_components() -> None:
    podman = {
        "Components": [
            {"Name": "Podman Engine", "Version": "4.3.1"},
            {"Name": "Conmon", "Version": "conmon version 2.1.6"},
        ],
        "ApiVersion": "1.41",
    }
    docker = {"Components": [{"Name": "Engine", "Version": "20.10.24"}, {"Name": "containerd"}]}
    assert engine_kind_of(podman) == "podman"
    assert engine_kind_of(docker) == "docker"
    assert engine_kind_of({}) == "docker"


def test_own_container_id_on_podman_and_docker_paths() -> None:
    podman_mount = (
        f"812 790 0:25 /containers/storage/overlay-containers/{CID}/userdata/hostname "
        "/etc/hostname rw,nosuid,nodev - tmpfs tmpfs rw"
    )
    docker_mount = f"600 590 8:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw"
    assert container_id_from(podman_mount, "") == CID
    assert container_id_from(docker_mount, "") == CID
    assert container_id_from("", f"4:pids:/libpod_parent/libpod-{CID}\n") == CID
    assert container_id_from("", f"0::/system.slice/docker-{CID}.scope\n") == CID
    assert container_id_from("1 2 0:1 / / rw - ext4 /dev/sda1 rw", "0::/init.scope") == ""


# --- real rootful Podman --------------------------------------------------------------------


@pytest.fixture(scope="module")
def podman_api() -> Iterator[Any]:
    import docker

    try:
        api = docker.APIClient(base_url=PODMAN_URL, timeout=60, version="auto")
        api.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Podman"
        need(False, f"rootful Podman on {PODMAN_SOCKET} (scripts/podman-engine.sh): {exc}")
        raise
    try:
        api.inspect_image(WEB_IMAGE)
    except Exception:  # noqa: BLE001
        need(False, f"image {WEB_IMAGE} in Podman (scripts/podman-engine.sh copies it)")
    yield api
    for c in api.containers(all=True, filters={"label": f"{TEST_LABEL}={SESSION}"}):
        try:
            api.remove_container(c["Id"], force=True, v=True)
        except Exception:  # noqa: BLE001, S110 - best effort at teardown
            pass
    api.close()


class Replicas:
    """Three opted-in replicas of one compose-labelled service in Podman, plus helpers."""

    def __init__(self, api: Any, tmp: Path) -> None:
        self.api = api
        self.scope = f"ctkp{uuid.uuid4().hex[:8]}"
        self.group = f"{self.scope}/web"
        self.ids: list[str] = []
        self.state = tmp / "state"
        self.state.mkdir()
        self.config = tmp / "agent.toml"
        self.config.write_text(
            f'[agent]\nstate_dir = "{self.state}"\n\n'
            f'[targets]\nlabel = "chaos.scope"\nvalue = "{self.scope}"\n\n'
            '[faults]\nenabled = ["kill", "stop", "pause", "restart", "partition", "loss"]\n'
        )
        env = {
            k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "CHAOS_AGENT_CONFIG")
        }
        self.env = {**env, "CONTAINER_HOST": PODMAN_URL}

    def add(self, name: str, **host_config: Any) -> str:
        labels = {
            TEST_LABEL: SESSION,
            "chaos.scope": self.scope,
            "com.docker.compose.project": self.scope,
            "com.docker.compose.service": "web",
        }
        c = self.api.create_container(
            WEB_IMAGE,
            name=f"{self.scope}-{name}",
            labels=labels,
            host_config=self.api.create_host_config(**host_config),
            stop_signal="SIGKILL",
        )
        self.ids.append(c["Id"])
        self.api.start(c["Id"])
        return str(c["Id"])

    def state_of(self, cid: str) -> dict[str, Any]:
        return self.api.inspect_container(cid)["State"]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent", *args, "--config", str(self.config)],
            capture_output=True, text=True, env=self.env, timeout=timeout, cwd=REPO,
            check=False,
        )  # fmt: skip

    def start_cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", *args, "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=REPO,
        )  # fmt: skip

    def journal(self) -> list[dict[str, Any]]:
        path = self.state / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def replicas(podman_api: Any, tmp_path: Path) -> Iterator[Replicas]:
    r = Replicas(podman_api, tmp_path)
    for i in range(3):
        r.add(f"web{i}")
    yield r
    for cid in r.ids:
        try:
            if r.state_of(cid).get("Paused"):
                podman_api.unpause(cid)
            podman_api.remove_container(cid, force=True, v=True)
        except Exception:  # noqa: BLE001, S110
            pass


@pytest.mark.podman
def test_docker_keeps_its_socket_when_podman_runs_beside_it(podman_api: Any) -> None:
    """A Docker host that installs Podman keeps talking to Docker unless told otherwise."""
    need(os.path.exists(DOCKER_SOCKET), "a Docker engine beside Podman")
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "CONTAINER_HOST")}
    script = (
        "from agent.adapters.docker_engine import DockerEngine as E; e = E(); "
        "print(e.engine_kind(), e.api.base_url)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "docker", out
    pod = DockerEngine(base_url=PODMAN_URL)
    try:
        assert pod.engine_kind() == "podman"
    finally:
        pod.close()


@pytest.mark.podman
def test_podman_targets_groups_and_network_mode(replicas: Replicas) -> None:
    host_net = replicas.add("hostnet", network_mode="host")
    out = replicas.cli("targets", "--json")
    assert out.returncode == 0, out.stderr
    listed = {t["id"]: t for t in json.loads(out.stdout)["targets"]}
    assert set(listed) == set(replicas.ids)
    assert {t["group"] for t in listed.values()} == {replicas.group}
    for cid in replicas.ids[:3]:
        assert listed[cid]["eligible"], listed[cid]
        assert {"pause", "kill", "partition", "loss"} <= set(listed[cid]["faults"])
    # Podman's list entries have HostConfig: None; the network mode comes from an inspect
    # so a host-network container is never given a network fault
    assert "partition" not in listed[host_net]["faults"], listed[host_net]
    assert "loss" not in listed[host_net]["faults"]


@pytest.mark.podman
@pytest.mark.parametrize("fault", ["pause", "stop", "kill"])
def test_podman_fault_is_injected_then_healed(replicas: Replicas, fault: str) -> None:
    victim = replicas.ids[0]
    before = replicas.state_of(victim)
    proc = replicas.start_cli("inject", fault, f"{replicas.scope}-web0", "--duration", "3s")
    try:
        faulted: Callable[[dict[str, Any]], bool] = (
            (lambda s: s["Paused"]) if fault == "pause" else (lambda s: not s["Running"])
        )
        wait_for(lambda: faulted(replicas.state_of(victim)), timeout=60, interval=0.1)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    after = replicas.state_of(victim)
    assert after["Running"] and not after["Paused"], after
    if fault != "pause":
        assert after["StartedAt"] != before["StartedAt"]  # started again by the heal
    assert ledger_faults(replicas.state) == []
    heals = [e for e in replicas.journal() if e["event"] == "heal"]
    assert [(e["fault"], e["how"]) for e in heals] == [(fault, "healed")], heals


@pytest.mark.podman
def test_podman_identity_pin_leaves_a_restarted_container_alone(replicas: Replicas) -> None:
    victim = replicas.ids[1]
    out = replicas.cli("inject", "stop", f"{replicas.scope}-web1", "--detach", "-d", "60s")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: not replicas.state_of(victim)["Running"], timeout=30)
    replicas.api.start(victim)  # someone brings it back meanwhile: a new instance
    wait_for(lambda: replicas.state_of(victim)["Running"], timeout=30)
    started = replicas.state_of(victim)["StartedAt"]
    healed = replicas.cli("heal")
    assert healed.returncode == 0, healed.stderr
    assert "environment" in healed.stdout, healed.stdout
    assert replicas.state_of(victim)["StartedAt"] == started  # not touched by the heal
    assert ledger_faults(replicas.state) == []


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - local test
            return resp.status == 200
    except OSError:
        return False


def _tagged_rules(pid: int) -> str:
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "iptables", "-S"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@pytest.mark.podman
def test_podman_partition_and_loss_in_the_namespace(replicas: Replicas) -> None:
    victim = replicas.ids[2]
    info = replicas.api.inspect_container(victim)
    pid = int(info["State"]["Pid"])
    ip = next(iter(info["NetworkSettings"]["Networks"].values()))["IPAddress"]
    url = f"http://{ip}:8080/"
    wait_for(lambda: _http_ok(url), timeout=60, interval=0.3)
    baseline = _tagged_rules(pid)
    for fault in ("partition", "loss"):
        out = replicas.cli("inject", fault, f"{replicas.scope}-web2", "--detach", "-d", "60s")
        assert out.returncode == 0, out.stderr
        (record,) = ledger_faults(replicas.state)
        rules = _tagged_rules(pid)
        assert f"chaos-agent:{record['fault_id']}" in rules, rules
        if fault == "partition":
            wait_for(lambda: not _http_ok(url), timeout=30, interval=0.3)  # really cut
        healed = replicas.cli("heal")
        assert healed.returncode == 0, healed.stderr
        assert _tagged_rules(pid) == baseline
        wait_for(lambda: _http_ok(url), timeout=30, interval=0.3)
        assert ledger_faults(replicas.state) == []


@pytest.mark.podman
def test_podman_watchdog_heals_a_detached_fault_and_the_report_names_it(
    replicas: Replicas,
) -> None:
    victim = replicas.ids[0]
    out = replicas.cli("inject", "pause", f"{replicas.scope}-web0", "--detach", "-d", "3s")
    assert out.returncode == 0, out.stderr
    assert replicas.state_of(victim)["Paused"]
    # no agent process is left: only the detached watchdog heals, 2 s after the deadline
    wait_for(lambda: not replicas.state_of(victim)["Paused"], timeout=60, interval=0.2)
    wait_for(lambda: any(e["event"] == "watchdog" for e in replicas.journal()), timeout=30)
    (watchdog,) = [e for e in replicas.journal() if e["event"] == "watchdog"]
    assert watchdog["how"] == "healed" and watchdog["container_id"] == victim
    assert replicas.cli("heal").returncode == 0  # the next agent call clears the record
    assert ledger_faults(replicas.state) == []
    report = replicas.cli("report", "--journal", str(replicas.state / "journal.jsonl"), "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    (fault,) = data["faults"]
    assert fault["fault"] == "pause" and fault["group"] == replicas.group, fault
    assert [g["group"] for g in data["groups"]] == [replicas.group]
