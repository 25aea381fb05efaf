"""When each fault heals, and running the heals: due times, retries with back-off, the pool.

`Heals` owns the timing of heals and the threads that run them; it returns outcomes
and never writes the ledger (the engine's loop stays the only writer). A heal effect
never raises: a fault that vanished counts as healed, any other error as a failed try.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from agent.errors import AgentError, TargetGone
from agent.faults.base import FaultRegistry
from agent.model import ActiveFault, HealOutcome

POOL_SIZE = 8  # heals due together run side by side; one slow heal never makes the next late


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
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[str, tuple[Future[HealOutcome], ActiveFault, str]] = {}

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
        """Run one heal on the pool; the loop is woken when it finishes."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="heal")
        future = self._pool.submit(self.effect, record)
        self._inflight[record.fault_id] = (future, record, reason)
        future.add_done_callback(lambda _f: self.wake.set())

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
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
