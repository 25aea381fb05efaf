"""Signal a container's main process by its host PID, as a crash would.

Standard library only (/proc and pidfd). Identity is pinned: the process must have
been created around the container's StartedAt, so a reused PID is never signalled.
Signalling through a pidfd means the process we checked is the one we hit.
"""

from __future__ import annotations

import os
import re
import signal
from functools import lru_cache

from agent.errors import TargetGone, Unsupported

# The container's init is created shortly before Docker records StartedAt.
_TOLERANCE_BEFORE = 30.0
_TOLERANCE_AFTER = 2.0


@lru_cache(maxsize=1)
def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_create_time(pid: int) -> float:
    """Wall-clock start time of `pid` (as psutil computes it), or raise TargetGone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        raise TargetGone(f"process {pid} no longer exists") from None
    # the command name may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    start_ticks = int(fields[19])
    return _boot_time() + start_ticks / os.sysconf("SC_CLK_TCK")


def signal_container_process(pid: int, started_at: float, signal_name: str) -> None:
    """Send `signal_name` to host PID `pid` if it is the process started at `started_at`.

    Raises Unsupported when the PID is not visible or belongs to another process
    (the agent does not share the host's PID namespace: run it with `pid: host`).
    """
    if pid <= 1:
        raise Unsupported("the container has no main process PID to signal")
    sig = getattr(signal, signal_name)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise Unsupported(f"host PID {pid} is not visible (run the agent with pid: host)") from None
    except OSError as exc:
        raise Unsupported(f"cannot open host PID {pid}: {exc.strerror}") from None
    try:
        created = process_create_time(pid)
        if not started_at - _TOLERANCE_BEFORE <= created <= started_at + _TOLERANCE_AFTER:
            raise Unsupported(
                f"host PID {pid} is not the container's process here (no shared PID namespace?)"
            )
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            raise TargetGone(f"process {pid} exited before the signal") from None
        except PermissionError:
            raise Unsupported(f"not permitted to signal host PID {pid} (needs root)") from None
    finally:
        os.close(pidfd)


_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def judge_identity(
    pid: int, container_id: str, cgroup: str, created: float | None, started_at: float
) -> str | None:
    """None if host PID `pid` is the container's process, else why not (pure).

    The cgroup names the container (docker/<id>, docker-<id>.scope, libpod-<id>): that
    decides. A cgroup naming another container (an engine nested in a container: its
    tasks sit under /docker/<node>/docker/<task>) is foreign. Only when the cgroup names
    no container at all does the process's create time decide, as for host-PID kills.
    """
    if container_id and container_id in cgroup:
        return None
    if (
        not _CONTAINER_ID.search(cgroup)
        and created is not None
        and started_at > 0
        and started_at - _TOLERANCE_BEFORE <= created <= started_at + _TOLERANCE_AFTER
    ):
        return None
    return (
        f"host PID {pid} is not the container's process here (the Docker engine is remote "
        "or in another PID namespace): its namespace is not entered"
    )


def identity_reason(pid: int, container_id: str, started_at: float) -> str | None:
    """`judge_identity` over /proc/<pid>: None if it is the container's process here."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
            cgroup = fh.read()
    except OSError:
        cgroup = ""
    try:
        created: float | None = process_create_time(pid)
    except (TargetGone, OSError, ValueError, IndexError):
        created = None
    return judge_identity(pid, container_id, cgroup, created, started_at)
