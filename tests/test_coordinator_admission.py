"""Admission logic (pure) and the store that serializes it: unit and property tests.

The property tests replay any interleaving of acquire / renew / release / clock
advances / halt, then check the *recorded* lease intervals: at no instant are more
leases live than the policy allows, fleet-wide or per group.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import parse_window
from agent.coordinator.admission import (
    AcquireRequest,
    FleetState,
    Grant,
    GroupHealth,
    LiveLease,
    Refusal,
    admit,
    check_renew,
)
from agent.coordinator.policy import FleetPolicy
from agent.coordinator.protocol import GroupCounts
from agent.coordinator.store import Granted, Interval, Store

pytestmark = pytest.mark.pure

MONDAY_NOON = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)


def request(host: str = "h1", group: str = "web", healthy: int = 5, duration: float = 30):
    return AcquireRequest(
        host, group, "pause", duration, GroupHealth(host, group, 5, 5, healthy, 0)
    )


def lease(lid: str, host: str = "h1", group: str = "web", token: int = 1, exp: float = 100):
    return LiveLease(lid, host, group, token, 0.0, exp, 30.0)


def state(*leases: LiveLease, halted: bool = False, last: float | None = None, reports=()):
    return FleetState(halted, tuple(leases), last, tuple(reports))


POLICY = FleetPolicy(max_concurrent=2, max_per_group=1, min_healthy=1, min_gap=0, lease_ttl=10)


def test_grant_when_nothing_is_live():
    got = admit(POLICY, state(), request(), 0.0, MONDAY_NOON)
    # held until the fault's deadline (30 s) + heal_grace (30 s), renewed or not
    assert got == Grant(expires_at=60.0, ttl=10.0)


def test_a_short_fault_is_held_for_its_ttl_at_least():
    got = admit(POLICY, state(), request(duration=1), 0.0, MONDAY_NOON)
    assert got == Grant(expires_at=31.0, ttl=10.0)
    short_grace = FleetPolicy(min_gap=0, lease_ttl=60, heal_grace=5)
    got = admit(short_grace, state(), request(duration=1), 0.0, MONDAY_NOON)
    assert got == Grant(expires_at=60.0, ttl=60.0)


@pytest.mark.parametrize(
    ("st_", "req", "code"),
    [
        (state(halted=True), request(), "halted"),
        (state(lease("a", group="x"), lease("b", group="y")), request(), "max_concurrent"),
        (state(lease("a", group="web")), request(), "max_per_group"),
        (state(), request(healthy=1), "min_healthy"),
        (state(), request(duration=601), "too_long"),
    ],
)
def test_refusals_name_their_reason(st_, req, code):
    got = admit(POLICY, st_, req, 0.0, MONDAY_NOON)
    assert isinstance(got, Refusal) and got.code == code and got.reason


def test_expired_leases_do_not_count():
    got = admit(POLICY, state(lease("a", group="web", exp=5.0)), request(), 5.0, MONDAY_NOON)
    assert isinstance(got, Grant)


def test_min_gap_counts_from_last_grant():
    policy = FleetPolicy(min_gap=30, max_concurrent=5, max_per_group=5, min_healthy=0)
    refused = admit(policy, state(last=100.0), request(), 120.0, MONDAY_NOON)
    assert isinstance(refused, Refusal) and refused.code == "min_gap"
    assert isinstance(admit(policy, state(last=100.0), request(), 130.0, MONDAY_NOON), Grant)


def test_min_healthy_sums_fresh_reports_of_every_host_and_subtracts_live_faults():
    policy = FleetPolicy(
        max_concurrent=5,
        max_per_group=5,
        min_healthy=2,
        min_gap=0,
        reporters={"web": frozenset({"h1", "h2", "h3"})},
    )
    reports = (GroupHealth("h2", "web", 2, 2, 2, 0.0), GroupHealth("h3", "web", 1, 1, 1, -1000))
    # h1 reports 1 healthy, h2 2 (fresh), h3 is stale: 3 healthy; one live fault -> 1 left
    st_ = state(lease("a", host="h2", group="web"), reports=reports)
    got = admit(policy, st_, request(healthy=1), 1.0, MONDAY_NOON)
    assert isinstance(got, Refusal) and got.code == "min_healthy"
    assert isinstance(
        admit(policy, state(reports=reports), request(healthy=1), 1.0, MONDAY_NOON), Grant
    )


def test_windows_and_allowed_faults():
    policy = FleetPolicy(min_gap=0, windows=(parse_window("Mon-Fri 09:00-17:00", "w"),))
    night = dt.datetime(2024, 1, 1, 22, 0, tzinfo=dt.UTC)
    assert admit(policy, state(), request(), 0, night) == Refusal(
        "window", "outside the policy's time windows"
    )
    assert isinstance(admit(policy, state(), request(), 0, MONDAY_NOON), Grant)
    only_kill = FleetPolicy(min_gap=0, faults=frozenset({"kill"}))
    got = admit(only_kill, state(), request(), 0, MONDAY_NOON)
    assert isinstance(got, Refusal) and got.code == "fault_not_allowed"


@pytest.mark.parametrize(
    ("stored", "host", "token", "now", "halted", "code"),
    [
        (None, "h1", 1, 0, False, "unknown_lease"),
        (lease("a", token=7), "h2", 7, 0, False, "not_owner"),
        (lease("a", token=7), "h1", 6, 0, False, "stale_token"),
        (lease("a", token=7, exp=5), "h1", 7, 5, False, "expired"),
        (lease("a", token=7), "h1", 7, 0, True, "halted"),
        (lease("a", token=7, exp=100), "h1", 7, 41, False, "overrun"),
    ],
)
def test_renew_refusals(stored, host, token, now, halted, code):
    got = check_renew(POLICY, state(halted=halted), stored, host, token, now, MONDAY_NOON)
    assert isinstance(got, Refusal) and got.code == code


def test_renew_never_shortens_the_hold():
    got = check_renew(POLICY, state(), lease("a", token=3), "h1", 3, 4.0, MONDAY_NOON)
    assert got == Grant(expires_at=60.0, ttl=10.0)  # granted 0 + 30 s + heal_grace 30 s


def test_renew_extends_from_now_past_the_hold():
    held_short = FleetPolicy(min_gap=0, lease_ttl=10, heal_grace=5)
    got = check_renew(held_short, state(), lease("a", token=3), "h1", 3, 34.0, MONDAY_NOON)
    assert got == Grant(expires_at=44.0, ttl=10.0)


# --- property tests -------------------------------------------------------------------

HOSTS = ["h1", "h2", "h3", "h4"]
GROUPS = ["web", "db"]

op_strategy = st.one_of(
    st.tuples(
        st.just("acquire"),
        st.sampled_from(HOSTS),
        st.sampled_from(GROUPS),
        st.integers(0, 4),
        st.sampled_from([1.0, 5.0, 30.0]),
    ),
    st.tuples(st.just("renew"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("release"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("advance"), st.floats(0.0, 15.0)),
    st.tuples(st.just("halt"), st.booleans()),
)
policy_strategy = st.builds(
    FleetPolicy,
    max_concurrent=st.integers(0, 3),
    max_per_group=st.integers(0, 2),
    min_healthy=st.integers(0, 3),
    min_gap=st.sampled_from([0.0, 2.0]),
    lease_ttl=st.sampled_from([3.0, 10.0]),
    max_duration=st.just(600.0),
    report_max_age=st.just(20.0),
)


def check_intervals(policy: FleetPolicy, intervals: list[Interval], grants: list[tuple]) -> None:
    """From recorded [start, end) intervals only: never more live than allowed."""
    for iv in intervals:
        at = iv.start
        live = [o for o in intervals if o.start <= at < o.end]
        assert len(live) <= policy.max_concurrent, (at, live)
        assert sum(1 for o in live if o.group == iv.group) <= policy.max_per_group, (at, live)
    starts = sorted(iv.start for iv in intervals)
    for a, b in zip(starts, starts[1:], strict=False):
        assert b - a >= policy.min_gap - 1e-9
    for _t, halted, healthy_after in grants:
        assert not halted
        assert healthy_after >= policy.min_healthy


@settings(max_examples=300, deadline=None)
@given(policy=policy_strategy, ops=st.lists(op_strategy, max_size=60))
def test_pure_admission_never_exceeds_policy(policy, ops):
    """A model of the store built on admit/check_renew alone."""
    now, halted, token = 0.0, False, 0
    rows: dict[str, dict] = {}  # lease_id -> {host, group, token, start, exp, end, duration}
    reports: dict[tuple[str, str], GroupHealth] = {}
    grants: list[tuple] = []
    last_grant = None
    for op in ops:
        open_rows = {k: r for k, r in rows.items() if r["end"] is None and now < r["exp"]}
        for r in rows.values():  # lazy expiry, as the store does
            if r["end"] is None and now >= r["exp"]:
                r["end"] = r["exp"]
        st_ = FleetState(
            halted,
            tuple(
                LiveLease(k, r["host"], r["group"], r["token"], r["start"], r["exp"], r["dur"])
                for k, r in open_rows.items()
            ),
            last_grant,
            tuple(reports.values()),
        )
        if op[0] == "acquire":
            _, host, group, healthy, duration = op
            req = AcquireRequest(
                host, group, "pause", duration, GroupHealth(host, group, 4, 4, healthy, now)
            )
            got = admit(policy, st_, req, now, MONDAY_NOON)
            reports[(host, group)] = req.report
            if isinstance(got, Grant):
                token += 1
                lid = f"L{token}"
                rows[lid] = {
                    "host": host,
                    "group": group,
                    "token": token,
                    "start": now,
                    "exp": got.expires_at,
                    "end": None,
                    "dur": duration,
                }
                last_grant = now
                fresh = [r for (h, g), r in reports.items() if g == group and now - r.at <= 20.0]
                live_in_group = sum(1 for r in open_rows.values() if r["group"] == group) + 1
                grants.append((now, halted, sum(r.healthy for r in fresh) - live_in_group))
        elif op[0] in ("renew", "release") and rows:
            lid = sorted(rows)[op[1] % len(rows)]
            r = rows[lid]
            tok = r["token"] if op[2] else r["token"] - 1
            stored = st_.leases and next((x for x in st_.leases if x.lease_id == lid), None)
            if op[0] == "renew":
                got = check_renew(policy, st_, stored or None, r["host"], tok, now, MONDAY_NOON)
                if isinstance(got, Grant):
                    r["exp"] = got.expires_at
            elif stored and tok == r["token"]:
                r["end"] = now
                r["released"] = True
        elif op[0] == "advance":
            now += op[1]
        elif op[0] == "halt":
            halted = op[1]
    intervals = [
        Interval(
            k, r["host"], r["group"], r["start"], r["end"] if r["end"] is not None else r["exp"]
        )
        for k, r in rows.items()
    ]
    check_intervals(policy, intervals, grants)
    # the fleet invariant: a slot its agent did not release stays taken until the
    # fault's deadline + heal_grace (a dead agent's dead-man heals inside that)
    for r in rows.values():
        if not r.get("released"):
            held = r["exp"] if r["end"] is None else r["end"]
            assert held >= r["start"] + r["dur"] + policy.heal_grace - 1e-9, r


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policy_strategy, ops=st.lists(op_strategy, max_size=40))
def test_store_never_exceeds_policy(policy, ops):
    """The same interleavings through SQLite; checked from the store's recorded intervals."""
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "c.db", clock=clock, boot_id=lambda: "boot")
        held: list[tuple[str, Granted]] = []
        grants: list[tuple] = []
        try:
            for op in ops:
                if op[0] == "acquire":
                    _, host, group, healthy, duration = op
                    before = store.status(history=0)
                    got = store.acquire(
                        policy, host, group, "pause", duration, GroupCounts(group, 4, 4, healthy)
                    )
                    if isinstance(got, Granted):
                        held.append((host, got))
                        in_group = sum(1 for s in before["live"] if s["group"] == group) + 1
                        grants.append((clock.now, before["halted"], None, in_group))
                elif op[0] in ("renew", "release") and held:
                    host, g = held[op[1] % len(held)]
                    tok = g.token if op[2] else g.token - 1
                    if op[0] == "renew":
                        store.renew(policy, host, g.lease_id, max(tok, 1))
                    else:
                        store.release(host, g.lease_id, max(tok, 1))
                elif op[0] == "advance":
                    clock.now += op[1]
                elif op[0] == "halt":
                    store.halt("test") if op[1] else store.resume()
            intervals = store.intervals()
        finally:
            store.close()
    assert len(intervals) == len(grants)
    check_intervals(policy, intervals, [(t, h, policy.min_healthy) for t, h, _, _ in grants])
    tokens = [g.token for _, g in held]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


