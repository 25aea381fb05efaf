"""What holds or ends a run from outside the schedule: the kill switch file and the
probes' stop condition (agent.probes). Each watch says what changed, once per change;
the engine decides what follows (heal all, request stop). And what outlives a run that
ends badly: the dead-man heal, stood down when a stop left nothing to heal.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

from agent.config import StopSection
from agent.voice import Voice


class ProbesLike(Protocol):
    """What the engine needs of agent.probes.ProbeRunner."""

    def start(self) -> None: ...

    def signal_stop(self) -> None: ...

    def stop(self, timeout: float | None = None) -> None: ...

    def snapshot(self) -> dict[str, dict[str, Any]]: ...

    def halt_reason(self, stop: Any, now: float | None = None) -> str | None: ...


class Deadman(Protocol):
    """An armed dead-man heal (agent.deadman) that heals if the run dies; the engine stands
    it down at a stop that left nothing to heal."""

    def terminate(self) -> None: ...


def armed_deadman(arm: Callable[[], Deadman] | None, voice: Voice) -> Deadman | None:
    """The armed dead-man heal; None when there is none or it cannot be armed (said)."""
    if arm is None:
        return None
    try:
        return arm()
    except OSError as exc:
        voice.error(f"cannot arm the dead-man heal: {exc}")
        return None


def stand_down(deadman: Deadman) -> None:
    """A stop that left nothing to heal: the dead-man heal has nothing to do."""
    with suppress(OSError):
        deadman.terminate()


class KillSwitch:
    """The local stop file: while it exists, heal all and start nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.present = False

    def check(self, voice: Voice) -> bool:
        """True while the file is present (journaled once on each change)."""
        present = self.path.exists()
        if present and not self.present:
            msg = f"kill switch {self.path} present: healing all, no new faults"
            voice.say("halt", msg, reason=msg)
        elif not present and self.present:
            voice.say("resume", "kill switch removed: resuming", reason="kill switch removed")
        self.present = present
        return present


class StopCondition:
    """The probes' stop condition: once it holds, the run is halted for good."""

    def __init__(self, probes: ProbesLike | None, stop: StopSection) -> None:
        self.probes = probes
        self.stop = stop
        self.halted = ""  # the reason, once halted

    def start(self) -> None:
        """Start the probes it watches (if any)."""
        if self.probes is not None:
            self.probes.start()

    def signal_stop(self) -> None:
        """Tell the probes to stop; they are joined later (`join`), after the heals."""
        if self.probes is not None:
            self.probes.signal_stop()

    def join(self, timeout: float) -> None:
        if self.probes is not None:
            self.probes.stop(timeout=max(0.0, timeout))

    def check(self, voice: Voice) -> str:
        """The reason when the run halts now ('' otherwise, and after the first time)."""
        if self.probes is None or self.halted:
            return ""
        reason = self.probes.halt_reason(self.stop)
        if not reason:
            return ""
        self.halted = reason
        voice.say("halt", f"stop condition: {reason}", reason=reason)
        return reason
