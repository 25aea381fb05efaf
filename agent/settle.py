"""The engine's heal step: heals run (agent/heals.py: now, or on the pool), then their
outcomes settle here: the ledger, the leases, the journal, and back-off or the stuck mark.

Everything here runs on the engine's loop, the only ledger writer. Heals that verified
leave the ledger in one write and give their lease back; a heal that failed counts an
attempt on its record, backs off and, at `stuck_after` attempts, is marked stuck, which
keeps the gate (agent/gate.py) closed until it heals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agent.heals import Finished, Heals
from agent.journal import fault_fields
from agent.lease_keeper import LeaseKeeper
from agent.ledger import ActiveFaults
from agent.model import ActiveFault, HealOutcome
from agent.textsafe import printable
from agent.voice import Voice


class Settler:
    def __init__(
        self,
        records: ActiveFaults,
        heals: Heals,
        leases: LeaseKeeper,
        voice: Voice,
        *,
        stuck_after: int,
        monotonic: Callable[[], float],
    ) -> None:
        self.records = records
        self.heals = heals
        self.leases = leases
        self.voice = voice
        self.stuck_after = stuck_after
        self.monotonic = monotonic

    # -- run heals ----------------------------------------------------------------------
    def heal_now(self, record: ActiveFault, reason: str) -> HealOutcome:
        """Heal one record on this thread and settle it at once."""
        outcome = self.heals.effect(record)
        self.settle([Finished(record, outcome, reason)])
        return outcome

    def start_due(self) -> None:
        """Settle finished heals, then start the heals that are due (on the pool)."""
        self.collect()
        deadlines = self.leases.deadlines()
        for record, reason in self.heals.due_now(list(self.records.faults), deadlines):
            self.heals.start(record, reason)

    def collect(self, *, wait: bool = False) -> None:
        """Settle the heals that finished (all of them with wait=True)."""
        finished = self.heals.collect(wait=wait)
        current = {a.fault_id: a for a in self.records.faults}  # heal_attempts may have grown
        self.settle([f._replace(record=current.get(f.record.fault_id, f.record)) for f in finished])

    def heal_all(self, reason: str, *, budget: float | None = None, passes: int = 1) -> bool:
        """Heal every active fault in parallel on the pool, then one ledger write, so heals
        due together are not late by each other; True if none is left."""
        end = None if budget is None else self.monotonic() + budget
        for _ in range(passes):
            if not self.records.faults or (end is not None and self.monotonic() > end):
                break
            self.collect(wait=True)  # never two heals of one record at once
            for record in list(self.records.faults):
                self.heals.start(record, reason)
            self.collect(wait=True)
        return not self.records.faults

    # -- settle -------------------------------------------------------------------------

    def settle(self, results: Sequence[Finished]) -> None:
        """One ledger write for all healed; then each failure is counted."""
        healed = [f for f in results if f.outcome.healed]
        if healed:
            self.records.remove(*(f.record.fault_id for f in healed))
        for record, outcome, reason in healed:
            self.heals.forget(record.fault_id)
            self.leases.release(record.fault_id)
            event = "healed_by_environment" if outcome.how == "environment" else "heal"
            swarm = {} if outcome.converged_s is None else {"converged_s": outcome.converged_s}
            name = printable(record.target_name)
            self.voice.say(
                event, f"healed {record.fault} {name}: {outcome.how} ({reason})",
                how=outcome.how, detail=outcome.detail, reason=reason,
                **swarm, **fault_fields(record),
            )  # fmt: skip
        for record, outcome, _reason in results:
            if not outcome.healed:
                self.failed(record, outcome)

    def failed(self, record: ActiveFault, outcome: HealOutcome) -> None:
        attempts = record.heal_attempts + 1
        updated = record.evolve(heal_attempts=attempts, last_error=outcome.detail, status="healing")
        if any(a.fault_id == record.fault_id for a in self.records.faults):
            self.records.replace(updated)
        self.heals.failed(updated)
        name, detail = printable(record.target_name), printable(outcome.detail)
        self.voice.say(
            "heal_failed", f"heal of {record.fault} {name} failed ({attempts}): {detail}",
            attempts=attempts, detail=outcome.detail, **fault_fields(record),
        )  # fmt: skip
        if attempts == self.stuck_after:
            line = f"error: heal of {record.fault} {name} is stuck; no new faults until cleared"
            self.voice.say("stuck", line, attempts=attempts, **fault_fields(record))
