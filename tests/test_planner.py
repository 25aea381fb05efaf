"""The decision is pure: exhaustive unit tests and hypothesis properties."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import parse_window
from agent.model import ActiveFault, PastFault, Plan, Skip, Target
from agent.planner import Timing, in_window, next_gap, plan
from agent.selection import GroupRules, Policy, describe_selection, evaluate

pytestmark = pytest.mark.pure


def T(name, group="web", state="running", health="none", **kw) -> Target:
    return Target(
        kind="container", id=f"id-{name}", name=name, group=group, state=state, health=health, **kw
    )


def active_on(t: Target, fault="pause", attempts=0) -> ActiveFault:
    return ActiveFault(
        fault_id=f"f-{t.name}",
        fault=fault,
        target_kind=t.kind,
        target_id=t.id,
        target_name=t.name,
        group=t.group,
        injected_at=0,
        deadline=30,
        heal_attempts=attempts,
    )


POLICY = Policy()
TIMING = Timing(min_gap=0)


def reasons(targets, active=(), policy=POLICY):
    return {v.target.name: v.reason for v in evaluate(targets, list(active), policy)}


def test_three_replicas_are_eligible_singleton_is_not():
    r = reasons([T("w1"), T("w2"), T("w3"), T("solo", group="solo")])
    assert r["w1"] == r["w2"] == r["w3"] == ""
    assert "fewer than min_replicas=2" in r["solo"]


def test_exclusions_have_reasons():
    r = reasons(
        [
            T("w1"),
            T("w2"),
            T("w3"),
            T("p", protected=True),
            T("me", is_self=True),
            T("out", opted_in=False),
            T("down", state="exited"),
            T("frozen", state="paused"),
        ]
    )
    assert r["p"] == "protected (chaos.protect=true)"
    assert r["me"] == "is the chaos agent itself"
    assert r["out"].startswith("not opted in")
    assert r["down"] == "not running (exited)"
    assert r["frozen"] == "not running (paused)"


def test_target_under_fault_is_not_eligible_and_group_limit_applies():
    ts = [T("w1"), T("w2"), T("w3")]
    r = reasons(ts, [active_on(ts[0])])
    assert r["w1"] == "already under a fault (pause)"
    assert "already has 1 fault(s)" in r["w2"]


def test_min_healthy_counts_healthchecks():
    ts = [T("w1", health="healthy"), T("w2", health="unhealthy"), T("w3", health="starting")]
    r = reasons(ts)
    # faulting the only healthy one would leave 0 healthy
    assert "leave 0 healthy" in r["w1"]
    assert r["w2"] == "" and r["w3"] == ""


def test_percentages_round_down_and_small_groups_get_nothing():
    policy = Policy(rules=GroupRules(min_replicas=1, min_healthy=1, max_per_group=0.34))
    r = reasons([T("a"), T("b")], policy=policy)
    assert "rounds down to 0" in r["a"]
    r = reasons([T("a"), T("b"), T("c")], policy=policy)
    assert r["a"] == ""
    one = reasons([T("only", group="x")], policy=Policy(rules=GroupRules(1, 1, 1)))
    assert "leave 0 healthy" in one["only"]  # 1 replica: still no fault


def test_allowed_faults_label_and_unavailable_faults():
    policy = Policy(unavailable={("container", "kill"): "no pid namespace"})
    vs = {
        v.target.name: v
        for v in evaluate([T("a", allowed_faults=frozenset({"kill"})), T("b"), T("c")], [], policy)
    }
    assert not vs["a"].eligible and "kill: no pid namespace" in vs["a"].reason
    assert vs["b"].faults == ("stop", "pause", "restart")


def test_plan_respects_max_concurrent_min_gap_stuck_and_windows():
    ts = [T("w1"), T("w2"), T("w3"), T("d1", "db"), T("d2", "db"), T("d3", "db")]
    rng = random.Random(1)
    assert isinstance(plan(ts, [], [], POLICY, TIMING, 1000.0, rng), Plan)
    busy = plan(ts, [active_on(ts[0])], [], POLICY, TIMING, 1000.0, rng)
    assert isinstance(busy, Skip) and "max_concurrent=1" in busy.reason
    gap = plan(
        ts, [], [PastFault("pause", "x", "web", 990.0)], POLICY, Timing(min_gap=30), 1000.0, rng
    )
    assert isinstance(gap, Skip) and gap.reason.startswith("min_gap")
    stuck = plan(
        ts, [active_on(ts[0], attempts=5)], [], Policy(max_concurrent=5), TIMING, 1000.0, rng
    )
    assert isinstance(stuck, Skip) and "stuck" in stuck.reason
    # 2026-11-28 is a Saturday
    saturday_noon = 1795867200.0
    weekdays = Timing(min_gap=0, windows=(parse_window("Mon-Fri 09:00-17:00", "w"),))
    assert not in_window(saturday_noon, weekdays.windows, "UTC")
    closed = plan(ts, [], [], POLICY, weekdays, saturday_noon, rng)
    assert isinstance(closed, Skip) and "time windows" in closed.reason
    monday_10 = saturday_noon + 2 * 86400 - 2 * 3600
    assert in_window(monday_10, weekdays.windows, "UTC")
    assert not in_window(monday_10, weekdays.windows, "Asia/Tokyo")  # 19:00 there


def test_seeded_plans_replay_and_weights_bias():
    ts = [T(f"w{i}") for i in range(5)]

    def seq(seed: int) -> list:
        rng = random.Random(seed)
        return [plan(ts, [], [], POLICY, TIMING, 0.0, rng) for _ in range(20)]

    assert seq(5) == seq(5)
    assert seq(5) != seq(6)
    weighted = Policy(weights={"pause": 10, "kill": 0, "stop": 0, "restart": 0})
    rng = random.Random(3)
    picks = Counter(plan(ts, [], [], weighted, TIMING, 0.0, rng).fault for _ in range(50))
    assert picks == {"pause": 50}
    # order of discovery does not change a seeded decision
    a = plan(ts, [], [], POLICY, TIMING, 0.0, random.Random(9))
    b = plan(list(reversed(ts)), [], [], POLICY, TIMING, 0.0, random.Random(9))
    assert a == b


def test_next_gap_is_floored_and_averages_to_mean():
    rng = random.Random(0)
    gaps = [next_gap(rng, 60.0, 5.0) for _ in range(4000)]
    assert min(gaps) >= 5.0
    assert 55 < sum(gaps) / len(gaps) < 70


def test_description_sentence():
    s = describe_selection(evaluate([T("a"), T("b"), T("c")], [], POLICY), POLICY)
    assert s.startswith("Targeting 3 opted-in target(s) in 1 group(s)")
    assert "3 eligible now" in s


# --- properties ---------------------------------------------------------------------

targets_st = st.lists(
    st.builds(
        lambda i, group, state, health, protected, is_self, opted: T(
            f"t{i}",
            group=group,
            state=state,
            health=health,
            protected=protected,
            is_self=is_self,
            opted_in=opted,
        ),
        st.integers(0, 10_000),
        st.sampled_from(["web", "db", "cache", "solo"]),
        st.sampled_from(["running", "running", "running", "paused", "exited", "restarting"]),
        st.sampled_from(["none", "healthy", "unhealthy", "starting"]),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    max_size=14,
    unique_by=lambda t: t.id,
)
policy_st = st.builds(
    lambda mr, mh, mpg, mc: Policy(rules=GroupRules(mr, mh, mpg), max_concurrent=mc),
    st.integers(1, 4),
    st.one_of(st.integers(0, 3), st.sampled_from([0.34, 0.5, 0.67])),
    st.one_of(st.integers(0, 3), st.sampled_from([0.25, 0.34, 0.5])),
    st.integers(0, 4),
)


@settings(max_examples=300, deadline=None)
@given(targets_st, policy_st, st.integers(0, 2**32), st.integers(1, 8))
def test_any_sequence_of_plans_keeps_every_invariant(targets, policy, seed, steps):
    """Apply plans one after another (a fault makes its target unavailable): the
    chosen target is always opted-in, not self, not protected, running, not under
    a fault; limits min_replicas, min_healthy, max_per_group and max_concurrent hold."""
    rng = random.Random(seed)
    active: list[ActiveFault] = []
    for step in range(steps):
        decision = plan(targets, active, [], policy, TIMING, float(step), rng)
        if isinstance(decision, Skip):
            continue
        t = decision.target
        assert t.opted_in and not t.is_self and not t.protected and t.running
        assert all(a.target_id != t.id for a in active)
        assert len(active) < policy.max_concurrent
        members = [m for m in targets if m.group == t.group]
        faulted = {a.target_id for a in active}
        free = [m for m in members if m.id not in faulted]
        assert sum(m.running for m in free) >= policy.rules.min_replicas
        from agent.config import resolve_fraction

        need = resolve_fraction(policy.rules.min_healthy, len(members), round_up=True)
        healthy_after = sum(m.healthy for m in free if m.id != t.id)
        assert healthy_after >= need
        cap = resolve_fraction(policy.rules.max_per_group, len(members), round_up=False)
        assert sum(a.group == t.group for a in active) < cap
        active.append(active_on(t, decision.fault))
