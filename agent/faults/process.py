"""Faults on host processes: `kill` (the group's configured signal) and `pause`
(SIGSTOP, healed by SIGCONT).

The target is pinned as (pid, create_time) from its id `pid:<pid>:<create_time>`;
every signal is preceded by a PID-reuse check. A process that exited meanwhile is a
clean skip ("gone"); a PID now held by another process is never signalled
("environment"). PID 1 and the agent's own process tree are refused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from agent.adapters import processes
from agent.config import Config, ProcessGroup
from agent.errors import AgentError, IdentityChanged, TargetGone
from agent.faults.base import Fault, describe_record
from agent.model import ActiveFault, HealOutcome, Target, TargetKind


def _identity(record: ActiveFault) -> tuple[int, float]:
    pid, create_time = processes.parse_process_id(record.target_id)
    if record.pid and record.pid != pid:
        raise IdentityChanged(f"record PID {record.pid} differs from its target id")
    return pid, create_time


class _ProcessFault:
    name = ""
    kind: TargetKind = "process"

    def __init__(
        self, groups: tuple[ProcessGroup, ...] = (), *, self_pid: int | None = None
    ) -> None:
        self.groups = {g.group: g for g in groups}
        self.self_pid = self_pid if self_pid is not None else os.getpid()

    def unavailable(self) -> str | None:
        return None

    def refuse(self, target: Target) -> str | None:
        if target.kind != "process":
            return "not a host process"
        try:
            pid, create_time = processes.parse_process_id(target.id)
            processes.pinned(pid, create_time, self_pid=self.self_pid)
        except AgentError as exc:
            return exc.one_line()
        return None

    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        return ()

    def describe(self, record: ActiveFault) -> str:
        return describe_record(self.name, record)

    def _signal(self, record: ActiveFault, signal_name: str) -> None:
        pid, create_time = _identity(record)
        processes.send_signal(pid, create_time, signal_name, self_pid=self.self_pid)


class ProcessKill(_ProcessFault):
    """Send the group's signal (default SIGKILL). Nothing to undo: the service's
    supervisor (systemd, ...) is what is being tested."""

    name = "kill"

    def _signal_name(self, record: ActiveFault) -> str:
        explicit = record.params.get("signal")
        if explicit:
            return str(explicit)
        group = self.groups.get(record.group)
        return group.signal if group else "SIGKILL"

    def describe(self, record: ActiveFault) -> str:
        return f"kill {record.target_name} ({record.group}) with {self._signal_name(record)}"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        signal_name = self._signal_name(record)
        self._signal(record, signal_name)
        return {"signal": signal_name}

    def heal(self, record: ActiveFault) -> HealOutcome:
        try:
            _identity(record)
            pid, create_time = processes.parse_process_id(record.target_id)
            processes.pinned(pid, create_time)
        except TargetGone:
            return HealOutcome(True, "gone", f"{record.target_name} exited")
        except IdentityChanged as exc:
            return HealOutcome(True, "environment", exc.message)
        except AgentError as exc:
            return HealOutcome(False, "failed", exc.one_line())
        return HealOutcome(True, "already", "the process survived the signal")


class ProcessPause(_ProcessFault):
    """SIGSTOP the process; heal sends SIGCONT (always, even if it looks running)."""

    name = "pause"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        self._signal(record, "SIGSTOP")
        return {"signal": "SIGSTOP"}

    def heal(self, record: ActiveFault) -> HealOutcome:
        try:
            pid, create_time = _identity(record)
            processes.send_signal(pid, create_time, "SIGCONT", self_pid=self.self_pid)
            deadline = time.monotonic() + 1.0  # delivery is asynchronous: verify, briefly
            while processes.is_stopped(pid, create_time):
                if time.monotonic() > deadline:
                    return HealOutcome(False, "failed", f"{record.target_name} is still stopped")
                time.sleep(0.02)
        except TargetGone:
            return HealOutcome(True, "gone", f"{record.target_name} exited")
        except IdentityChanged as exc:
            return HealOutcome(True, "environment", exc.message)
        except AgentError as exc:
            return HealOutcome(False, "failed", exc.one_line())
        return HealOutcome(True, "healed", f"SIGCONT sent to {record.target_name}")


def process_faults(config: Config) -> list[Fault]:
    return [ProcessKill(config.processes), ProcessPause(config.processes)]
