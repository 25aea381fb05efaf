"""systemd integration with the standard library: the notify protocol and transient units.

`Type=notify` readiness and `WatchdogSec=` pings are one datagram each to `$NOTIFY_SOCKET`
(sd_notify(3)); a few lines here beat a dependency. `systemd_transient_argv` starts the
dead-man watchdog as its own transient unit, outside the agent's cgroup: with the default
`KillMode=control-group`, a process the agent starts in its own unit dies with it (even a
`setsid` one), so `systemctl kill -s KILL chaos-agent` would take the watchdog along.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence

# what the transient unit needs to find the agent's modules like the agent does
PASSED_ENV = ("PYTHONPATH", "DOCKER_HOST", "PATH")


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify datagram; False when not under systemd or the send failed."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


class SystemdNotifier:
    """READY=1 once, then WATCHDOG=1 at half the unit's `WatchdogSec` (from the main loop)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.enabled = bool(self.env.get("NOTIFY_SOCKET"))
        self.interval = 0.0
        usec = self.env.get("WATCHDOG_USEC", "")
        wd_pid = self.env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not wd_pid or wd_pid == str(os.getpid())):
            self.interval = int(usec) / 1e6 / 2
        self.ready_sent = False
        self._last_ping = 0.0

    def tick(self, status: str = "") -> None:
        """Call from every main-loop iteration: a frozen loop stops the pings (on purpose)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not self.ready_sent:
            self.ready_sent = notify("READY=1\nSTATUS=" + (status or "running"), self.env)
            self._last_ping = now
            return
        if self.interval and now - self._last_ping >= self.interval:
            notify("WATCHDOG=1", self.env)
            self._last_ping = now


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    """Started by systemd as a service (INVOCATION_ID) on a host with `systemd-run`."""
    env = os.environ if env is None else env
    if not env.get("INVOCATION_ID"):
        return False
    import shutil  # only under systemd: a one-off fault elsewhere never imports it

    return shutil.which("systemd-run") is not None


def systemd_transient_argv(
    unit: str, argv: Sequence[str], env: Mapping[str, str] | None = None
) -> list[str]:
    """`systemd-run` arguments running argv as transient service `unit` (an argument list)."""
    env = os.environ if env is None else env
    args = ["systemd-run", f"--unit={unit}", "--collect", "--quiet", "--no-ask-password"]
    args += [f"--setenv={key}={env[key]}" for key in PASSED_ENV if env.get(key)]
    return [*args, "--", *argv]