def test_store_fencing_token_only_grows_and_survives_reopen(tmp_path):
    clock = FakeClock()
    policy = FleetPolicy(max_concurrent=1, min_gap=0, min_healthy=0, lease_ttl=5)
    store = Store(tmp_path / "c.db", clock=clock, boot_id=lambda: "b")
    first = store.acquire(policy, "h1", "web", "pause", 10, GroupCounts("web", 2, 2, 2))
    assert isinstance(first, Granted)
    assert store.release("h1", first.lease_id, first.token) is None
    store.close()
    store = Store(tmp_path / "c.db", clock=clock, boot_id=lambda: "b")
    second = store.acquire(policy, "h2", "web", "pause", 10, GroupCounts("web", 2, 2, 2))
    assert isinstance(second, Granted) and second.token == first.token + 1
    refused = store.renew(policy, "h2", second.lease_id, first.token)
    assert isinstance(refused, Refusal) and refused.code == "stale_token"
    store.close()


def test_store_reboot_shift_keeps_leases_live_across_a_coordinator_reboot(tmp_path):
    clock = FakeClock()
    boot = ["b1"]
    policy = FleetPolicy(max_concurrent=1, min_gap=0, min_healthy=0, lease_ttl=10)
    store = Store(tmp_path / "c.db", clock=clock, boot_id=lambda: boot[0])
    got = store.acquire(policy, "h1", "web", "pause", 30, GroupCounts("web", 2, 2, 2))
    assert isinstance(got, Granted)
    boot[0], clock.now = "b2", 3.0  # rebooted: the boot clock starts again near zero
    refused = store.acquire(policy, "h2", "web", "pause", 30, GroupCounts("web", 2, 2, 2))
    assert isinstance(refused, Refusal) and refused.code == "max_concurrent"
    clock.now = 3.0 + 10.0  # one full TTL after the reboot: still held (fault may be live)
    refused = store.acquire(policy, "h2", "web", "pause", 30, GroupCounts("web", 2, 2, 2))
    assert isinstance(refused, Refusal) and refused.code == "max_concurrent"
    clock.now = 3.0 + 30.0 + 30.0  # deadline + heal_grace after the reboot: free
    assert isinstance(
        store.acquire(policy, "h2", "web", "pause", 30, GroupCounts("web", 2, 2, 2)), Granted
    )
    store.close()


