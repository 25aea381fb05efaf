"""Container lifecycle faults: kill (as a crash), stop, pause, restart.

Identity is pinned by (full id, State.StartedAt): a container that was restarted
or recreated since the record was written is left alone ("environment").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from agent.adapters import hostpid
from agent.adapters.docker_engine import DockerEngine
from agent.errors import FaultFailed, TargetGone, Unsupported
from agent.faults.base import Fault, describe_record
from agent.model import ActiveFault, HealOutcome, Target, TargetKind


def parse_started_at(text: str) -> float:
    """Docker's RFC 3339 with nanoseconds ('2026-11-26T05:30:01.123456789Z') -> unix."""
    if not text:
        return 0.0
    main, _, rest = text.partition(".")
    frac = "".join(ch for ch in rest if ch.isdigit())
    tz = rest[len(frac) :] if rest else main[19:]
    main = main[:19]
    stamp = dt.datetime.fromisoformat(main + (tz.replace("Z", "+00:00") or "+00:00"))
    return stamp.timestamp() + (float("0." + frac) if frac else 0.0)


class _ContainerFault:
    kind: TargetKind = "container"
    name = ""

    def __init__(self, docker: DockerEngine, warn: Callable[[str], None] | None = None) -> None:
        self.docker = docker
        self.warn = warn or (lambda _msg: None)

    def unavailable(self) -> str | None:
        return None

    def refuse(self, target: Target) -> str | None:
        return None

    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        return ()

    def describe(self, record: ActiveFault) -> str:
        return describe_record(self.name, record)

    # -- shared heal logic ------------------------------------------------------------
    def _inspect(self, record: ActiveFault) -> dict[str, Any] | None:
        try:
            return self.docker.inspect(record.target_id)
        except TargetGone:
            return None

    @staticmethod
    def _same_instance(info: Mapping[str, Any], record: ActiveFault) -> bool:
        return info.get("Id") == record.target_id and (
            info.get("State", {}).get("StartedAt") == record.started_at
        )

    def _ensure_running(self, record: ActiveFault, *, pinned: bool = True) -> HealOutcome:
        """Heal for faults that leave the container stopped: start it unless
        something else (a restart policy, a person) already brought it back.
        `pinned=False` when the fault itself changes StartedAt (restart)."""
        info = self._inspect(record)
        if info is None:
            return HealOutcome(True, "gone", "container no longer exists")
        state = info.get("State", {})
        same = self._same_instance(info, record) if pinned else info.get("Id") == record.target_id
        if not same:
            return HealOutcome(True, "environment", "restarted since the fault (restart policy?)")
        if state.get("Running") and not state.get("Paused"):
            return HealOutcome(True, "already", "running")
        if state.get("Restarting"):
            return HealOutcome(True, "environment", "its restart policy is restarting it")
        self.docker.start(record.target_id)
        after = self._inspect(record)
        if after is not None and after.get("State", {}).get("Running"):
            return HealOutcome(True, "healed", "started again")
        return HealOutcome(False, "failed", "started, but it is not running")


class KillFault(_ContainerFault):
    """Crash the main process by its host PID so restart policies fire (measured:
    `docker kill` through the API counts as a manual stop and disables them)."""

    name = "kill"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        signal_name = str(record.params.get("signal", "SIGKILL"))
        if record.params.get("mode", "crash") == "crash":
            try:
                hostpid.signal_container_process(
                    record.pid, parse_started_at(record.started_at), signal_name
                )
                return {"via": "host-pid"}
            except Unsupported as exc:
                self.warn(
                    f"kill {record.target_name}: {exc.message}; falling back to the Engine API "
                    "(restart policies will not fire; the agent starts it after the duration)"
                )
        self.docker.kill(record.target_id, signal_name)
        return {"via": "api"}

    def heal(self, record: ActiveFault) -> HealOutcome:
        return self._ensure_running(record)


class StopFault(_ContainerFault):
    name = "stop"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        self.docker.stop(record.target_id, float(record.params.get("timeout", 10)))
        return {}

    def heal(self, record: ActiveFault) -> HealOutcome:
        return self._ensure_running(record)


class RestartFault(_ContainerFault):
    name = "restart"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        self.docker.restart(record.target_id, float(record.params.get("timeout", 10)))
        return {}

    def heal(self, record: ActiveFault) -> HealOutcome:
        return self._ensure_running(record, pinned=False)


class PauseFault(_ContainerFault):
    name = "pause"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        self.docker.pause(record.target_id)
        return {}

    def heal(self, record: ActiveFault) -> HealOutcome:
        info = self._inspect(record)
        if info is None:
            return HealOutcome(True, "gone", "container no longer exists")
        if not self._same_instance(info, record):
            # never unpause a container we did not pause
            return HealOutcome(True, "environment", "restarted or recreated since the pause")
        if not info.get("State", {}).get("Paused"):
            return HealOutcome(True, "already", "not paused")
        error = ""
        try:
            self.docker.unpause(record.target_id)
        except FaultFailed as exc:
            error = exc.one_line()  # verified below: a concurrent unpause is success
        after = self._inspect(record)
        if after is None:
            return HealOutcome(True, "gone", "container no longer exists")
        if not after.get("State", {}).get("Paused"):
            return HealOutcome(True, "healed", "unpaused")
        return HealOutcome(False, "failed", f"still paused after unpause {error}".strip())


def container_faults(
    docker: DockerEngine, warn: Callable[[str], None] | None = None
) -> list[Fault]:
    return [
        KillFault(docker, warn),
        StopFault(docker, warn),
        PauseFault(docker, warn),
        RestartFault(docker, warn),
    ]
