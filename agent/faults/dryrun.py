"""Dry run: a fault that decides and journals like the real one and touches nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.faults.base import Fault
from agent.model import ActiveFault, HealOutcome, Target


class DryRunFault:
    """Wraps a real fault: decides and journals, touches nothing."""

    def __init__(self, inner: Fault, log: Callable[[str], None]) -> None:
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.log = log

    def unavailable(self) -> str | None:
        return self.inner.unavailable()

    def refuse(self, target: Target) -> str | None:
        return self.inner.refuse(target)

    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        return tuple(self.inner.artifacts(fault_id, target, params))

    def describe(self, record: ActiveFault) -> str:
        return self.inner.describe(record)

    def inject(self, record: ActiveFault) -> dict[str, Any]:
        self.log(f"dry-run: would {self.inner.describe(record)}")
        return {"dry_run": True}

    def heal(self, record: ActiveFault) -> HealOutcome:
        return HealOutcome(True, "healed", "dry-run: nothing was touched")
