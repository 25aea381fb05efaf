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


def group_report(target: Target, seen: Sequence[Target]) -> GroupReport:
    """What the coordinator is told about the target's group, from the latest discovery."""
    group = next((g for g in group_targets(seen) if g.name == target.group), None)
    members = group.members if group else (target,)
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
    ) -> None:
        self.provider = provider
        self.monotonic = monotonic
        self.on_down = on_down  # told once when the coordinator stops answering
        self.on_up = on_up  # told once when it answers again
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
    def _down(self, exc: AgentError) -> None:
        if self.down_since is None:
            self.down_since = self.monotonic()
            self.on_down(f"coordinator unreachable, no new faults: {exc.one_line()}")

    def _up(self) -> None:
        if self.down_since is not None:
            self.down_since = None
            self.on_up()

    def retry(self) -> None:
        """Let the next acquire ask the coordinator again (it is the reachability probe)."""
        self.down_since = None

    # -- lifecycle -------------------------------------------------------------------------
    def acquire(self, plan: Plan, seen: Sequence[Target]) -> Lease:
        """A lease for the plan; LeaseRefused or CoordinatorUnavailable when there is none."""
        try:
            return self.provider.acquire(plan, group_report(plan.target, seen))
        except CoordinatorUnavailable as exc:
            self._down(exc)
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
        """Renew the leases a third of their TTL old; the records whose lease was refused."""
        if not self.remote:
            return []
        refused: list[tuple[ActiveFault, str]] = []
        now = self.monotonic()
        for record in active:
            lease = self.leases.get(record.fault_id)
            if lease is None or now - self.renewed_at.get(record.fault_id, 0) < lease.ttl / 3:
                continue
            if skip(record.fault_id):
                continue  # being healed already
            try:
                self.leases[record.fault_id] = self.provider.renew(lease)
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
            self.provider.release(lease)
        except AgentError:
            pass

    def give_back(self, lease: Lease) -> None:
        """Release a lease that was never held by a fault (its ledger write failed)."""
        self.provider.release(lease)

    def close(self) -> None:
        self.provider.close()
