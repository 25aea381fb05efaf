"""packaging/systemd/chaos-agent.service under a real systemd (252, PID 1 in a container).

The container (image chaos-systemd:latest, scripts/build-images.sh systemd) runs with
`--cap-add SYS_ADMIN --cgroupns=private` and the host's Docker socket: the agent inside
faults containers on the host engine. The checkout is mounted at /src and put first on
PYTHONPATH by a drop-in, so the code under test is this tree's. Faults are pauses (through
the API): the systemd container has its own PID namespace, so host-PID faults are out.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, SESSION, TEST_LABEL, need, wait_for

pytestmark = pytest.mark.docker

IMAGE = "chaos-systemd:latest"
UNIT = "chaos-agent"


class Box:
    """One systemd container; every command an argument list."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(
        self, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["docker", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{argv}: rc {done.returncode}: {done.stdout}{done.stderr}")
        return done

    def write(self, path: str, text: str) -> None:
        subprocess.run(
            ["docker", "exec", "-i", self.name, "tee", path],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )

    def prop(self, name: str) -> str:
        return self.sh("systemctl", "show", "-p", name, "--value", UNIT).stdout.strip()

    def journal(self) -> list[dict]:
        done = self.sh("cat", "/var/lib/chaos-agent/journal.jsonl", check=False)
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def events(self, name: str) -> list[dict]:
        return [e for e in self.journal() if e.get("event") == name]

    def logs(self) -> str:
        return self.sh("journalctl", "-u", UNIT, "--no-pager", "-n", "60", check=False).stdout


@pytest.fixture(scope="module")
def box(docker_api) -> Iterator[Box]:
    try:
        docker_api.inspect_image(IMAGE)
    except Exception:  # noqa: BLE001
        need(False, f"image {IMAGE} (scripts/build-images.sh systemd)")
    name = f"ops-systemd-{uuid.uuid4().hex[:8]}"
    run = subprocess.run(
        [
            "docker", "run", "-d", "--name", name,
            "--label", f"{TEST_LABEL}={SESSION}",
            "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_PTRACE",
            "--cgroupns=private",
            "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "-v", "/var/run/docker.sock:/run/docker.sock",
            "-v", f"{REPO}:/src:ro",
            IMAGE,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    b = Box(name)
    try:
        wait_for(
            lambda: (
                b.sh("systemctl", "is-system-running", check=False).stdout.strip()
                in ("running", "degraded")
            ),
            60,
            0.3,
        )
        unit = (REPO / "packaging/systemd/chaos-agent.service").read_text()
        b.write(f"/etc/systemd/system/{UNIT}.service", unit)
        yield b
    finally:
        subprocess.run(["docker", "exec", name, "systemctl", "stop", UNIT], capture_output=True, timeout=60, check=False)  # fmt: skip
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


def configure(
    box: Box, value: str, *, duration: str, first_after: str = "0s", extra: str = ""
) -> None:
    """A fresh state directory, the agent's config and the test's drop-in."""
    box.sh("systemctl", "stop", UNIT, check=False)
    box.sh("systemctl", "reset-failed", UNIT, check=False)
    box.sh("rm", "-rf", "/var/lib/chaos-agent")
    box.write(
        "/etc/chaos-agent/agent.toml",
        "\n".join(
            [
                "[targets]",
                f'value = "{value}"',
                "[schedule]",
                'mean_interval = "1h"',
                'min_gap = "1h"',
                f'first_after = "{first_after}"',
                f'duration = "{duration}"',
                "[faults]",
                'enabled = ["pause"]',
                "",
            ]
        ),
    )
    box.sh("mkdir", "-p", f"/etc/systemd/system/{UNIT}.service.d")
    box.write(
        f"/etc/systemd/system/{UNIT}.service.d/test.conf",
        f"[Service]\nEnvironment=PYTHONPATH=/src\nWatchdogSec=8s\nRestartSec=1s\n{extra}",
    )
    box.sh("systemctl", "daemon-reload")


def three(containers, value: str) -> list[dict]:
    return [
        containers(f"ops-sd-{i}", {"chaos.enable": value, "chaos.group": "sd"}) for i in (1, 2, 3)
    ]


def paused(api, ids: list[str]) -> list[str]:
    return [cid for cid in ids if api.inspect_container(cid)["State"]["Paused"]]


def test_ready_then_fault_injected_and_healed(box, containers, docker_api):
    value = f"sd-{uuid.uuid4().hex[:6]}"
    ids = [c["Id"] for c in three(containers, value)]
    configure(box, value, duration="3s")
    box.sh("systemctl", "start", UNIT)  # Type=notify: returns once READY=1 arrived
    assert box.prop("ActiveState") == "active", box.logs()
    assert box.prop("StatusText")  # the start sentence, sent with READY=1
    victim = wait_for(lambda: paused(docker_api, ids), 30, 0.1)[0]
    wait_for(lambda: not paused(docker_api, ids), 30, 0.1)
    heal = wait_for(lambda: box.events("heal"), 15, 0.2)[0]
    assert heal["container_id"] == victim and heal["how"] == "healed"
    box.sh("systemctl", "stop", UNIT)
    assert box.prop("Result") == "success", box.logs()


def test_systemctl_stop_heals_within_stop_timeout(box, containers, docker_api):
    value = f"sd-{uuid.uuid4().hex[:6]}"
    ids = [c["Id"] for c in three(containers, value)]
    configure(box, value, duration="10m")
    box.sh("systemctl", "start", UNIT)
    wait_for(lambda: paused(docker_api, ids), 30, 0.1)
    t0 = time.monotonic()
    box.sh("systemctl", "stop", UNIT)
    elapsed = time.monotonic() - t0
    assert not paused(docker_api, ids)
    stop = box.events("stop")[-1]
    assert stop["left"] == 0
    assert box.prop("Result") == "success", box.logs()  # exited by itself, not by SIGKILL
    assert elapsed < 20, elapsed  # TimeoutStopSec; healing itself fits in stop_timeout (8 s)


def test_frozen_main_loop_is_restarted_by_the_watchdog(box, containers):
    value = f"sd-{uuid.uuid4().hex[:6]}"
    configure(box, value, duration="3s", first_after="1h")
    box.sh("systemctl", "start", UNIT)
    pid = box.prop("MainPID")
    assert pid not in ("", "0")
    time.sleep(10)  # longer than WatchdogSec=8s: only the pings (every 4 s) keep it alive
    assert box.prop("MainPID") == pid and box.prop("NRestarts") == "0", box.logs()
    box.sh("kill", "-STOP", pid)
    wait_for(lambda: box.prop("NRestarts") not in ("", "0"), 40, 0.5)
    wait_for(lambda: box.prop("ActiveState") == "active" and box.prop("MainPID") != pid, 40, 0.5)
    assert "watchdog timeout" in box.logs().lower()


def test_kill_mid_fault_heals_by_the_deadline_through_the_deadman_unit(box, containers, docker_api):
    value = f"sd-{uuid.uuid4().hex[:6]}"
    ids = [c["Id"] for c in three(containers, value)]
    # no restart: only the dead-man watchdog (a transient unit) can heal this one
    configure(box, value, duration="8s", extra="Restart=no\n")
    box.sh("systemctl", "start", UNIT)
    wait_for(lambda: paused(docker_api, ids), 30, 0.1)
    inject = wait_for(lambda: box.events("inject"), 15, 0.2)[0]
    box.sh("systemctl", "kill", "-s", "KILL", UNIT)
    wait_for(lambda: box.prop("ActiveState") in ("failed", "inactive"), 20, 0.2)
    assert paused(docker_api, ids)  # nothing healed it yet
    units = box.sh("systemctl", "list-units", "--all", "--plain", "--no-legend", "chaos-deadman-*")
    assert "chaos-deadman-" in units.stdout  # it outlived the agent's cgroup
    wait_for(lambda: not paused(docker_api, ids), inject["deadline"] - time.time() + 20, 0.2)
    healed = wait_for(lambda: box.events("watchdog"), 10, 0.2)[0]
    assert healed["how"] == "healed"
    assert healed["t"] <= inject["deadline"] + 10  # GRACE (2 s) plus time for a loaded machine


def test_hardening_keeps_nsenter_iptables_and_tc_working(box):
    """The unit's sandbox (ProtectSystem=strict, RestrictNamespaces=net, the address families,
    the capability set, /run/xtables.lock) with the agent's netns adapter as ExecStart."""
    box.sh("sh", "-c", "exec setsid unshare -n sleep 600 >/dev/null 2>&1 &")
    pid = wait_for(
        lambda: box.sh("pgrep", "-n", "-x", "sleep", check=False).stdout.strip(), 20, 0.2
    )
    try:
        unit = (REPO / "packaging/systemd/chaos-agent.service").read_text()
        box.write("/etc/systemd/system/chaos-hardening.service", unit)
        box.sh("mkdir", "-p", "/etc/systemd/system/chaos-hardening.service.d")
        box.write(
            "/etc/systemd/system/chaos-hardening.service.d/probe.conf",
            "[Service]\nType=oneshot\nRestart=no\nWatchdogSec=0\nEnvironment=PYTHONPATH=/src\n"
            "ExecStart=\n"
            f"ExecStart=/opt/chaos-agent/bin/python /src/tests/systemd_netns_probe.py {pid}\n",
        )
        box.sh("systemctl", "daemon-reload")
        started = box.sh("systemctl", "start", "chaos-hardening", check=False, timeout=120)
        logs = box.sh("journalctl", "-u", "chaos-hardening", "--no-pager", check=False).stdout
        assert started.returncode == 0, logs
        for line in ("iptables ok", "iptables-legacy ok", "tc ok"):
            assert line in logs, logs
    finally:
        box.sh("kill", pid, check=False)
