"""What a previous run left behind, read before anything else happens.

The ledger's records are the faults to heal first. A ledger that cannot be read (torn,
garbled) is moved aside and the journal's intents without a heal stand in for it; the
run then injects nothing (it only heals), because what the ledger held is uncertain.
After the heals, the tagged artifacts (iptables chains, tc handles) that no record owns
are swept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import AgentError, LedgerCorrupt
from agent.journal import unhealed_intents
from agent.ledger import LedgerLike
from agent.model import ActiveFault
from agent.textsafe import printable
from agent.voice import Voice

Sweep = Callable[[set[str]], list[str]]  # owned fault ids -> the leftovers it removed


@dataclass(frozen=True)
class LeftBehind:
    records: list[ActiveFault] = field(default_factory=list)
    blocked: str = ""  # non-empty: the ledger was corrupt; no new injection in this run


def left_behind(ledger: LedgerLike, journal_path: Path | None) -> LeftBehind:
    """The records to heal first: the ledger's, or the journal's when the ledger is corrupt."""
    try:
        return LeftBehind(list(ledger.load()))
    except LedgerCorrupt as exc:
        records = unhealed_intents(journal_path) if journal_path is not None else []
        moved = ledger.quarantine()
        why = f"{exc.message}; kept as {moved}; recovered {len(records)} fault(s) from the journal"
        return LeftBehind(records, blocked=why)


def sweep_leftovers(sweep: Sweep, owned: set[str], voice: Voice) -> None:
    """Remove tagged artifacts no record owns; a failed sweep is an error line, not a stop."""
    try:
        for item in sweep(owned):
            voice.say("sweep", f"removed leftover {printable(item)}", detail=item)
    except AgentError as exc:
        voice.error(f"leftover sweep failed: {exc.one_line()}")
