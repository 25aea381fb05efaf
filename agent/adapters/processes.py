"""Host processes: the only module that imports psutil.

A process is pinned as (pid, create_time): every signal is preceded by a check that
the PID still belongs to the process that was recorded (PID reuse). A process that
exited meanwhile is TargetGone, a clean skip. PID 1 and the agent's own process tree
(itself, its ancestors, its descendants) are never targets, nor the fleet coordinator's
processes and the sshd processes serving them.
"""

from __future__ import annotations

import re
import signal as signal_mod
from collections.abc import Iterable

import psutil

from agent.config import ProcessGroup
from agent.errors import FaultFailed, IdentityChanged, NotEligible, TargetGone
from agent.model import Target


def process_id(pid: int, create_time: float) -> str:
    return f"pid:{pid}:{create_time!r}"


def parse_process_id(target_id: str) -> tuple[int, float]:
    """'pid:<pid>:<create_time>' -> (pid, create_time)."""
    parts = target_id.split(":")
    if len(parts) != 3 or parts[0] != "pid":
        raise FaultFailed(f"not a process target id: {target_id!r}")
    try:
        return int(parts[1]), float(parts[2])
    except ValueError:
        raise FaultFailed(f"not a process target id: {target_id!r}") from None


def protected_pids(self_pid: int) -> set[int]:
    """PID 1, the agent, its ancestors and its descendants."""
    pids = {1, self_pid}
    try:
        me = psutil.Process(self_pid)
        pids.update(p.pid for p in me.parents())
        pids.update(p.pid for p in me.children(recursive=True))
    except psutil.Error:
        pass
    return pids


def _is_coordinator(cmdline: list[str]) -> bool:
    """`python -m agent.coordinator ...` or `chaos-agent coordinator ...`."""
    for i, word in enumerate(cmdline[:-1]):
        if word == "-m" and cmdline[i + 1].split(".")[:2] == ["agent", "coordinator"]:
            return True
    return (
        len(cmdline) > 1
        and cmdline[0].rsplit("/", 1)[-1] == "chaos-agent"
        and cmdline[1] == "coordinator"
    )


def _serving(coordinators: Iterable[psutil.Process]) -> set[int]:
    """Coordinator processes, the sshd processes above them (not PID 1) and their children."""
    pids: set[int] = set()
    for proc in coordinators:
        pids.add(proc.pid)
        try:
            pids.update(parent.pid for parent in proc.parents() if parent.pid != 1)
            pids.update(child.pid for child in proc.children(recursive=True))
        except psutil.Error:
            pass
    return pids


def serves_coordinator(proc: psutil.Process) -> bool:
    """`proc` is a coordinator process, runs under one, or is above one (its sshd)."""
    try:
        family = [proc, *proc.parents(), *proc.children(recursive=True)]
        return any(_is_coordinator(p.cmdline()) for p in family if p.pid != 1)
    except psutil.Error:
        return False


def _env_matches(proc: psutil.Process, env: str) -> bool:
    name, _, value = env.partition("=")
    try:
        return proc.environ().get(name) == value
    except (psutil.AccessDenied, psutil.ZombieProcess, psutil.NoSuchProcess, OSError):
        return False


def _matches(proc: psutil.Process, group: ProcessGroup, cmdline: str) -> bool:
    if group.match and not re.search(group.match, cmdline):
        return False
    return not group.env or _env_matches(proc, group.env)


def discover_processes(groups: Iterable[ProcessGroup], *, self_pid: int) -> list[Target]:
    """Processes matching the configured groups (first matching group wins)."""
    groups = tuple(groups)
    if not groups:
        return []
    never = protected_pids(self_pid)
    targets: list[Target] = []
    coordinators: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "create_time", "status"]):
        info = proc.info
        pid = int(info["pid"])
        if _is_coordinator(info.get("cmdline") or []):
            coordinators.append(proc)
        if pid in never or not info.get("cmdline"):
            continue  # kernel threads have no command line
        cmdline = " ".join(info["cmdline"])
        for group in groups:
            if not _matches(proc, group, cmdline):
                continue
            status = info.get("status")
            if status == psutil.STATUS_ZOMBIE:
                break
            targets.append(
                Target(
                    kind="process",
                    id=process_id(pid, info["create_time"]),
                    name=f"{info.get('name') or '?'}[{pid}]",
                    group=group.group,
                    state="paused" if status == psutil.STATUS_STOPPED else "running",
                    allowed_faults=frozenset(group.faults),
                    pid=pid,
                )
            )
            break
    if coordinators:  # never the fleet coordinator, nor the sshd serving it
        excluded = _serving(coordinators)
        targets = [t for t in targets if t.pid not in excluded]
    return targets


def pinned(pid: int, create_time: float, *, self_pid: int | None = None) -> psutil.Process:
    """The process, if (pid, create_time) still names it; else TargetGone/IdentityChanged."""
    if pid <= 1:
        raise NotEligible(f"PID {pid} is never a target")
    if self_pid is not None and pid in protected_pids(self_pid):
        raise NotEligible(f"PID {pid} is the agent or part of its process tree")
    try:
        proc = psutil.Process(pid)
        now = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:
            raise TargetGone(f"process {pid} has exited")
    except psutil.NoSuchProcess:
        raise TargetGone(f"process {pid} has exited") from None
    if abs(now - create_time) > 0.01:
        raise IdentityChanged(
            f"PID {pid} now belongs to another process (created {now:.2f}, "
            f"recorded {create_time:.2f})"
        )
    if self_pid is not None and serves_coordinator(proc):  # inject only: heal always may
        raise NotEligible(f"PID {pid} is the fleet coordinator or serves it")
    return proc


def send_signal(pid: int, create_time: float, signal_name: str, *, self_pid: int) -> None:
    """Check identity, then signal. The check and the kill are as close as psutil allows:
    psutil.Process.send_signal re-checks the create time itself (is_running)."""
    proc = pinned(pid, create_time, self_pid=self_pid)
    try:
        sig = signal_mod.Signals[signal_name]
    except KeyError:
        raise FaultFailed(f"unknown signal {signal_name!r}") from None
    try:
        proc.send_signal(sig)
    except psutil.NoSuchProcess:
        raise TargetGone(f"process {pid} has exited") from None
    except psutil.AccessDenied:
        raise FaultFailed(f"not allowed to signal process {pid}") from None


def is_stopped(pid: int, create_time: float) -> bool:
    """True if the pinned process is stopped (SIGSTOP); TargetGone if it has exited."""
    proc = pinned(pid, create_time)
    try:
        return proc.status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        raise TargetGone(f"process {pid} has exited") from None
