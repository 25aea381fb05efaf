"""After heals ran: the ledger, the leases, the journal, and back-off or the stuck mark.

The engine's heal step settles every outcome here, on its loop (the only ledger writer).
Heals that verified leave the ledger in one write and give their lease back; a heal that
failed counts an attempt on its record, backs off (agent/heals.py) and, at `stuck_after`
attempts, is marked stuck, which keeps the gate (agent/gate.py) closed until it heals.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    ) -> None:
        self.records = records
        self.heals = heals
        self.leases = leases
        self.voice = voice
        self.stuck_after = stuck_after

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
