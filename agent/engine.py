"""The one orchestrator, read as its flow: run -> tick -> attempt -> inject -> heal.

`run` heals what a previous run left (agent/recovery.py), then ticks until stopped and
heals everything. Each `tick` settles and starts due heals, renews leases, watches the
kill switch and the stop condition (agent/stops.py), and when an attempt is due asks the
gate (agent/gate.py) whether a fault may start. `attempt` discovers and plans; `inject`
takes a lease, writes the ledger, then acts; `heal` settles outcomes into the ledger,
the leases and the journal.

The rooms: `Heals` (due times, back-off, the pool), `Settler` (the heal step: run heals,
settle outcomes), `LeaseKeeper` (acquire, renew, release, coordinator up/down), the gate,
stops.py (kill switch, stop condition and its probes, the dead-man heal), `Voice` (log
line and journal event). Each step to an injection fails closed: no lease, no ledger
write, no identity, no injection.
Signal handlers only set a flag; healing runs in the main loop, the only ledger writer.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence

from agent.config import Config
from agent.errors import AgentError, FaultFailed, LeaseRefused, LedgerError, TargetGone
from agent.faults.base import Fault, FaultRegistry
from agent.gate import Closed, GateState, why_closed
from agent.heals import Heals
from agent.journal import Journal, fault_fields
from agent.lease_keeper import LeaseKeeper
from agent.leases import LeaseProvider
from agent.ledger import ActiveFaults, LedgerLike
from agent.model import ActiveFault, HealOutcome, Identity, PastFault, Plan, Skip, Target
from agent.planner import Timing, next_gap, plan
from agent.recovery import Sweep, left_behind, sweep_leftovers
from agent.selection import Eligibility, Policy, describe_selection, evaluate
from agent.settle import Settler
from agent.stops import Deadman, KillSwitch, ProbesLike, StopCondition, armed_deadman, stand_down
from agent.textsafe import printable
from agent.voice import Voice

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_HALTED = 3  # the stop condition (probes) halted the run


class Engine:
    def __init__(
        self,
        *,
        config: Config,
        registry: FaultRegistry,
        policy: Policy,
        timing: Timing,
        discover: Callable[[], list[Target]],
        pin: Callable[[Target], Identity],
        ledger: LedgerLike,
        journal: Journal,
        leases: LeaseProvider,
        rng: random.Random,
        dry_run: bool = False,
        probes: ProbesLike | None = None,
        sweep: Sweep | None = None,
        arm_deadman: Callable[[], Deadman] | None = None,
        log: Callable[[str], None] = lambda _m: None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.registry, self.policy, self.timing = config, registry, policy, timing
        self.discover, self.pin, self.ledger, self.journal = discover, pin, ledger, journal
        self.rng, self.dry_run, self.probes, self.sweep = rng, dry_run, probes, sweep
        self.arm_deadman, self.log, self.clock, self.monotonic = arm_deadman, log, clock, monotonic
        # the rooms (see the module docstring)
        self.voice = voice = Voice(journal, log)
        self.wake = threading.Event()
        self.heals = Heals(registry, wake=self.wake, clock=clock, monotonic=monotonic)
        up = "coordinator reachable again"
        self.leases = LeaseKeeper(
            leases, monotonic=monotonic, on_down=voice.error, on_down_quiet=voice.error_quiet,
            on_up=lambda: voice.say("lease", up, message=up),
        )  # fmt: skip
        self.records = ActiveFaults(ledger, on_error=voice.error)
        self.settler = Settler(self.records, self.heals, self.leases, voice,
                               stuck_after=timing.stuck_after, monotonic=monotonic)  # fmt: skip
        self.kill_switch = KillSwitch(config.agent.kill_switch)
        self.stop_condition = StopCondition(probes, config.stop)
        self.history: list[PastFault] = []
        self.stop_requested = ""
        self.inject_blocked = ""  # non-empty: no new injections (corrupt ledger)
        self.next_attempt: float | None = None
        self.last_eligibility: list[Eligibility] = []
        self.deadman: Deadman | None = None

    @property
    def active(self) -> list[ActiveFault]:
        """The faults this agent holds, as the ledger has them."""
        return self.records.faults

    @active.setter
    def active(self, faults: list[ActiveFault]) -> None:
        self.records.faults = list(faults)

    @property
    def halted(self) -> str:
        """The stop condition that halted the run ('' while it runs)."""
        return self.stop_condition.halted

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
        self.voice.say(
            "start", sentence, targets=sentence, config=self.config.source, dry_run=self.dry_run
        )
        self.stop_condition.start()
        start = self.monotonic()
        end = start + duration if duration else None
        self.next_attempt = start if once else start + self.config.schedule.first_after
        attempted = False
        try:
            while not self.stop_requested:
                if self.inject_blocked and not self.active:
                    break
                before = self.next_attempt
                self.tick(allow_inject=True)
                if once and self.next_attempt != before:  # the one attempt was made
                    attempted, self.next_attempt = True, None  # never wake for another
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
        return EXIT_FAILED if self.inject_blocked else code

    def recover(self) -> list[tuple[ActiveFault, HealOutcome]]:
        """Heal everything a previous run left behind, then sweep tagged leftovers."""
        left = left_behind(self.ledger, self.journal.path)
        if left.blocked:
            self.inject_blocked = left.blocked
            self.voice.error(left.blocked)
        self.active = left.records
        results = []
        for record in list(self.active):
            self.voice.note("recover", **fault_fields(record))
            results.append((record, self.heal(record, reason="recovered after restart")))
        self.sweep_leftovers()
        return results

    def sweep_leftovers(self) -> None:
        """Remove tagged artifacts (rules, qdiscs) that no active record owns."""
        if self.sweep is not None:
            sweep_leftovers(self.sweep, {a.fault_id for a in self.active}, self.voice)

    def shutdown(self, reason: str) -> int:
        """Heal first, all within the stop budget; a fault left unhealed means exit 1.

        Probes are told to stop but not waited for until the heals are done: a probe
        whose endpoint never answers must not push a heal past Docker's stop grace."""
        budget = self.config.agent.stop_timeout
        end = self.monotonic() + budget
        self.stop_condition.signal_stop()
        # a failed heal gets a couple more tries within the stop budget
        self.heal_all(f"agent stopping: {reason}", budget=budget, passes=3)
        self.stop_condition.join(end - self.monotonic())
        self.heals.close()
        self.leases.close()
        left = len(self.active)
        if self.deadman is not None and left == 0:
            stand_down(self.deadman)
        self.voice.note("stop", reason=reason, left=left)
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
        if self.kill_switch.check(self.voice):
            self.heal_all("kill switch")
            return
        halt = self.stop_condition.check(self.voice)
        if halt:
            self.request_stop(f"stop condition: {halt}")
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
            self.voice.error(f"attempt failed: {exc.__class__.__name__}: {exc}")
        gap = next_gap(self.rng, self.config.schedule.mean_interval, self.config.schedule.min_gap)
        self.next_attempt = self.monotonic() + gap

    def gate(self) -> Closed | None:
        """May a fault start now? (None: yes.)"""
        state = GateState(
            now=self.clock(), timing=self.timing, max_concurrent=self.policy.max_concurrent,
            active=self.active, last_fault_at=max((h.at for h in self.history), default=None),
            kill_switch=str(self.kill_switch.path) if self.kill_switch.present else "",
            halted=self.halted, blocked=self.inject_blocked, heals_in_flight=self.heals.busy,
            coordinator_down=self.leases.down,
        )  # fmt: skip
        return why_closed(state)

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
        target = decision.target
        self.voice.note(
            "plan", fault=decision.fault, container=target.name, container_id=target.id,
            group=target.group, duration=decision.duration_s,
        )  # fmt: skip
        try:
            return self.inject(decision)
        except AgentError as exc:
            self._skip(f"{decision.fault} {target.name}: {exc.one_line()}")
            return None

    def evaluate(self, targets: Sequence[Target] | None = None) -> list[Eligibility]:
        found = list(targets) if targets is not None else self.discover()
        self.last_eligibility = evaluate(found, self.active, self.policy)
        return self.last_eligibility

    def describe(self) -> str:
        return describe_selection(self.last_eligibility, self.policy)

    def decide(self, targets: Sequence[Target]) -> Plan | Skip:
        return plan(
            targets, self.active, self.history, self.policy, self.timing, self.clock(), self.rng
        )

    def _skip(self, reason: str) -> None:
        self.voice.say("skip", f"not faulting: {printable(reason, 300)}", reason=reason)

    # -- inject ----------------------------------------------------------------------------
    def inject(self, decision: Plan) -> ActiveFault:
        """lease -> ledger -> inject -> journal. Raises AgentError when refused."""
        target = decision.target
        fault = self.registry.ready(decision.fault, target)
        pinned = self.pin(target)  # fresh identity right before inject
        fault_id = secrets.token_hex(6)  # every artifact's name derives from it
        same_group = [v.target for v in self.last_eligibility if v.target.group == target.group]
        lease = self.leases.acquire(decision, same_group or [target])
        now = self.clock()
        artifacts = tuple(fault.artifacts(fault_id, target, decision.params))
        record = decision.intent(fault_id, now, pinned, artifacts, lease.to_json())
        try:
            self.records.add(record)  # write-ahead: durable before the effect
        except LedgerError:
            self.leases.give_back(lease)
            raise
        self.leases.hold(fault_id, lease)
        self.heals.schedule(fault_id, decision.duration_s)
        self.voice.note("intent", record=record.to_json(), **fault_fields(record))
        if self.deadman is None:  # armed once per run, before the first effect
            self.deadman = armed_deadman(self.arm_deadman, self.voice)
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
        line = f"injected {printable(fault.describe(record))} [{fault_id}]"
        self.voice.say("inject", line, extra=dict(extra), **fault_fields(record))
        return record

    def _roll_back(self, record: ActiveFault, error: AgentError, reason: str) -> None:
        self.voice.note("inject_failed", error=error.one_line(), **fault_fields(record))
        self.heal(record, reason=reason)

    def fault_for(self, kind: str, name: str) -> Fault:
        return self.registry.require(kind, name)

    # -- heal (agent/settle.py: heals run, then settle into ledger, leases, journal) ------------
    def heal(self, record: ActiveFault, *, reason: str) -> HealOutcome:
        """Heal one record now; on verified success drop it from the ledger."""
        return self.settler.heal_now(record, reason)

    def heal_due(self) -> None:
        self.settler.start_due()

    def collect_heals(self, *, wait: bool = False) -> None:
        self.settler.collect(wait=wait)

    def heal_all(self, reason: str, *, budget: float | None = None, passes: int = 1) -> bool:
        return self.settler.heal_all(reason, budget=budget, passes=passes)

    def renew_leases(self) -> None:
        for record, reason in self.leases.renew_due(list(self.active), skip=self.heals.in_flight):
            self.heal(record, reason=reason)
