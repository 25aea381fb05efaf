"""Leases: permission to inject one fault, local or from the fleet coordinator.

The engine asks a LeaseProvider before writing the ledger; no lease, no injection.
A Lease carries a fencing token that only grows and a local deadline on the
monotonic clock that ends before the grantor's TTL, so an agent that cannot
renew heals on its own before the coordinator would hand the slot to someone else.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.model import Plan


@dataclass(frozen=True)
class GroupReport:
    """What an agent tells the coordinator about the group it wants to fault."""

    group: str
    members: int
    running: int
    healthy: int


@dataclass(frozen=True)
class Lease:
    lease_id: str
    token: int  # fencing token: strictly increasing per grant
    ttl: float  # seconds the grantor keeps it without a renew
    local_deadline: float  # time.monotonic() value after which the agent must heal
    info: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"lease_id": self.lease_id, "token": self.token, "ttl": self.ttl, **dict(self.info)}


class LeaseProvider(Protocol):
    """acquire/renew raise LeaseRefused (a no) or CoordinatorUnavailable (no answer).

    `timeout` bounds one call (seconds; None: the provider's own request timeout)."""

    remote: bool

    def acquire(
        self, plan: Plan, report: GroupReport, *, timeout: float | None = None
    ) -> Lease: ...

    def renew(self, lease: Lease, *, timeout: float | None = None) -> Lease: ...

    def release(self, lease: Lease, *, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


class LocalLeases:
    """No coordinator: local limits (checked by the planner) are the only ones."""

    remote = False

    def __init__(self) -> None:
        self._tokens = itertools.count(1)

    def acquire(self, plan: Plan, report: GroupReport, *, timeout: float | None = None) -> Lease:
        token = next(self._tokens)
        ttl = plan.duration_s + 3600.0
        return Lease(f"local-{token}", token, ttl, time.monotonic() + ttl)

    def renew(self, lease: Lease, *, timeout: float | None = None) -> Lease:
        return lease

    def release(self, lease: Lease, *, timeout: float | None = None) -> None:
        return None

    def close(self) -> None:
        return None
