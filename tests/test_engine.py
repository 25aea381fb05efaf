"""The engine driven with fakes: a recording fault, the memory ledger, a fake lease
provider, a fake clock and a seeded rng. No Docker, no threads to wait on beyond the
heal pool (whose effects are instant here): each test runs in milliseconds.

The real-engine tests (test_agent_docker.py, test_agent_fleet.py, ...) show the same
flow on real containers; these pin down the bookkeeping between the steps.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentSection, Config, ScheduleSection, parse_toml_text
from agent.engine import EXIT_FAILED, EXIT_OK, Engine
from agent.errors import (
    ConfigError,
    CoordinatorUnavailable,
    FaultFailed,
    LeaseRefused,
    LedgerCorrupt,
    LedgerError,
)
from agent.faults.base import FaultRegistry
from agent.gate import Closed, GateState, Timing, why_closed
from agent.heals import backoff
from agent.journal import Journal, fault_fields, read_journal
from agent.lease_keeper import RENEW_EVERY_MAX
from agent.leases import GroupReport, Lease
from agent.ledger import MemoryLedger
from agent.model import ActiveFault, HealOutcome, Identity, Plan, Target
from agent.recovery import LeftBehind, left_behind
from agent.selection import Policy

pytestmark = pytest.mark.pure

DURATION = 30.0


class Clock:
    """Wall clock and monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


class RecordingFault:
    """A pause-like fault that records what it was asked; heal outcomes are scripted."""

    name = "pause"
    kind = "container"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.inject_error: BaseException | None = None
        self.heal_results: list[HealOutcome] = []  # consumed first; then healed

    def unavailable(self) -> str | None:
        return None

    def refuse(self, target: Target) -> str | None:
        return None

    def artifacts(self, fault_id: str, target: Target, params: Any) -> tuple[str, ...]:
        return ()

    def describe(self, record: ActiveFault) -> str:
        return f"pause {record.target_name}"

    def inject(self, record: ActiveFault) -> dict[str, Any]:
        self.calls.append(("inject", record.target_name))
        if self.inject_error is not None:
            raise self.inject_error
        return {"paused": True}

    def heal(self, record: ActiveFault) -> HealOutcome:
        self.calls.append(("heal", record.target_name))
        if self.heal_results:
            return self.heal_results.pop(0)
        return HealOutcome(True, "healed")

    def count(self, what: str) -> int:
        return sum(1 for c in self.calls if c[0] == what)


class FakeLeases:
    """A coordinator in memory: grants with a TTL, renews, refuses on demand."""

    def __init__(self, clock: Clock, *, remote: bool = True, ttl: float = 60.0) -> None:
        self.clock = clock
        self.remote = remote
        self.ttl = ttl
        self.margin = 5.0
        self.tokens = 0
        self.refuse: BaseException | None = None  # raised by acquire and renew
        self.calls: list[tuple[str, float | None]] = []  # (op, timeout)
        self.released: list[str] = []
        self.closed = False

    def _lease(self, lease_id: str, token: int) -> Lease:
        deadline = self.clock.mono + self.ttl - self.margin
        return Lease(lease_id, token, self.ttl, deadline)

    def acquire(self, plan: Plan, report: GroupReport, *, timeout: float | None = None) -> Lease:
        self.calls.append(("acquire", timeout))
        if self.refuse is not None:
            raise self.refuse
        self.tokens += 1
        return self._lease(f"L{self.tokens}", self.tokens)

    def renew(self, lease: Lease, *, timeout: float | None = None) -> Lease:
        self.calls.append(("renew", timeout))
        if self.refuse is not None:
            raise self.refuse
        return self._lease(lease.lease_id, lease.token)

    def release(self, lease: Lease, *, timeout: float | None = None) -> None:
        self.calls.append(("release", timeout))
        self.released.append(lease.lease_id)

    def close(self) -> None:
        self.closed = True

    def ops(self, op: str) -> list[float | None]:
        return [t for o, t in self.calls if o == op]


