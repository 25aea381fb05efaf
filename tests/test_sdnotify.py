"""The notify protocol and the transient-unit argv, against real AF_UNIX datagram sockets
(the systemd side is exercised for real in tests/test_systemd.py)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from agent.systemd import SystemdNotifier, notify, systemd_transient_argv, under_systemd
from tests.conftest import wait_for

pytestmark = pytest.mark.pure


def listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    return sock


def test_notify_reaches_a_path_and_an_abstract_socket(tmp_path):
    with listener(str(tmp_path / "notify")) as sock:
        assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert sock.recv(4096) == b"READY=1"
    name = f"chaos-test-{uuid.uuid4().hex}"
    with listener("\0" + name) as sock:
        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_without_systemd_is_a_quiet_no():
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "relative/path"})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify"})


def test_ready_once_then_pings_at_half_the_watchdog_interval(tmp_path):
    path = str(tmp_path / "notify")
    with listener(path) as sock:
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
        sd = SystemdNotifier(env)
        assert sd.interval == 0.1
        sd.tick("Targeting 3")
        assert sock.recv(4096) == b"READY=1\nSTATUS=Targeting 3"

        def pinged() -> bool:
            sd.tick()
            sock.settimeout(0.05)
            try:
                return sock.recv(4096) == b"WATCHDOG=1"
            except TimeoutError:
                return False

        wait_for(pinged, 10, 0.02)


def test_no_pings_meant_for_another_process(tmp_path):
    path = str(tmp_path / "notify")
    with listener(path):
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
        assert SystemdNotifier(env).interval == 0.0
    sd = SystemdNotifier({})
    sd.tick()
    assert not sd.ready_sent  # not under systemd: nothing sent, nothing raised


def test_transient_unit_argv_is_an_argument_list():
    argv = systemd_transient_argv(
        "chaos-deadman-12-abc",
        ["/usr/bin/python3", "-m", "agent.watchdog", "--config", "/etc/a b;$(x).toml"],
        {"PYTHONPATH": "/src", "HOME": "/root"},
    )
    assert argv[:5] == [
        "systemd-run", "--unit=chaos-deadman-12-abc", "--collect", "--quiet", "--no-ask-password",
    ]  # fmt: skip
    assert "--setenv=PYTHONPATH=/src" in argv and not any("HOME" in a for a in argv)
    assert argv[argv.index("--") + 1 :][-1] == "/etc/a b;$(x).toml"  # one argument, no shell
    assert not under_systemd({})
