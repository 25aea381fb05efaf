"""The one orchestrator, read as its flow: run -> tick -> attempt -> inject -> heal.

`run` recovers what a previous run left, then ticks until stopped and heals everything.
Each `tick` settles and starts due heals, renews leases, watches the kill switch and the
stop condition, and when an attempt is due asks the gate (agent/gate.py) whether a fault
may start. `attempt` discovers and plans; `inject` takes a lease, writes the ledger,
then acts; `heal` settles outcomes into the ledger, the leases and the journal.

The rooms: `Heals` (due times, back-off, the pool), `LeaseKeeper` (acquire, renew,
release, coordinator up/down), the gate. Each step to an injection fails closed: no
lease, no ledger write, no identity, no injection. Signal handlers only set a flag;
healing runs in the main loop, which is the only writer of the ledger.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from agent.config import Config
from agent.errors import (
    AgentError,
    FaultFailed,
    LeaseRefused,
    LedgerCorrupt,
    LedgerError,
    NotEligible,
    TargetGone,
    Unsupported,
    UsageError,
)
from agent.faults.base import Fault, FaultRegistry
from agent.gate import Closed, GateState, why_closed
from agent.heals import Finished, Heals
from agent.journal import Journal, fault_fields, unhealed_intents
from agent.lease_keeper import LeaseKeeper
from agent.leases import LeaseProvider
from agent.ledger import ActiveFaults, LedgerLike
from agent.model import ActiveFault, HealOutcome, PastFault, Pinned, Plan, Skip, Target
from agent.planner import Timing, next_gap, plan
from agent.selection import Policy, Verdict, describe_selection, evaluate
from agent.textsafe import printable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_HALTED = 3  # the stop condition (probes) halted the run


class ProbesLike(Protocol):
    def start(self) -> None: ...

    def signal_stop(self) -> None: ...

    def stop(self, timeout: float | None = None) -> None: ...

    def snapshot(self) -> dict[str, dict[str, Any]]: ...

    def halt_reason(self, stop: Any, now: float | None = None) -> str | None: ...


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
        self.rng = rng
        self.dry_run = dry_run
        self.probes = probes
        self.sweep = sweep
        self.start_watchdog = start_watchdog
        self.log = log
        self.clock = clock
        self.monotonic = monotonic
        self.wake = threading.Event()
        self.heals = Heals(registry, wake=self.wake, clock=clock, monotonic=monotonic)
        self.leases = LeaseKeeper(
            leases,
            monotonic=monotonic,
            on_down=self._error,
            on_up=self._coordinator_up,
            on_down_quiet=self._journal_error,
        )
        self.records = ActiveFaults(ledger, on_error=self._error)
        self.history: list[PastFault] = []
        self.stop_requested = ""
        self.inject_blocked = ""  # non-empty: no new injections (corrupt ledger)
        self.halted = ""  # the stop condition that halted the run
        self.kill_switch_seen = False
        self.next_attempt: float | None = None
        self.last_verdicts: list[Verdict] = []
        self._watchdog: Any = None
        self._last_error = ""

    @property
    def active(self) -> list[ActiveFault]:
        """The faults this agent holds, as the ledger has them."""
        return self.records.faults

    @active.setter
    def active(self, faults: list[ActiveFault]) -> None:
        self.records.faults = list(faults)

    def request_stop(self, reason: str) -> None:
        """Safe to call from a signal handler: only sets a flag and wakes the loop."""
        self.stop_requested = reason
        self.wake.set()

    # -- run ---------------------------------------------------------------------------
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

    def recover(self) -> list[tuple[ActiveFault, HealOutcome]]:
        """Heal everything a previous run left behind, then sweep tagged leftovers."""
        try:
            records = self.ledger.load()
        except LedgerCorrupt as exc:
            path = self.journal.path
            records = unhealed_intents(path) if path is not None else []
            moved = self.ledger.quarantine()
            self.inject_blocked = f"{exc.message}; kept as {moved}; recovered {len(records)} fault(s) from the journal"
            self.log(f"error: {self.inject_blocked}")
            self.journal.write("error", message=self.inject_blocked)
        self.active = list(records)
        results = []
        for record in list(self.active):
            self.journal.write("recover", **fault_fields(record))
            results.append((record, self.heal(record, reason="recovered after restart")))
        self.sweep_leftovers()
        return results

    def sweep_leftovers(self) -> None:
        """Remove tagged artifacts (rules, qdiscs) that no active record owns."""
        if self.sweep is None:
            return
        owned = {a.fault_id for a in self.active}
        try:
            for item in self.sweep(owned):
                self.log(f"removed leftover {printable(item)}")
                self.journal.write("sweep", detail=item)
        except AgentError as exc:
            self._error(f"leftover sweep failed: {exc.one_line()}")

    def shutdown(self, reason: str) -> int:
        """Heal first, all within the stop budget; a fault left unhealed means exit 1.

        Probes are told to stop but not waited for until the heals are done: a probe
        whose endpoint never answers must not push a heal past Docker's stop grace."""
        budget = self.config.agent.stop_timeout
        end = self.monotonic() + budget
        if self.probes is not None:
            self.probes.signal_stop()
        # a failed heal gets a couple more tries within the stop budget
        self.heal_all(f"agent stopping: {reason}", budget=budget, passes=3)
        if self.probes is not None:
            self.probes.stop(timeout=max(0.0, end - self.monotonic()))
        self.heals.close()
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

    # -- tick ------------------------------------------------------------------------------
    def tick(self, *, allow_inject: bool) -> None:
        self.heal_due()
        self.renew_leases()
        if self.watch_kill_switch():
            self.heal_all("kill switch")
            return
        if self.watch_stop_condition():
            return
        if not allow_inject or self.next_attempt is None or self.monotonic() < self.next_attempt:
            return
        closed = self.gate()
        if closed is not None and closed.hold:
            return  # heal first: no new decision while a heal is still in flight
        self.leases.retry()  # each attempt asks a coordinator that was down again
        try:
            self.attempt()
        except Exception as exc:  # noqa: BLE001 - a bug must not skip healing
            self._error(f"attempt failed: {exc.__class__.__name__}: {exc}")
        gap = next_gap(self.rng, self.config.schedule.mean_interval, self.config.schedule.min_gap)
        self.next_attempt = self.monotonic() + gap

    def watch_kill_switch(self) -> bool:
        """True while the kill switch file is present (journaled once on each change)."""
        present = self.config.agent.kill_switch.exists()
        if present and not self.kill_switch_seen:
            msg = f"kill switch {self.config.agent.kill_switch} present: healing all, no new faults"
            self.log(msg)
            self.journal.write("halt", reason=msg)
        elif not present and self.kill_switch_seen:
            self.log("kill switch removed: resuming")
            self.journal.write("resume", reason="kill switch removed")
        self.kill_switch_seen = present
        return present

    def watch_stop_condition(self) -> bool:
        """True when the probes' stop condition halts the run (it stops the agent)."""
        if self.probes is None or self.halted:
            return False
        reason = self.probes.halt_reason(self.config.stop)
        if not reason:
            return False
        self.halted = reason
        self.log(f"stop condition: {reason}")
        self.journal.write("halt", reason=reason)
        self.request_stop(f"stop condition: {reason}")
        return True

    def gate(self) -> Closed | None:
        """May a fault start now? (None: yes.)"""
        return why_closed(
            GateState(
                now=self.clock(),
                timing=self.timing,
                max_concurrent=self.policy.max_concurrent,
                active=self.active,
                last_fault_at=max((h.at for h in self.history), default=None),
                kill_switch=str(self.config.agent.kill_switch) if self.kill_switch_seen else "",
                halted=self.halted,
                blocked=self.inject_blocked,
                heals_in_flight=self.heals.busy,
                coordinator_down=self.leases.down,
            )
        )

    def next_wakeup(self, end: float | None) -> float:
        if self.heals.any_finished():
            return 0.0  # a heal finished: settle it now
        now = self.monotonic()
        candidates = [now + 1.0]  # kill switch and probes are checked at least every second
        candidates += self.heals.next_due(self.active)
        candidates += self.leases.deadlines(skip=self.heals.in_flight).values()
        if self.next_attempt is not None:
            candidates.append(self.next_attempt)
        if end is not None:
            candidates.append(end)
        return max(0.0, min(candidates) - now)

    # -- attempt ---------------------------------------------------------------------------
    def attempt(self) -> ActiveFault | None:
        """One scheduled attempt: ask the gate, discover, plan, inject (or journal why not)."""
        closed = self.gate()
        if closed is not None:
            self._skip(closed.reason)
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
            return self.inject(decision)
        except AgentError as exc:
            self._skip(f"{decision.fault} {decision.target.name}: {exc.one_line()}")
            return None

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

    def _skip(self, reason: str) -> None:
        self.log(f"not faulting: {printable(reason, 300)}")
        self.journal.write("skip", reason=reason)

    # -- inject ----------------------------------------------------------------------------
    def inject(self, decision: Plan) -> ActiveFault:
        """lease -> ledger -> inject -> journal. Raises AgentError when refused."""
        target = decision.target
        fault = self.fault_for(target.kind, decision.fault)
        missing = fault.unavailable()
        if missing:
            raise Unsupported(f"{decision.fault} is not available on this host: {missing}")
        refusal = fault.refuse(target)
        if refusal:
            raise NotEligible(f"{decision.fault} refused on {target.name}: {refusal}")
        pinned = self.pin(target)  # fresh identity right before inject
        fault_id = new_fault_id()
        same_group = [v.target for v in self.last_verdicts if v.target.group == target.group]
        lease = self.leases.acquire(decision, same_group or [target])
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
            self.records.add(record)  # write-ahead: durable before the effect
        except LedgerError:
            self.leases.give_back(lease)
            raise
        self.leases.hold(fault_id, lease)
        self.heals.schedule(fault_id, decision.duration_s)
        self.journal.write("intent", record=record.to_json(), **fault_fields(record))
        self._ensure_watchdog()
        self.history.append(PastFault(decision.fault, target.id, target.group, now))
        if not self.leases.valid(fault_id):  # held up since acquire (frozen, slow disk)
            refused = LeaseRefused("the lease ran out before inject: not injecting")
            self._roll_back(record, refused, "lease ran out before inject")
            raise refused
        try:
            extra = fault.inject(record)
        except AgentError as exc:
            why = "target vanished during inject" if isinstance(exc, TargetGone) else ""
            self._roll_back(record, exc, why or "inject failed: roll back")
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in a fault must still roll back
            error = FaultFailed(f"{decision.fault} failed: {exc.__class__.__name__}: {exc}")
            self._roll_back(record, error, "inject failed: roll back")
            raise error from None
        record = record.evolve(status="active", extra=dict(extra))
        self.records.replace(record)
        self.log(f"injected {printable(fault.describe(record))} [{fault_id}]")
        self.journal.write("inject", extra=dict(extra), **fault_fields(record))
        return record

    def _roll_back(self, record: ActiveFault, error: AgentError, reason: str) -> None:
        self.journal.write("inject_failed", error=error.one_line(), **fault_fields(record))
        self.heal(record, reason=reason)

    def _ensure_watchdog(self) -> None:
        if self.start_watchdog is not None and self._watchdog is None:
            try:
                self._watchdog = self.start_watchdog()
            except OSError as exc:
                self._error(f"cannot start the heal watchdog: {exc}")

    def fault_for(self, kind: str, name: str) -> Fault:
        fault = self.registry.get(kind, name)
        if fault is None:
            known = ", ".join(sorted(self.registry.names(kind))) or "none"
            raise UsageError(f"unknown {kind} fault {name!r} (known: {known})")
        return fault

    # -- heal ------------------------------------------------------------------------------
    def heal(self, record: ActiveFault, *, reason: str) -> HealOutcome:
        """Heal one record now; on verified success drop it from the ledger."""
        outcome = self.heals.effect(record)
        self._settle([Finished(record, outcome, reason)])
        return outcome

    def heal_due(self) -> None:
        """Settle finished heals, then start the heals that are due (on the pool)."""
        self.collect_heals()
        deadlines = self.leases.deadlines()
        for record, reason in self.heals.due_now(list(self.active), deadlines):
            self.heals.start(record, reason)

    def collect_heals(self, *, wait: bool = False) -> None:
        """Settle the heals that finished (all of them with wait=True)."""
        finished = self.heals.collect(wait=wait)
        if finished:
            current = {a.fault_id: a for a in self.active}  # heal_attempts may have grown
            self._settle(
                [
                    Finished(current.get(f.record.fault_id, f.record), f.outcome, f.reason)
                    for f in finished
                ]
            )

    def heal_many(self, items: Sequence[tuple[ActiveFault, str]]) -> None:
        """Heal several at once and wait: effects in parallel on the pool, then one
        ledger write, so heals due together are not late by each other."""
        self.collect_heals(wait=True)  # never two heals of one record at once
        active = {a.fault_id for a in self.active}
        for record, reason in items:
            if record.fault_id in active:
                self.heals.start(record, reason)
        self.collect_heals(wait=True)

    def heal_all(self, reason: str, *, budget: float | None = None, passes: int = 1) -> bool:
        """Heal every active fault (in parallel); True if none is left."""
        end = None if budget is None else self.monotonic() + budget
        for _ in range(passes):
            if not self.active or (end is not None and self.monotonic() > end):
                break
            self.heal_many([(record, reason) for record in list(self.active)])
        return not self.active

    def renew_leases(self) -> None:
        for record, reason in self.leases.renew_due(list(self.active), skip=self.heals.in_flight):
            self.heal(record, reason=reason)

    def _settle(self, results: Sequence[Finished]) -> None:
        """Ledger, leases and journal after heal attempts (one ledger write for all healed)."""
        healed = [f for f in results if f.outcome.healed]
        if healed:
            self.records.remove(*(f.record.fault_id for f in healed))
            for record, outcome, reason in healed:
                self.heals.forget(record.fault_id)
                self.leases.release(record.fault_id)
                event = "healed_by_environment" if outcome.how == "environment" else "heal"
                swarm = {} if outcome.converged_s is None else {"converged_s": outcome.converged_s}
                self.journal.write(
                    event, how=outcome.how, detail=outcome.detail, reason=reason,
                    **swarm, **fault_fields(record),
                )  # fmt: skip
                name = printable(record.target_name)
                self.log(f"healed {record.fault} {name}: {outcome.how} ({reason})")
        for f in results:
            if not f.outcome.healed:
                self._heal_failed(f.record, f.outcome)

    def _heal_failed(self, record: ActiveFault, outcome: HealOutcome) -> None:
        attempts = record.heal_attempts + 1
        updated = record.evolve(heal_attempts=attempts, last_error=outcome.detail, status="healing")
        if any(a.fault_id == record.fault_id for a in self.active):
            self.records.replace(updated)
        self.heals.failed(updated)
        self.journal.write(
            "heal_failed", attempts=attempts, detail=outcome.detail, **fault_fields(record)
        )
        name = printable(record.target_name)
        self.log(f"heal of {record.fault} {name} failed ({attempts}): {printable(outcome.detail)}")
        if attempts == self.timing.stuck_after:
            self.journal.write("stuck", attempts=attempts, **fault_fields(record))
            self.log(f"error: heal of {record.fault} {name} is stuck; no new faults until cleared")

    # -- the error line ---------------------------------------------------------------------
    def _journal_error(self, message: str) -> None:
        self.journal.write("error", message=message)

    def _error(self, message: str) -> None:
        if message != self._last_error:
            self.log(f"error: {message}")
            self.journal.write("error", message=message)
        self._last_error = message

    def _coordinator_up(self) -> None:
        self.log("coordinator reachable again")
        self.journal.write("lease", message="coordinator reachable again")