# --- issue 10: hostile keys ------------------------------------------------------------


def test_another_identity_cannot_lift_min_healthy(tmp_path):
    """Item 1: web-b (2 healthy, min_healthy 2) is refused; another key reporting
    `shop/db healthy=100000` must not change that. Declared reporters do count."""
    clock = FakeClock()
    store = Store(tmp_path / "c.db", clock=clock, boot_id=lambda: "b")
    open_policy = FleetPolicy(max_concurrent=5, max_per_group=5, min_healthy=2, min_gap=0)
    mine = GroupCounts("shop/db", 2, 2, 2)
    got = store.acquire(open_policy, "web-b", "shop/db", "pause", 30, mine)
    assert isinstance(got, Refusal) and got.code == "min_healthy"
    store.report("evil", (GroupCounts("shop/db", 100_000, 100_000, 100_000),))
    got = store.acquire(open_policy, "web-b", "shop/db", "pause", 30, mine)
    assert isinstance(got, Refusal) and got.code == "min_healthy", got
    declared = FleetPolicy(
        max_concurrent=5,
        max_per_group=5,
        min_healthy=2,
        min_gap=0,
        reporters={"shop/db": frozenset({"web-a", "web-b"})},
    )
    store.report("web-a", (GroupCounts("shop/db", 2, 2, 2),))
    assert isinstance(store.acquire(declared, "web-b", "shop/db", "pause", 30, mine), Granted)
    evil = store.acquire(declared, "evil", "shop/db", "pause", 30, mine)
    assert isinstance(evil, Refusal) and evil.code == "not_reporter"
    store.close()