class FailingLedger(MemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.fail_save = False
        self.corrupt = False
        self.quarantined = False

    def load(self) -> list[ActiveFault]:
        if self.corrupt:
            raise LedgerCorrupt("ledger is not valid JSON")
        return super().load()

    def save(self, faults: list[ActiveFault], *, durable: bool = True) -> None:
        if self.fail_save:
            raise LedgerError("disk full")
        super().save(faults)

    def quarantine(self) -> str:
        self.quarantined = True
        return "ledger.json.corrupt"


class FakeProbes:
    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.reason: str | None = None
        self.stop_timeout: float | None = None

    def start(self) -> None:
        self.order.append("probes.start")

    def signal_stop(self) -> None:
        self.order.append("probes.signal_stop")

    def stop(self, timeout: float | None = None) -> None:
        self.order.append("probes.stop")
        self.stop_timeout = timeout

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {}

    def halt_reason(self, stop: Any, now: float | None = None) -> str | None:
        return self.reason


class FakeDeadman:
    def __init__(self) -> None:
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True


def web(n: int, group: str = "web") -> Target:
    return Target("container", f"{group}{n:061x}", f"{group}-{n}", group, "running")


class Rig:
    """An Engine over fakes, plus the fakes to look at."""

    def __init__(self, tmp_path: Path, *, remote: bool = False, stuck_after: int = 3) -> None:
        self.tmp = tmp_path
        self.clock = Clock()
        self.fault = RecordingFault()
        self.ledger = FailingLedger()
        self.leases = FakeLeases(self.clock, remote=remote)
        self.targets = [web(n, group) for group in ("api", "web") for n in (1, 2, 3)]
        self.pin_hook: Callable[[], None] = lambda: None
        self.order: list[str] = []
        self.probes = FakeProbes(self.order)
        self.journal_path = tmp_path / "journal.jsonl"
        agent = AgentSection(
            host="h1",
            state_dir=tmp_path,
            journal=self.journal_path,
            kill_switch=tmp_path / "STOP",
            heal_retries=stuck_after,
            stop_timeout=5.0,
            deadman="off",
        )
        schedule = ScheduleSection(mean_interval=60.0, min_gap=0.0, first_after=0.0)
        self.config = Config(agent=agent, schedule=schedule)
        self.logs: list[str] = []
        self.engine = Engine(
            config=self.config,
            registry=FaultRegistry([self.fault]),
            policy=Policy(enabled={"container": ("pause",)}, duration=DURATION, max_concurrent=2),
            timing=Timing(min_gap=0.0, stuck_after=stuck_after),
            discover=lambda: list(self.targets),
            pin=self._pin,
            ledger=self.ledger,
            journal=Journal(self.journal_path, host="h1", seed=1, clock=self.clock.time),
            leases=self.leases,
            rng=random.Random(1),
            probes=self.probes,
            log=self.logs.append,
            clock=self.clock.time,
            monotonic=self.clock.monotonic,
        )

    def _pin(self, target: Target) -> Identity:
        self.pin_hook()
        return Identity(started_at="2026-01-01T00:00:00Z", pid=100)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in read_journal(self.journal_path) if kind in (None, e.get("event"))]

    def settle(self) -> None:
        """Start what is due and wait for the heal pool to finish it (instant fakes)."""
        self.engine.heal_due()
        self.engine.collect_heals(wait=True)

    def inject_one(self) -> ActiveFault:
        record = self.engine.attempt()
        assert record is not None, self.logs
        return record


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path)
    yield r
    r.engine.heals.close()


@pytest.fixture
def remote_rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path, remote=True)
    yield r
    r.engine.heals.close()


# -- inject and heal ------------------------------------------------------------------
def test_attempt_writes_ahead_injects_and_heals_when_due(rig: Rig) -> None:
    record = rig.inject_one()
    assert rig.fault.calls == [("inject", record.target_name)]
    assert [a.fault_id for a in rig.ledger.faults] == [record.fault_id]
    assert rig.ledger.faults[0].status == "active"
    kinds = [e["event"] for e in rig.events()]
    assert kinds.index("intent") < kinds.index("inject")  # write-ahead, then the effect

    rig.clock.advance(DURATION - 1)
    rig.settle()
    assert rig.fault.count("heal") == 0 and rig.engine.active
    rig.clock.advance(1)
    rig.settle()
    assert rig.fault.count("heal") == 1
    assert rig.engine.active == [] and rig.ledger.faults == []
    assert rig.events("heal")[0]["reason"] == "duration elapsed"


def test_ledger_write_failure_means_no_inject_and_the_lease_goes_back(rig: Rig) -> None:
    rig.ledger.fail_save = True
    assert rig.engine.attempt() is None
    assert rig.fault.calls == []
    assert rig.leases.released == ["L1"]
    assert rig.engine.active == []
    assert "disk full" in rig.events("skip")[-1]["reason"]


