"""The leases of the faults this agent holds: acquire, renew, release, coordinator up/down.

One place keeps the lease lifecycle the engine used to spread over its steps. The keeper
asks its LeaseProvider (local or the fleet coordinator), remembers each fault's lease and
when it was last renewed, and tracks whether the coordinator answers; the engine decides
what to heal when a lease is refused or runs out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from agent.errors import AgentError, CoordinatorUnavailable, LeaseRefused
from agent.leases import GroupReport, Lease, LeaseProvider
from agent.model import ActiveFault, Plan, Target
from agent.selection import group_targets

RENEW_EVERY_MAX = 2.0  # renew at least this often, so a coordinator halt lands within 5 s


def group_report(target: Target, seen: Sequence[Target]) -> GroupReport:
    """What the coordinator is told about the target's group, from the latest discovery."""
    group = next((g for g in group_targets(seen) if g.name == target.group), None)
    # this host's share only (Swarm tasks on other nodes are their agents' to report)
    members = tuple(m for m in (group.members if group else (target,)) if not m.remote)
    return GroupReport(
        group=target.group,
        members=len(members),
        running=sum(1 for m in members if m.running),
        healthy=sum(1 for m in members if m.healthy),
    )


class LeaseKeeper:
    def __init__(
        self,
        provider: LeaseProvider,
        *,
        monotonic: Callable[[], float],
        on_down: Callable[[str], None] = lambda _m: None,
        on_up: Callable[[], None] = lambda: None,
        on_down_quiet: Callable[[str], None] | None = None,
    ) -> None:
        self.provider = provider
        self.monotonic = monotonic
        self.on_down = on_down  # told once when the coordinator stops answering
        self.on_up = on_up  # told once when it answers again
        # told instead of on_down when the caller prints the error itself (one line, not two)
        self.on_down_quiet = on_down_quiet or on_down
        self.leases: dict[str, Lease] = {}
        self.renewed_at: dict[str, float] = {}
        self.down_since: float | None = None

    @property
    def remote(self) -> bool:
        return bool(self.provider.remote)

    @property
    def down(self) -> bool:
        return self.down_since is not None

    # -- coordinator up/down ---------------------------------------------------------------
    def _down(self, exc: AgentError, *, say: bool = True) -> None:
        if self.down_since is None:
            self.down_since = self.monotonic()
            message = f"coordinator unreachable, no new faults: {exc.one_line()}"
            (self.on_down if say else self.on_down_quiet)(message)

    def _up(self) -> None:
        if self.down_since is not None:
            self.down_since = None
            self.on_up()

    def renew_every(self, lease: Lease) -> float:
        return min(RENEW_EVERY_MAX, lease.ttl / 3)

    def call_bound(self) -> float | None:
        """Seconds a coordinator call may take: until the nearest local lease deadline
        (None when no lease is held: the provider's own request timeout applies)."""
        if not self.leases:
            return None
        return min(lease.local_deadline for lease in self.leases.values()) - self.monotonic()

    def retry(self) -> None:
        """Let the next acquire ask the coordinator again (it is the reachability check)."""
        self.down_since = None

    # -- lifecycle -------------------------------------------------------------------------
    def acquire(self, plan: Plan, seen: Sequence[Target]) -> Lease:
        """A lease for the plan; LeaseRefused or CoordinatorUnavailable when there is none."""
        bound = self.call_bound()
        if bound is not None and bound <= 0:
            raise LeaseRefused("a held lease ran out: heal it before asking for another")
        try:
            return self.provider.acquire(plan, group_report(plan.target, seen), timeout=bound)
        except CoordinatorUnavailable as exc:
            self._down(exc, say=False)  # the caller reports it (once)
            raise

    def hold(self, fault_id: str, lease: Lease) -> None:
        self.leases[fault_id] = lease
        self.renewed_at[fault_id] = self.monotonic()

    def deadlines(self, skip: Callable[[str], bool] = lambda _f: False) -> dict[str, float]:
        """fault_id -> monotonic time after which the fault must heal (its lease ran out)."""
        return {fid: lease.local_deadline for fid, lease in self.leases.items() if not skip(fid)}

    def renew_due(
        self, active: Iterable[ActiveFault], skip: Callable[[str], bool]
    ) -> list[tuple[ActiveFault, str]]:
        """Renew the leases due (every min(2 s, ttl/3)); the records whose lease was refused.

        Each call is bounded by the nearest local lease deadline; a lease past its own
        deadline is not renewed (its fault heals)."""
        if not self.remote:
            return []
        refused: list[tuple[ActiveFault, str]] = []
        now = self.monotonic()
        for record in active:
            lease = self.leases.get(record.fault_id)
            if lease is None or now - self.renewed_at.get(record.fault_id, 0) < self.renew_every(
                lease
            ):
                continue
            if skip(record.fault_id):
                continue  # being healed already
            bound = self.call_bound()
            if bound is None or bound <= 0 or self.monotonic() >= lease.local_deadline:
                continue  # no time left to ask: the deadline heals it
            try:
                self.leases[record.fault_id] = self.provider.renew(lease, timeout=bound)
                self.renewed_at[record.fault_id] = now
                self._up()
            except LeaseRefused as exc:
                refused.append((record, f"lease refused on renew: {exc.one_line()}"))
            except CoordinatorUnavailable as exc:
                self._down(exc)
        return refused

    def release(self, fault_id: str) -> None:
        """Best effort: a lease that cannot be released expires by its TTL anyway."""
        lease = self.leases.pop(fault_id, None)
        self.renewed_at.pop(fault_id, None)
        if lease is None:
            return
        try:
            self.provider.release(lease, timeout=self._release_bound())
        except AgentError:
            pass

    def give_back(self, lease: Lease) -> None:
        """Release a lease that was never held by a fault (its ledger write failed)."""
        try:
            self.provider.release(lease, timeout=self._release_bound())
        except AgentError:
            pass

    def valid(self, fault_id: str) -> bool:
        """The fault's lease is held and its local deadline has not passed."""
        lease = self.leases.get(fault_id)
        return lease is not None and self.monotonic() < lease.local_deadline

    def _release_bound(self) -> float | None:
        bound = self.call_bound()
        return None if bound is None else max(0.05, bound)

    def close(self) -> None:
        self.provider.close()
