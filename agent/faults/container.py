"""Container lifecycle faults: kill (as a crash), stop, pause, restart.

Identity is pinned by (full id, State.StartedAt): a container that was restarted
or recreated since the record was written is left alone ("environment").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from agent.adapters import hostpid
from agent.errors import FaultFailed, TargetGone, Unsupported
from agent.fault_params import param, seconds
from agent.faults.base import Fault, describe_record
from agent.faults.ports import ContainerLifecycle
from agent.model import ActiveFault, ContainerState, HealOutcome, Target, TargetKind


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

    def __init__(
        self, docker: ContainerLifecycle, warn: Callable[[str], None] | None = None
    ) -> None:
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
    def _state(self, record: ActiveFault) -> ContainerState | None:
        try:
            return self.docker.state(record.target_id)
        except TargetGone:
            return None

    def _ensure_running(self, record: ActiveFault, *, pinned: bool = True) -> HealOutcome:
        """Heal for faults that leave the container stopped: start it unless
        something else (a restart policy, a person) already brought it back.
        `pinned=False` when the fault itself changes StartedAt (restart)."""
        st = self._state(record)
        if st is None:
            return HealOutcome(True, "gone", "container no longer exists")
        same = st.same_instance(record) if pinned else st.id == record.target_id
        if not same:
            return HealOutcome(True, "environment", "restarted since the fault (restart policy?)")
        if st.running and not st.paused:
            return HealOutcome(True, "already", "running")
        if st.restarting:
            return HealOutcome(True, "environment", "its restart policy is restarting it")
        self.docker.start(record.target_id)
        after = self._state(record)
        if after is not None and after.running:
            return HealOutcome(True, "healed", "started again")
        return HealOutcome(False, "failed", "started, but it is not running")


class ContainerKill(_ContainerFault):
    """Crash the main process by its host PID so restart policies fire (measured:
    `docker kill` through the API counts as a manual stop and disables them)."""

    name = "kill"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        signal_name = str(param(record.params, "kill", "signal"))
        if param(record.params, "kill", "mode") == "crash":
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


class ContainerStop(_ContainerFault):
    name = "stop"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        self.docker.stop(record.target_id, seconds(record.params, "stop", "timeout"))
        return {}

    def heal(self, record: ActiveFault) -> HealOutcome:
        return self._ensure_running(record)


class ContainerRestart(_ContainerFault):
    name = "restart"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        self.docker.restart(record.target_id, seconds(record.params, "restart", "timeout"))
        return {}

    def heal(self, record: ActiveFault) -> HealOutcome:
        return self._ensure_running(record, pinned=False)


class ContainerPause(_ContainerFault):
    name = "pause"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        self.docker.pause(record.target_id)
        return {}

    def heal(self, record: ActiveFault) -> HealOutcome:
        st = self._state(record)
        if st is None:
            return HealOutcome(True, "gone", "container no longer exists")
        if not st.same_instance(record):
            # never unpause a container we did not pause
            return HealOutcome(True, "environment", "restarted or recreated since the pause")
        if not st.paused:
            return HealOutcome(True, "already", "not paused")
        error = ""
        try:
            self.docker.unpause(record.target_id)
        except FaultFailed as exc:
            error = exc.one_line()  # verified below: a concurrent unpause is success
        after = self._state(record)
        if after is None:
            return HealOutcome(True, "gone", "container no longer exists")
        if not after.paused:
            return HealOutcome(True, "healed", "unpaused")
        return HealOutcome(False, "failed", f"still paused after unpause {error}".strip())


def container_faults(
    docker: ContainerLifecycle, warn: Callable[[str], None] | None = None
) -> list[Fault]:
    return [
        ContainerKill(docker, warn),
        ContainerStop(docker, warn),
        ContainerPause(docker, warn),
        ContainerRestart(docker, warn),
    ]