@pytest.mark.parametrize(
    "error", [FaultFailed("daemon said no"), RuntimeError("bug in a fault")], ids=str
)
def test_inject_failure_rolls_back(rig: Rig, error: BaseException) -> None:
    rig.fault.inject_error = error
    assert rig.engine.attempt() is None
    assert [c[0] for c in rig.fault.calls] == ["inject", "heal"]
    assert rig.engine.active == [] and rig.ledger.faults == []
    assert rig.leases.released == ["L1"]
    failed = rig.events("inject_failed")
    assert len(failed) == 1 and str(error) in failed[0]["error"]
    assert rig.events("heal")[0]["reason"] == "inject failed: roll back"


# -- heal back-off and stuck ------------------------------------------------------------
def test_failed_heal_backs_off_then_marks_stuck_and_closes_the_gate(rig: Rig) -> None:
    failed = HealOutcome(False, "failed", "unpause: daemon busy")
    rig.fault.heal_results = [failed] * 3
    record = rig.inject_one()
    rig.clock.advance(DURATION)
    rig.settle()
    assert rig.fault.count("heal") == 1
    for attempts in (1, 2):
        wait = backoff(attempts)
        rig.clock.advance(wait - 0.01)
        rig.settle()
        assert rig.fault.count("heal") == attempts, "retried before its back-off"
        rig.clock.advance(0.01)
        rig.settle()
        assert rig.fault.count("heal") == attempts + 1
    assert rig.ledger.faults[0].heal_attempts == 3
    assert rig.ledger.faults[0].status == "healing"
    assert len(rig.events("stuck")) == 1
    closed = rig.engine.gate()
    assert closed is not None and "stuck" in closed.reason and not closed.hold
    assert rig.engine.attempt() is None  # no new fault while a heal is stuck
    assert rig.fault.count("inject") == 1
    rig.clock.advance(backoff(3))
    rig.settle()  # the heal keeps being retried, and now it works
    assert rig.engine.active == []
    assert rig.events("heal")[0]["fault_id"] == record.fault_id


def test_a_heal_in_flight_holds_the_next_attempt(rig: Rig) -> None:
    record = rig.inject_one()
    rig.engine.next_attempt = rig.clock.mono
    running: Future[HealOutcome] = Future()  # a heal that has not finished yet
    rig.engine.heals._inflight[record.fault_id] = (running, record, "duration elapsed")
    closed = rig.engine.gate()
    assert closed == Closed("1 heal(s) in flight", hold=True)
    rig.engine.tick(allow_inject=True)
    assert rig.fault.count("inject") == 1  # held: no new decision, no skip journaled
    assert rig.events("skip") == []
    assert rig.engine.next_attempt == rig.clock.mono  # still due once the heal settles
    running.set_result(HealOutcome(True, "healed"))
    rig.engine.tick(allow_inject=True)  # settles the heal, then the attempt goes ahead
    assert rig.events("heal") and rig.fault.count("inject") == 2


# -- kill switch and halt ------------------------------------------------------------------
def test_kill_switch_heals_all_and_stops_new_faults_until_removed(rig: Rig) -> None:
    rig.inject_one()
    rig.config.agent.kill_switch.write_text("")
    rig.engine.next_attempt = rig.clock.mono
    rig.engine.tick(allow_inject=True)
    assert rig.engine.active == [] and rig.fault.count("heal") == 1
    assert rig.fault.count("inject") == 1
    assert "kill switch" in rig.events("halt")[0]["reason"]
    rig.engine.tick(allow_inject=True)  # still present: still nothing new
    assert rig.fault.count("inject") == 1 and len(rig.events("halt")) == 1
    rig.config.agent.kill_switch.unlink()
    rig.engine.tick(allow_inject=True)
    assert rig.events("resume")
    assert rig.fault.count("inject") == 2


def test_stop_condition_halts_requests_stop_and_injects_nothing(rig: Rig) -> None:
    rig.probes.reason = "probe 'site' at 40% < 80%"
    rig.engine.next_attempt = rig.clock.mono
    rig.engine.tick(allow_inject=True)
    assert rig.engine.halted == "probe 'site' at 40% < 80%"
    assert rig.engine.stop_requested.startswith("stop condition")
    assert rig.fault.calls == []
    assert rig.events("halt")[0]["reason"] == rig.engine.halted


