"""When each fault heals, and running the heals: due times, retries with back-off, threads.

`Heals` owns the timing of heals and the threads that run them; it returns outcomes
and never writes the ledger (the engine's loop stays the only writer). A heal effect
never raises: a fault that vanished counts as healed, any other error as a failed try.

Every heal that is due gets its own thread at once, and up to MAX_PARALLEL run side by
side (the rest wait for a slot). Measured with 50 pauses due at the same instant
(benchmarks/bench_heal.py, RESULTS.md): the daemon runs one `runc` per unpause, so 50
unpauses take it 200-300 ms on a 2-core host however many are asked at once (its floor,
with no agent), and the last heal ends near that floor with 8, 16 or 64 side by side
(within the run-to-run noise); fewer side by side end the first ones earlier, more keep
slow heals (a network heal's retries, a container's start) from holding up the others.
16 is between the two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from agent.errors import AgentError, TargetGone
from agent.faults.base import FaultRegistry
from agent.model import ActiveFault, HealOutcome

MAX_PARALLEL = 16  # heals running at once; more wait for a slot (each is one thread)


class Pending(Protocol):
    """A heal that was started: done() without blocking, result() waits."""

    def done(self) -> bool: ...

    def result(self) -> HealOutcome: ...


class _Running:
    """One heal on its own thread; wakes the loop when it finishes."""

    def __init__(self, run: Callable[[], HealOutcome], slots: threading.Semaphore,
                 wake: threading.Event, name: str) -> None:  # fmt: skip
        self._run, self._slots, self._wake = run, slots, wake
        self._finished = threading.Event()
        self._outcome: HealOutcome | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            with self._slots:
                self._outcome = self._run()
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self._error = exc
        finally:
            self._finished.set()
            self._wake.set()

    def done(self) -> bool:
        return self._finished.is_set()

    def result(self) -> HealOutcome:
        self._finished.wait()
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome


def backoff(attempts: int) -> float:
    """Seconds before retrying a heal that failed `attempts` times: 1 s doubling to 30 s."""
    return min(30.0, 0.5 * 2.0 ** min(attempts, 6))


class Finished(NamedTuple):
    """A heal that ran: the record it started from, how it ended, and why it ran."""

    record: ActiveFault
    outcome: HealOutcome
    reason: str


class Heals:
    def __init__(
        self,
        registry: FaultRegistry,
        *,
        wake: threading.Event,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.wake = wake
        self.clock = clock
        self.monotonic = monotonic
        self.due: dict[str, float] = {}  # fault_id -> monotonic heal time
        self.retry_at: dict[str, float] = {}  # fault_id -> monotonic retry time
        self._slots = threading.Semaphore(MAX_PARALLEL)
        self._inflight: dict[str, tuple[Pending, ActiveFault, str]] = {}

    # -- timing ----------------------------------------------------------------------------
    def schedule(self, fault_id: str, after: float) -> None:
        self.due[fault_id] = self.monotonic() + after

    def forget(self, fault_id: str) -> None:
        self.due.pop(fault_id, None)
        self.retry_at.pop(fault_id, None)

    def failed(self, record: ActiveFault) -> None:
        """Back off before the next try of a heal that failed (record.heal_attempts tries)."""
        self.retry_at[record.fault_id] = self.monotonic() + backoff(record.heal_attempts)

    def due_now(
        self, active: Sequence[ActiveFault], lease_deadlines: Mapping[str, float]
    ) -> list[tuple[ActiveFault, str]]:
        """The records whose heal should start now, each with the reason."""
        now = self.monotonic()
        found: list[tuple[ActiveFault, str]] = []
        for record in active:
            if record.fault_id in self._inflight:
                continue
            due = self.due.get(record.fault_id)
            if due is None:  # loaded from disk: use the wall-clock deadline
                due = now + max(0.0, record.deadline - self.clock())
                self.due[record.fault_id] = due
            retry = self.retry_at.get(record.fault_id)
            if retry is not None:
                if now >= retry:
                    found.append((record, "retry"))
                continue
            if now >= due:
                found.append((record, "duration elapsed"))
            elif now >= lease_deadlines.get(record.fault_id, float("inf")):
                found.append((record, "lease deadline reached (could not renew)"))
        return found

    def next_due(self, active: Iterable[ActiveFault]) -> list[float]:
        """Monotonic times at which a waiting (not in-flight) heal becomes due."""
        now = self.monotonic()
        return [
            self.retry_at.get(a.fault_id) or self.due.get(a.fault_id, now)
            for a in active
            if a.fault_id not in self._inflight
        ]

    # -- running ---------------------------------------------------------------------------
    def effect(self, record: ActiveFault) -> HealOutcome:
        """Heal one record's effect now; never raises."""
        fault = self.registry.get(record.target_kind, record.fault)
        if fault is None:
            return HealOutcome(
                False, "failed", f"no {record.target_kind} fault {record.fault!r} here"
            )
        try:
            return fault.heal(record)
        except TargetGone as exc:
            return HealOutcome(True, "gone", exc.one_line())
        except AgentError as exc:
            return HealOutcome(False, "failed", exc.one_line())
        except Exception as exc:  # noqa: BLE001 - keep the record and retry later
            return HealOutcome(False, "failed", f"{exc.__class__.__name__}: {exc}")

    def start(self, record: ActiveFault, reason: str) -> None:
        """Run one heal on its own thread now; the loop is woken when it finishes."""
        running = _Running(
            lambda: self.effect(record), self._slots, self.wake, f"heal-{record.fault_id}"
        )
        self._inflight[record.fault_id] = (running, record, reason)

    def in_flight(self, fault_id: str) -> bool:
        return fault_id in self._inflight

    @property
    def busy(self) -> int:
        """How many heals are running."""
        return len(self._inflight)

    def any_finished(self) -> bool:
        return any(future.done() for future, _, _ in self._inflight.values())

    def collect(self, *, wait: bool = False) -> list[Finished]:
        """The heals that finished (all of them with wait=True), removed from in-flight."""
        finished: list[Finished] = []
        for fault_id, (future, record, reason) in list(self._inflight.items()):
            if not (wait or future.done()):
                continue
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - effect already catches; belt and braces
                outcome = HealOutcome(False, "failed", f"{exc.__class__.__name__}: {exc}")
            del self._inflight[fault_id]
            finished.append(Finished(record, outcome, reason))
        return finished

    def close(self) -> None:
        """Wait for the heals still running (their outcomes stay to be collected)."""
        for running, _, _ in list(self._inflight.values()):
            try:
                running.result()
            except Exception:  # noqa: BLE001, S112 - collect() reports it
                continue
