"""The one orchestrator: tick, inject when due, heal when due, heal all on stop,
reconcile the ledger on start.

Each step to an injection fails closed: no lease, no ledger write, no identity,
no injection. Signal handlers only set a flag; healing runs in the main loop.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.config import Config
from agent.errors import (
    AgentError,
    CoordinatorUnavailable,
    FaultFailed,
    LeaseRefused,
    LedgerCorrupt,
    LedgerError,
    NotEligible,
    TargetGone,
    TargetNotFound,
    Unsupported,
    UsageError,
)
from agent.faults.base import Fault, FaultRegistry
from agent.journal import Journal, fault_fields, read_journal
from agent.leases import GroupReport, Lease, LeaseProvider
from agent.model import ActiveFault, HealOutcome, PastFault, Plan, Skip, Target
from agent.planner import Timing, next_gap, plan
from agent.selection import Policy, Verdict, describe_selection, evaluate, group_targets
from agent.textsafe import printable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_HALTED = 3  # the stop condition (probes) halted the run


class LedgerLike(Protocol):
    def load(self) -> list[ActiveFault]: ...

    def save(self, faults: list[ActiveFault]) -> None: ...

    def quarantine(self) -> Any: ...


class MemoryLedger:
    """Dry-run ledger: the planner still sees its (pretend) active faults."""

    def __init__(self) -> None:
        self.faults: list[ActiveFault] = []

    def load(self) -> list[ActiveFault]:
        return list(self.faults)

    def save(self, faults: list[ActiveFault]) -> None:
        self.faults = list(faults)

    def quarantine(self) -> None:
        return None


class ProbesLike(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def snapshot(self) -> dict[str, dict[str, Any]]: ...

    def halt_reason(self, stop: Any, now: float | None = None) -> str | None: ...


@dataclass
class Pinned:
    """A target's identity read right before inject."""

    started_at: str
    pid: int


@dataclass
class _Runtime:
    due: dict[str, float] = field(default_factory=dict)  # fault_id -> monotonic heal time
    retry_at: dict[str, float] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    renewed_at: dict[str, float] = field(default_factory=dict)


def new_fault_id() -> str:
    return secrets.token_hex(6)