def test_shutdown_heals_before_waiting_for_probes(rig: Rig) -> None:
    rig.inject_one()
    real_heal = rig.fault.heal

    def heal(record: ActiveFault) -> HealOutcome:
        rig.order.append("heal")
        return real_heal(record)

    rig.fault.heal = heal  # type: ignore[method-assign]
    assert rig.engine.shutdown("SIGTERM") == EXIT_OK
    assert rig.order == ["probes.signal_stop", "heal", "probes.stop"]
    assert rig.probes.stop_timeout is not None and rig.probes.stop_timeout <= 5.0
    assert rig.leases.closed


def test_shutdown_with_an_unhealable_fault_exits_1_and_keeps_the_record(rig: Rig) -> None:
    rig.inject_one()
    rig.fault.heal_results = [HealOutcome(False, "failed", "no")] * 10
    assert rig.engine.shutdown("SIGTERM") == EXIT_FAILED
    assert len(rig.ledger.faults) == 1
    assert rig.events("stop")[-1]["left"] == 1


# -- leases ------------------------------------------------------------------------------
def test_leases_renew_at_most_every_two_seconds(remote_rig: Rig) -> None:
    rig = remote_rig
    rig.inject_one()
    assert RENEW_EVERY_MAX == 2.0  # ttl 60 s: ttl/3 would be 20 s
    rig.clock.advance(1.9)
    rig.engine.renew_leases()
    assert rig.leases.ops("renew") == []
    rig.clock.advance(0.1)
    rig.engine.renew_leases()
    assert len(rig.leases.ops("renew")) == 1


def test_lease_refused_mid_fault_heals_it(remote_rig: Rig) -> None:
    rig = remote_rig
    rig.inject_one()
    rig.clock.advance(2)
    rig.leases.refuse = LeaseRefused("coordinator refused renew (halted): incident 42")
    rig.engine.renew_leases()
    assert rig.engine.active == [] and rig.fault.count("heal") == 1
    assert rig.events("heal")[0]["reason"].startswith("lease refused on renew")


def test_coordinator_down_no_new_faults_until_it_answers_again(remote_rig: Rig) -> None:
    rig = remote_rig
    rig.inject_one()
    rig.leases.refuse = CoordinatorUnavailable("no answer")
    rig.clock.advance(2)
    rig.engine.renew_leases()
    assert rig.engine.leases.down and rig.engine.active
    assert rig.events("error")[0]["message"].startswith("coordinator unreachable")
    closed = rig.engine.gate()
    assert closed is not None and closed.reason.startswith("coordinator unreachable")
    rig.engine.next_attempt = rig.clock.mono
    rig.engine.tick(allow_inject=True)  # each scheduled attempt asks the coordinator again
    assert len(rig.leases.ops("acquire")) == 2 and rig.fault.count("inject") == 1
    rig.leases.refuse = None
    rig.clock.advance(2)
    rig.engine.renew_leases()
    assert not rig.engine.leases.down
    assert rig.events("lease")[0]["message"] == "coordinator reachable again"


def test_lease_deadline_before_duration_heals_at_the_lease_deadline(tmp_path: Path) -> None:
    rig = Rig(tmp_path, remote=True)
    rig.leases.ttl = 12.0  # local deadline 7 s after acquire, the fault lasts 30 s
    rig.leases.refuse = None
    rig.inject_one()
    rig.leases.refuse = CoordinatorUnavailable("no answer")  # renewals fail from now on
    rig.clock.advance(6.9)
    rig.engine.renew_leases()
    rig.settle()
    assert rig.engine.active
    rig.clock.advance(0.1)
    rig.engine.renew_leases()
    rig.settle()
    assert rig.engine.active == []
    assert rig.events("heal")[0]["reason"] == "lease deadline reached (could not renew)"
    rig.engine.heals.close()


def test_coordinator_calls_are_bounded_by_the_nearest_lease_deadline(remote_rig: Rig) -> None:
    rig = remote_rig
    assert rig.leases.ops("acquire") == []
    rig.inject_one()
    assert rig.leases.ops("acquire") == [None]  # nothing held: the provider's own timeout
    rig.clock.advance(10)
    rig.engine.next_attempt = rig.clock.mono
    rig.inject_one()  # max_concurrent=2: a second one, while the first lease is held
    first_deadline = 1000.0 + 60 - 5
    assert rig.leases.ops("acquire")[1] == pytest.approx(first_deadline - rig.clock.mono)
    rig.clock.advance(2)
    rig.engine.renew_leases()
    bounds = rig.leases.ops("renew")
    # the first renew is bounded by the first lease's deadline (the nearest), the second
    # by the second lease's, once the first was pushed out by its renewal
    assert bounds == [pytest.approx(43.0), pytest.approx(53.0)]