def test_report_rows_are_bounded_per_host_and_by_age(tmp_path):
    """Item 2: a hostile key's reports cannot grow the table without bound."""
    from agent.coordinator.store import MAX_REPORTED_GROUPS, REPORT_KEEP

    clock = FakeClock()
    store = Store(tmp_path / "c.db", clock=clock, boot_id=lambda: "b")
    for batch in range(8):
        groups = tuple(GroupCounts(f"g{batch}-{i}", 3, 3, 3) for i in range(256))
        store.report("evil", groups)
        clock.now += 0.001

    def rows(host: str) -> int:
        return store._db.execute("SELECT COUNT(*) FROM reports WHERE host = ?", (host,)).fetchone()[
            0
        ]

    assert rows("evil") == MAX_REPORTED_GROUPS
    store.report("web-a", (GroupCounts("web", 2, 2, 2),))
    clock.now += REPORT_KEEP + 1
    store.report("web-b", (GroupCounts("web", 2, 2, 2),))
    assert rows("evil") == 0 and rows("web-a") == 0 and rows("web-b") == 1
    store.close()


def test_renew_meets_a_tightened_policy(tmp_path):
    """Item 4: a lower max_concurrent, a fault taken out of `faults`, or a lower
    max_duration reaches granted leases at their next renew."""
    clock = FakeClock()
    store = Store(tmp_path / "c.db", clock=clock, boot_id=lambda: "b")
    loose = FleetPolicy(max_concurrent=3, max_per_group=3, min_healthy=0, min_gap=0, lease_ttl=30)
    counts = GroupCounts("web", 3, 3, 3)
    first = store.acquire(loose, "h1", "web", "pause", 60, counts)
    second = store.acquire(loose, "h2", "web", "pause", 60, counts)
    assert isinstance(first, Granted) and isinstance(second, Granted)
    assert isinstance(store.renew(loose, "h1", first.lease_id, first.token), Granted)
    tightened = {
        "max_concurrent": dataclasses.replace(loose, max_concurrent=0),
        "max_per_group": dataclasses.replace(loose, max_per_group=1),
        "fault_not_allowed": dataclasses.replace(loose, faults=frozenset({"kill"})),
        "too_long": dataclasses.replace(loose, max_duration=30),
    }
    for code, policy in tightened.items():
        got = store.renew(policy, "h2", second.lease_id, second.token)
        assert isinstance(got, Refusal) and got.code == code, (code, got)
    # the oldest lease keeps its place under max_concurrent = 1
    one = dataclasses.replace(loose, max_concurrent=1)
    assert isinstance(store.renew(one, "h1", first.lease_id, first.token), Granted)
    got = store.renew(one, "h2", second.lease_id, second.token)
    assert isinstance(got, Refusal) and got.code == "max_concurrent"
    store.close()