class Engine:
    def __init__(
        self,
        *,
        config: Config,
        registry: FaultRegistry,
        policy: Policy,
        timing: Timing,
        discover: Callable[[], list[Target]],
        pin: Callable[[Target], Pinned],
        ledger: LedgerLike,
        journal: Journal,
        leases: LeaseProvider,
        rng: random.Random,
        dry_run: bool = False,
        probes: ProbesLike | None = None,
        sweep: Callable[[set[str]], list[str]] | None = None,
        start_watchdog: Callable[[], Any] | None = None,
        log: Callable[[str], None] = lambda _m: None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.registry = registry
        self.policy = policy
        self.timing = timing
        self.discover = discover
        self.pin = pin
        self.ledger = ledger
        self.journal = journal
        self.leases = leases
        self.rng = rng
        self.dry_run = dry_run
        self.probes = probes
        self.sweep = sweep
        self.start_watchdog = start_watchdog
        self.log = log
        self.clock = clock
        self.monotonic = monotonic
        self.active: list[ActiveFault] = []
        self.history: list[PastFault] = []
        self.rt = _Runtime()
        self.wake = threading.Event()
        self.stop_requested = ""
        self.inject_blocked = ""  # non-empty: no new injections (corrupt ledger, halt)
        self.halted = ""
        self.next_attempt: float | None = None
        self.last_verdicts: list[Verdict] = []
        self._watchdog: Any = None
        self._kill_switch_seen = False
        self._coordinator_down_since: float | None = None
        self._last_error = ""
        # heals due in the loop run on a small pool so one slow heal never makes
        # the next one late; the loop stays the only writer of the ledger
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[str, tuple[Future[HealOutcome], ActiveFault, str]] = {}

    # -- signals -----------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Safe to call from a signal handler: only sets a flag and wakes the loop."""
        self.stop_requested = reason
        self.wake.set()

    # -- ledger ------------------------------------------------------------------------
    def _save(self, faults: list[ActiveFault]) -> None:
        self.ledger.save(faults)
        self.active = list(faults)

    def _replace(self, record: ActiveFault) -> None:
        faults = [record if a.fault_id == record.fault_id else a for a in self.active]
        try:
            self._save(faults)
        except LedgerError as exc:  # the intent is on disk already; keep going
            self.active = faults
            self._error(f"ledger update failed: {exc.message}")

    def _remove(self, *fault_ids: str) -> None:
        faults = [a for a in self.active if a.fault_id not in fault_ids]
        try:
            self._save(faults)
        except LedgerError as exc:
            self.active = faults
            self._error(f"ledger update failed (the record stays on disk): {exc.message}")
        for fault_id in fault_ids:
            for table in (self.rt.due, self.rt.retry_at, self.rt.leases, self.rt.renewed_at):
                table.pop(fault_id, None)

    def _error(self, message: str) -> None:
        if message != self._last_error:
            self.log(f"error: {message}")
            self.journal.write("error", message=message)
        self._last_error = message

    # -- start-up reconciliation ---------------------------------------------------------
    def recover(self) -> list[tuple[ActiveFault, HealOutcome]]:
        """Heal everything a previous run left behind, then sweep tagged leftovers."""
        try:
            records = self.ledger.load()
        except LedgerCorrupt as exc:
            records = self._records_from_journal()
            moved = self.ledger.quarantine()
            self.inject_blocked = f"{exc.message}; kept as {moved}; recovered {len(records)} fault(s) from the journal"
            self.log(f"error: {self.inject_blocked}")
            self.journal.write("error", message=self.inject_blocked)
        self.active = list(records)
        results = []
        for record in list(self.active):
            self.journal.write("recover", **fault_fields(record))
            results.append((record, self.heal(record, reason="recovered after restart")))
        if self.sweep is not None:
            owned = {a.fault_id for a in self.active}
            try:
                for item in self.sweep(owned):
                    self.log(f"removed leftover {printable(item)}")
                    self.journal.write("sweep", detail=item)
            except AgentError as exc:
                self._error(f"leftover sweep failed: {exc.one_line()}")
        return results

    def _records_from_journal(self) -> list[ActiveFault]:
        """Intent records with no later heal: what a corrupt ledger held."""
        if self.journal.path is None:
            return []
        open_: dict[str, ActiveFault] = {}
        for event in read_journal(self.journal.path):
            kind = event.get("event")
            if (
                kind == "intent"
                and isinstance(event.get("record"), dict)
                and not event.get("dry_run")
            ):
                try:
                    record = ActiveFault.from_json(event["record"])
                except (TypeError, ValueError):
                    continue
                open_[record.fault_id] = record
            elif kind in ("heal", "healed_by_environment") and event.get("fault_id"):
                open_.pop(str(event["fault_id"]), None)
        return list(open_.values())

    # -- discovery and planning ------------------------------------------------------------
    def evaluate(self, targets: Sequence[Target] | None = None) -> list[Verdict]:
        found = list(targets) if targets is not None else self.discover()
        self.last_verdicts = evaluate(found, self.active, self.policy)
        return self.last_verdicts

    def describe(self) -> str:
        return describe_selection(self.last_verdicts, self.policy)

    def decide(self, targets: Sequence[Target]) -> Plan | Skip:
        return plan(
            targets, self.active, self.history, self.policy, self.timing, self.clock(), self.rng
        )

    def attempt(self) -> ActiveFault | None:
        """One scheduled attempt: discover, decide, and apply (or journal why not)."""
        if self.inject_blocked:
            self._skip(f"injection blocked: {self.inject_blocked}")
            return None
        if self._coordinator_down_since is not None:
            # fail closed: nothing new while the coordinator is unreachable
            self._skip("coordinator unreachable: no new faults")
            return None
        try:
            targets = self.discover()
        except AgentError as exc:
            self._skip(f"discovery failed: {exc.one_line()}")
            return None
        self.evaluate(targets)
        decision = self.decide(targets)
        if isinstance(decision, Skip):
            self._skip(decision.reason)
            return None
        self.journal.write(
            "plan",
            fault=decision.fault,
            container=decision.target.name,
            container_id=decision.target.id,
            group=decision.target.group,
            duration=decision.duration_s,
        )
        try:
            return self.apply(decision)
        except AgentError as exc:
            self._skip(f"{decision.fault} {decision.target.name}: {exc.one_line()}")
            return None

    def _skip(self, reason: str) -> None:
        self.log(f"not faulting: {printable(reason, 300)}")
        self.journal.write("skip", reason=reason)

    # -- inject ----------------------------------------------------------------------------
    def apply(self, decision: Plan) -> ActiveFault:
        """lease -> ledger -> inject -> journal. Raises AgentError when refused."""
        target = decision.target
        fault = self._fault(target.kind, decision.fault)
        missing = fault.unavailable()
        if missing:
            raise Unsupported(f"{decision.fault} is not available on this host: {missing}")
        refusal = fault.refuse(target)
        if refusal:
            raise NotEligible(f"{decision.fault} refused on {target.name}: {refusal}")
        pinned = self.pin(target)  # fresh identity right before inject
        fault_id = new_fault_id()
        group = next(
            (g for g in group_targets(self._targets_like(target)) if g.name == target.group), None
        )
        # this host's share only (Swarm tasks on other nodes are their agents' to report)
        members = tuple(m for m in (group.members if group else (target,)) if not m.remote)
        report = GroupReport(
            group=target.group,
            members=len(members),
            running=sum(1 for m in members if m.running),
            healthy=sum(1 for m in members if m.healthy),
        )
        try:
            lease = self.leases.acquire(decision, report)
        except CoordinatorUnavailable as exc:
            self._coordinator_down(exc)
            raise
        now = self.clock()
        record = ActiveFault(
            fault_id=fault_id,
            fault=decision.fault,
            target_kind=target.kind,
            target_id=target.id,
            target_name=target.name,
            group=target.group,
            injected_at=now,
            deadline=now + decision.duration_s,
            started_at=pinned.started_at,
            pid=pinned.pid,
            params=dict(decision.params),
            artifacts=tuple(fault.artifacts(fault_id, target, decision.params)),
            status="injecting",
            lease=lease.to_json(),
        )
        try:
            self._save([*self.active, record])  # write-ahead: durable before the effect
        except LedgerError:
            self.leases.release(lease)
            raise
        self.rt.leases[fault_id] = lease
        self.rt.renewed_at[fault_id] = self.monotonic()
        self.rt.due[fault_id] = self.monotonic() + decision.duration_s
        self.journal.write("intent", record=record.to_json(), **fault_fields(record))
        if self.start_watchdog is not None and self._watchdog is None:
            try:
                self._watchdog = self.start_watchdog()
            except OSError as exc:
                self._error(f"cannot start the heal watchdog: {exc}")
        self.history.append(PastFault(decision.fault, target.id, target.group, now))
        try:
            extra = fault.inject(record)
        except TargetGone as exc:
            self.journal.write("inject_failed", error=exc.one_line(), **fault_fields(record))
            self.heal(record, reason="target vanished during inject")
            raise
        except AgentError as exc:
            self.journal.write("inject_failed", error=exc.one_line(), **fault_fields(record))
            self.heal(record, reason="inject failed: roll back")
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in a fault must still roll back
            error = FaultFailed(f"{decision.fault} failed: {exc.__class__.__name__}: {exc}")
            self.journal.write("inject_failed", error=error.one_line(), **fault_fields(record))
            self.heal(record, reason="inject failed: roll back")
            raise error from None
        record = record.evolve(status="active", extra=dict(extra))
        self._replace(record)
        self.log(f"injected {printable(fault.describe(record))} [{fault_id}]")
        self.journal.write("inject", extra=dict(extra), **fault_fields(record))
        return record

    def _targets_like(self, target: Target) -> list[Target]:
        by_group = [v.target for v in self.last_verdicts if v.target.group == target.group]
        return by_group or [target]

    def _fault(self, kind: str, name: str) -> Fault:
        fault = self.registry.get(kind, name)
        if fault is None:
            known = ", ".join(sorted(self.registry.names(kind))) or "none"
            raise UsageError(f"unknown {kind} fault {name!r} (known: {known})")
        return fault

    # -- heal ------------------------------------------------------------------------------
    def heal(self, record: ActiveFault, *, reason: str) -> HealOutcome:
        """Heal one record; on verified success drop it from the ledger."""
        outcome = self._heal_effect(record)
        self._settle([(record, outcome, reason)])
        return outcome

    def _start_heal(self, record: ActiveFault, reason: str) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="heal")
        future = self._pool.submit(self._heal_effect, record)
        self._inflight[record.fault_id] = (future, record, reason)
        future.add_done_callback(lambda _f: self.wake.set())

    def collect_heals(self, *, wait: bool = False) -> None:
        """Settle the heals that finished (all of them with wait=True)."""
        finished: list[tuple[ActiveFault, HealOutcome, str]] = []
        for fault_id, (future, record, reason) in list(self._inflight.items()):
            if not (wait or future.done()):
                continue
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - _heal_effect already catches; belt and braces
                outcome = HealOutcome(False, "failed", f"{exc.__class__.__name__}: {exc}")
            del self._inflight[fault_id]
            current = next((a for a in self.active if a.fault_id == fault_id), record)
            finished.append((current, outcome, reason))
        if finished:
            self._settle(finished)

    def heal_many(self, items: Sequence[tuple[ActiveFault, str]]) -> None:
        """Heal several at once and wait: effects in parallel on the engine's pool,
        then one ledger write, so heals due together are not late by each other."""
        self.collect_heals(wait=True)  # never two heals of one record at once
        active = {a.fault_id for a in self.active}
        for record, reason in items:
            if record.fault_id in active:
                self._start_heal(record, reason)
        self.collect_heals(wait=True)

    def _heal_effect(self, record: ActiveFault) -> HealOutcome:
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

    def _settle(self, results: Sequence[tuple[ActiveFault, HealOutcome, str]]) -> None:
        """Ledger, leases and journal after heal attempts (one ledger write for all healed)."""
        healed = [(r, o, why) for r, o, why in results if o.healed]
        if healed:
            leases = [self.rt.leases.get(r.fault_id) for r, _, _ in healed]
            self._remove(*(r.fault_id for r, _, _ in healed))
            for (record, outcome, reason), lease in zip(healed, leases, strict=True):
                if lease is not None:
                    try:
                        self.leases.release(lease)
                    except AgentError:
                        pass  # best effort: the lease expires by its TTL anyway
                event = "healed_by_environment" if outcome.how == "environment" else "heal"
                swarm = {} if outcome.converged_s is None else {"converged_s": outcome.converged_s}
                self.journal.write(
                    event, how=outcome.how, detail=outcome.detail, reason=reason,
                    **swarm, **fault_fields(record),
                )  # fmt: skip
                name = printable(record.target_name)
                self.log(f"healed {record.fault} {name}: {outcome.how} ({reason})")
        for record, outcome, _ in results:
            if not outcome.healed:
                self._heal_failed(record, outcome)

    def _heal_failed(self, record: ActiveFault, outcome: HealOutcome) -> None:
        attempts = record.heal_attempts + 1
        updated = record.evolve(heal_attempts=attempts, last_error=outcome.detail, status="healing")
        if any(a.fault_id == record.fault_id for a in self.active):
            self._replace(updated)
        backoff = min(30.0, 0.5 * 2 ** min(attempts, 6))
        self.rt.retry_at[record.fault_id] = self.monotonic() + backoff
        self.journal.write(
            "heal_failed", attempts=attempts, detail=outcome.detail, **fault_fields(record)
        )
        name = printable(record.target_name)
        self.log(f"heal of {record.fault} {name} failed ({attempts}): {printable(outcome.detail)}")
        if attempts == self.timing.stuck_after:
            self.journal.write("stuck", attempts=attempts, **fault_fields(record))
            self.log(f"error: heal of {record.fault} {name} is stuck; no new faults until cleared")

    def heal_all(self, reason: str, *, budget: float | None = None, passes: int = 1) -> bool:
        """Heal every active fault (in parallel); True if none is left."""
        end = None if budget is None else self.monotonic() + budget
        for _ in range(passes):
            if not self.active or (end is not None and self.monotonic() > end):
                break
            self.heal_many([(record, reason) for record in list(self.active)])
        return not self.active

    def heal_due(self) -> None:
        """Settle finished heals, then start the heals that are due (on the pool)."""
        self.collect_heals()
        now = self.monotonic()
        due_now: list[tuple[ActiveFault, str]] = []
        for record in list(self.active):
            if record.fault_id in self._inflight:
                continue
            due = self.rt.due.get(record.fault_id)
            if due is None:  # loaded from disk: use the wall-clock deadline
                due = now + max(0.0, record.deadline - self.clock())
                self.rt.due[record.fault_id] = due
            lease = self.rt.leases.get(record.fault_id)
            retry = self.rt.retry_at.get(record.fault_id)
            if retry is not None:
                if now >= retry:
                    due_now.append((record, "retry"))
                continue
            if now >= due:
                due_now.append((record, "duration elapsed"))
            elif lease is not None and now >= lease.local_deadline:
                due_now.append((record, "lease deadline reached (could not renew)"))
        for record, reason in due_now:
            self._start_heal(record, reason)

    def renew_leases(self) -> None:
        if not self.leases.remote:
            return
        now = self.monotonic()
        for record in list(self.active):
            lease = self.rt.leases.get(record.fault_id)
            if lease is None or now - self.rt.renewed_at.get(record.fault_id, 0) < lease.ttl / 3:
                continue
            if record.fault_id in self._inflight:
                continue  # being healed already
            try:
                self.rt.leases[record.fault_id] = self.leases.renew(lease)
                self.rt.renewed_at[record.fault_id] = now
                self._coordinator_up()
            except LeaseRefused as exc:
                self.heal(record, reason=f"lease refused on renew: {exc.one_line()}")
            except CoordinatorUnavailable as exc:
                self._coordinator_down(exc)

    def _coordinator_down(self, exc: AgentError) -> None:
        if self._coordinator_down_since is None:
            self._coordinator_down_since = self.monotonic()
            self._error(f"coordinator unreachable, no new faults: {exc.one_line()}")

    def _coordinator_up(self) -> None:
        if self._coordinator_down_since is not None:
            self._coordinator_down_since = None
            self.log("coordinator reachable again")
            self.journal.write("lease", message="coordinator reachable again")

    def probe_coordinator(self) -> None:
        """While down, retry with backoff (via renew/acquire): here a cheap check."""
        if self._coordinator_down_since is None or not self.leases.remote:
            return
        ping = getattr(self.leases, "ping", None)
        if ping is None:
            self._coordinator_down_since = None  # let the next acquire try again
            return
        try:
            ping()
            self._coordinator_up()
        except AgentError:
            pass

    # -- the loop --------------------------------------------------------------------------
    def kill_switch_on(self) -> bool:
        return self.config.agent.kill_switch.exists()

    def tick(self, *, allow_inject: bool) -> None:
        self.heal_due()
        self.renew_leases()
        if self.kill_switch_on():
            if not self._kill_switch_seen:
                self._kill_switch_seen = True
                msg = f"kill switch {self.config.agent.kill_switch} present: healing all, no new faults"
                self.log(msg)
                self.journal.write("halt", reason=msg)
            self.heal_all("kill switch")
            return
        if self._kill_switch_seen:
            self._kill_switch_seen = False
            self.log("kill switch removed: resuming")
            self.journal.write("resume", reason="kill switch removed")
        if self.probes is not None:
            reason = self.probes.halt_reason(self.config.stop)
            if reason and not self.halted:
                self.halted = reason
                self.log(f"stop condition: {reason}")
                self.journal.write("halt", reason=reason)
                self.request_stop(f"stop condition: {reason}")
                return
        # heal first: no new decision while a heal is still in flight
        if (
            allow_inject
            and not self._inflight
            and self.next_attempt is not None
            and self.monotonic() >= self.next_attempt
        ):
            if self._coordinator_down_since is not None:
                self.probe_coordinator()
            try:
                self.attempt()
            except Exception as exc:  # noqa: BLE001 - a bug must not skip healing
                self._error(f"attempt failed: {exc.__class__.__name__}: {exc}")
            gap = next_gap(
                self.rng, self.config.schedule.mean_interval, self.config.schedule.min_gap
            )
            self.next_attempt = self.monotonic() + gap

    def next_wakeup(self, end: float | None) -> float:
        if any(future.done() for future, _, _ in self._inflight.values()):
            return 0.0  # a heal finished: settle it now
        now = self.monotonic()
        candidates = [now + 1.0]  # kill switch and probes are checked at least every second
        waiting = [a for a in self.active if a.fault_id not in self._inflight]
        candidates += [
            self.rt.retry_at.get(a.fault_id) or self.rt.due.get(a.fault_id, now) for a in waiting
        ]
        candidates += [
            lease.local_deadline
            for fid, lease in self.rt.leases.items()
            if fid not in self._inflight
        ]
        if self.next_attempt is not None:
            candidates.append(self.next_attempt)
        if end is not None:
            candidates.append(end)
        return max(0.0, min(candidates) - now)

    def run(
        self,
        *,
        duration: float | None = None,
        once: bool = False,
        on_tick: Callable[[Engine], None] | None = None,
    ) -> int:
        """The agent's life: recover, loop until stopped, heal everything, exit code."""
        self.recover()
        if self.inject_blocked:
            self.log("not injecting in this run; start again once you have looked at the ledger")
        try:
            self.evaluate()
            sentence = self.describe()
        except AgentError as exc:
            sentence = f"discovery failed: {exc.one_line()}"
        self.log(sentence)
        self.journal.write(
            "start", targets=sentence, config=self.config.source, dry_run=self.dry_run
        )
        if self.probes is not None:
            self.probes.start()
        start = self.monotonic()
        end = start + duration if duration else None
        self.next_attempt = start if once else start + self.config.schedule.first_after
        attempted = False
        try:
            while not self.stop_requested:
                if self.inject_blocked and not self.active:
                    break
                allow = not (once and attempted)
                before = self.next_attempt
                self.tick(allow_inject=allow)
                if allow and self.next_attempt != before:
                    attempted = True
                if on_tick is not None:
                    on_tick(self)
                if once and attempted and not self.active:
                    break
                if end is not None and self.monotonic() >= end:
                    break
                self.wake.wait(self.next_wakeup(end))
                self.wake.clear()
        finally:
            code = self.shutdown(self.stop_requested or "run ended")
        if self.halted:
            return EXIT_HALTED
        if self.inject_blocked:
            return EXIT_FAILED
        return code

    def shutdown(self, reason: str) -> int:
        """Heal all within the stop budget; a fault left unhealed means exit 1."""
        if self.probes is not None:
            self.probes.stop()
        # a failed heal gets a couple more tries within the stop budget
        self.heal_all(f"agent stopping: {reason}", budget=self.config.agent.stop_timeout, passes=3)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.leases.close()
        left = len(self.active)
        if self._watchdog is not None and left == 0:
            try:
                self._watchdog.terminate()
            except OSError:
                pass
        self.journal.write("stop", reason=reason, left=left)
        if left:
            self.log(
                f"error: {left} fault(s) could not be healed; they stay in the ledger for the next start"
            )
            return EXIT_FAILED
        return EXIT_OK

    # -- one-off inject (CLI) -----------------------------------------------------------------
    def find_target(self, name: str, targets: Sequence[Target]) -> Target:
        exact = [t for t in targets if name in (t.name, t.id)]
        if not exact:
            exact = [t for t in targets if len(name) >= 6 and t.id.startswith(name)]
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            raise UsageError(f"{name!r} matches {len(exact)} targets; use the full id")
        raise TargetNotFound(
            f"no opted-in target named {printable(name)!r}",
            hint="see `chaos-agent targets`; containers need the label "
            f"{self.policy.label}={self.policy.value}",
        )

    def inject_now(self, fault: str, name: str, duration: float, *, force: bool) -> ActiveFault:
        targets = self.discover()
        target = self.find_target(name, targets)
        verdicts = {v.target.id: v for v in self.evaluate(targets)}
        verdict = verdicts[target.id]
        impl = self._fault(target.kind, fault)
        missing = impl.unavailable()
        if missing:
            raise Unsupported(f"{fault} is not available on this host: {missing}")
        if not force:
            if not verdict.eligible:
                raise NotEligible(
                    f"not faulting {printable(target.name)}: {verdict.reason}",
                    hint="--force overrides the safety rules",
                )
            if fault not in verdict.faults:
                raise NotEligible(
                    f"{fault} is not allowed on {printable(target.name)}",
                    hint="see its chaos.faults label and [faults].enabled",
                )
            if len(self.active) >= self.policy.max_concurrent:
                raise NotEligible(
                    f"max_concurrent={self.policy.max_concurrent} fault(s) already active"
                )
        elif target.is_self:
            raise NotEligible("refusing to fault the chaos agent itself, even with --force")
        decision = Plan(
            fault=fault,
            target=target,
            duration_s=duration,
            params=self.config.faults.params_for(fault),
        )
        return self.apply(decision)

    def snapshot(self) -> dict[str, Any]:
        """What the live view shows."""
        now_wall, now_mono = self.clock(), self.monotonic()
        groups: dict[str, list[dict[str, Any]]] = {}
        for v in self.last_verdicts:
            groups.setdefault(v.target.group, []).append(
                {
                    "name": v.target.name,
                    "state": v.target.state,
                    "health": v.target.health,
                    "eligible": v.eligible,
                    "reason": v.reason,
                }
            )
        return {
            "host": self.config.agent.host,
            "dry_run": self.dry_run,
            "targets_sentence": self.describe() if self.last_verdicts else "",
            "groups": [{"name": n, "members": m} for n, m in groups.items()],
            "active": [
                {
                    "fault_id": a.fault_id,
                    "fault": a.fault,
                    "target": a.target_name,
                    "group": a.group,
                    "deadline": a.deadline,
                }
                for a in self.active
            ],
            "next_fault_at": None
            if self.next_attempt is None
            else now_wall + max(0.0, self.next_attempt - now_mono),
            "probes": self.probes.snapshot() if self.probes is not None else {},
            "halted": self.halted
            or (self.config.agent.kill_switch.name if self._kill_switch_seen else None),
        }


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

    def artifacts(self, fault_id: str, target: Target, params: Any) -> tuple[str, ...]:
        return self.inner.artifacts(fault_id, target, params)

    def describe(self, record: ActiveFault) -> str:
        return self.inner.describe(record)

    def inject(self, record: ActiveFault) -> dict[str, Any]:
        self.log(f"dry-run: would {self.inner.describe(record)}")
        return {"dry_run": True}

    def heal(self, record: ActiveFault) -> HealOutcome:
        return HealOutcome(True, "healed", "dry-run: nothing was touched")


__all__ = ["Engine", "DryRunFault", "MemoryLedger", "Pinned", "FaultFailed"]