def test_lease_is_rechecked_right_before_inject(remote_rig: Rig) -> None:
    rig = remote_rig

    # the agent is held up between acquire and inject (SIGSTOP, a slow disk): the
    # ledger write is where the time goes here
    real_save = rig.ledger.save

    def slow_save(faults: list[ActiveFault], *, durable: bool = True) -> None:
        real_save(faults)
        if any(a.status == "injecting" for a in faults):
            rig.clock.advance(60)

    rig.ledger.save = slow_save  # type: ignore[method-assign]
    assert rig.engine.attempt() is None
    assert rig.fault.count("inject") == 0
    assert rig.engine.active == [] and rig.ledger.faults == []
    assert "lease ran out before inject" in rig.events("skip")[-1]["reason"]


# -- recovery -----------------------------------------------------------------------------
def test_corrupt_ledger_recovers_from_the_journal_and_blocks_injection(rig: Rig) -> None:
    left = ActiveFault(
        fault_id="abc123",
        fault="pause",
        target_kind="container",
        target_id=web(1).id,
        target_name="web-1",
        group="web",
        injected_at=rig.clock.wall - 5,
        deadline=rig.clock.wall + 25,
    )
    healed = left.evolve(fault_id="def456", target_name="web-2")
    with rig.journal_path.open("w") as fh:
        for rec in (left, healed):
            entry = {"event": "intent", "record": rec.to_json(), **fault_fields(rec)}
            fh.write(json.dumps(entry) + "\n")
        fh.write(json.dumps({"event": "heal", "fault_id": "def456"}) + "\n")
        fh.write('{"event": "intent", "record": {"torn')  # a crash mid-line
    rig.ledger.corrupt = True
    results = rig.engine.recover()
    assert [(r.fault_id, o.healed) for r, o in results] == [("abc123", True)]
    assert rig.fault.calls == [("heal", "web-1")]
    assert rig.ledger.quarantined
    assert "recovered 1 fault(s)" in rig.engine.inject_blocked
    assert rig.engine.attempt() is None
    assert rig.fault.count("inject") == 0
    assert rig.events("skip")[-1]["reason"].startswith("injection blocked")


def test_recover_heals_what_the_ledger_holds(rig: Rig) -> None:
    rig.inject_one()
    fresh = Rig(rig.tmp)  # a new run over the same ledger
    fresh.ledger.faults = list(rig.ledger.faults)
    results = fresh.engine.recover()
    assert [o.how for _, o in results] == ["healed"]
    assert fresh.ledger.faults == [] and not fresh.engine.inject_blocked
    fresh.engine.heals.close()


def test_a_corrupt_ledger_without_a_journal_blocks_and_recovers_nothing(tmp_path: Path) -> None:
    ledger = FailingLedger()
    ledger.corrupt = True
    left = left_behind(ledger, None)
    assert left.records == [] and ledger.quarantined
    assert left.blocked.startswith("ledger is not valid JSON; kept as ledger.json.corrupt")
    assert left_behind(MemoryLedger(), tmp_path / "none.jsonl") == LeftBehind([], "")


def test_recover_sweeps_leftovers_no_record_owns_and_survives_a_failed_sweep(rig: Rig) -> None:
    rig.inject_one()
    fresh = Rig(rig.tmp)
    fresh.ledger.faults = list(rig.ledger.faults)
    asked: list[set[str]] = []

    def sweep(owned: set[str]) -> list[str]:
        asked.append(set(owned))
        return ["chain CHAOS-dead01 in web-3"]

    fresh.engine.sweep = sweep
    fresh.engine.recover()
    assert asked == [set()]  # swept after the heals: nothing is owned any more
    assert fresh.events("sweep")[0]["detail"] == "chain CHAOS-dead01 in web-3"
    assert "removed leftover chain CHAOS-dead01 in web-3" in fresh.logs

    def broken(owned: set[str]) -> list[str]:
        raise FaultFailed("iptables said no")

    fresh.engine.sweep = broken
    assert fresh.engine.recover() == []
    assert fresh.events("error")[-1]["message"] == "leftover sweep failed: iptables said no"
    fresh.engine.heals.close()


def test_run_once_recovers_injects_heals_and_stands_the_deadman_down(rig: Rig) -> None:
    armed: list[FakeDeadman] = []

    def arm() -> FakeDeadman:
        armed.append(FakeDeadman())
        return armed[-1]

    rig.engine.arm_deadman = arm
    rig.fault.heal_results = []
    rig.engine.wake.wait = lambda timeout=None: rig.clock.advance(timeout or 0) or True  # type: ignore[method-assign,assignment]
    assert rig.engine.run(once=True) == EXIT_OK
    assert [c[0] for c in rig.fault.calls] == ["inject", "heal"]
    assert len(armed) == 1 and armed[0].terminated  # armed before the effect, stood down after
    kinds = [e["event"] for e in rig.events()]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert kinds.index("intent") < kinds.index("inject") < kinds.index("heal")


def test_deadman_is_armed_once_and_kept_while_a_fault_is_left(rig: Rig) -> None:
    armed: list[FakeDeadman] = []
    rig.engine.arm_deadman = lambda: armed.append(FakeDeadman()) or armed[-1]
    rig.inject_one()
    rig.clock.advance(1)
    rig.engine.next_attempt = rig.clock.mono
    rig.inject_one()
    assert len(armed) == 1
    rig.fault.heal_results = [HealOutcome(False, "failed", "no")] * 10
    assert rig.engine.shutdown("SIGTERM") == EXIT_FAILED
    assert not armed[0].terminated  # it still has a fault to heal at its deadline


def test_a_deadman_that_cannot_be_armed_is_an_error_line_not_a_stop(rig: Rig) -> None:
    def arm() -> FakeDeadman:
        raise OSError("no fork")

    rig.engine.arm_deadman = arm
    assert rig.inject_one()
    assert rig.events("error")[0]["message"] == "cannot arm the dead-man heal: no fork"


def test_a_bug_in_an_attempt_is_an_error_and_the_loop_goes_on(rig: Rig) -> None:
    def broken() -> list[Target]:
        raise RuntimeError("bug")

    rig.engine.discover = broken
    rig.engine.next_attempt = rig.clock.mono
    rig.engine.tick(allow_inject=True)
    assert rig.events("error")[0]["message"] == "attempt failed: RuntimeError: bug"
    assert rig.engine.next_attempt > rig.clock.mono  # the next attempt is scheduled anyway


# -- the gate, pure ------------------------------------------------------------------------
def test_gate_answers_in_a_fixed_order() -> None:
    timing = Timing(min_gap=30.0, stuck_after=2)
    stuck = ActiveFault("f1", "pause", "container", "id", "web-1", "web", 0.0, 1.0)
    stuck = stuck.evolve(heal_attempts=2)
    everything = GateState(
        now=100.0,
        timing=timing,
        max_concurrent=1,
        active=[stuck],
        last_fault_at=90.0,
        kill_switch="/run/STOP",
        halted="probe down",
        blocked="corrupt ledger",
        heals_in_flight=1,
        coordinator_down=True,
    )
    reasons = []
    state = everything
    for field, cleared in (
        ("kill_switch", ""),
        ("halted", ""),
        ("heals_in_flight", 0),
        ("blocked", ""),
        ("coordinator_down", False),
        ("active", [stuck.evolve(heal_attempts=0)]),
        ("max_concurrent", 2),
        ("last_fault_at", 60.0),
    ):
        closed = why_closed(state)
        assert closed is not None
        reasons.append((closed.reason.split()[0], closed.hold))
        state = GateState(**{**state.__dict__, field: cleared})
    assert why_closed(state) is None
    assert reasons == [
        ("kill", True),
        ("stop", True),
        ("1", True),
        ("injection", False),
        ("coordinator", False),
        ("heal", False),
        ("max_concurrent=1", False),
        ("min_gap:", False),
    ]


# -- config bounds ---------------------------------------------------------------------------
def test_renew_margin_of_zero_is_refused() -> None:
    text = '[coordinator]\nenabled = true\nhost = "c"\nrenew_margin = "0s"\n'
    with pytest.raises(ConfigError, match="renew_margin"):
        parse_toml_text(text, source="t.toml")


def test_probe_timeout_is_capped() -> None:
    text = '[[probes]]\nname = "site"\nkind = "tcp"\naddress = "127.0.0.1:80"\ntimeout = "31s"\n'
    with pytest.raises(ConfigError, match="at most 30s"):
        parse_toml_text(text, source="t.toml")
