"""FaultOutcomes judges each fault while the agent runs exactly as `report` judges the journal."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.outcomes import FaultOutcomes, GroupOutcomes
from agent.report import build_report

pytestmark = pytest.mark.pure

T0 = 1_700_000_000.0


def fault_event(event: str, t: float, fid: str, group: str, **kw: Any) -> dict[str, Any]:
    return {
        "t": T0 + t,
        "event": event,
        "host": "h1",
        "fault_id": fid,
        "fault": "pause",
        "container": f"{group}-1",
        "container_id": f"id-{group}",
        "group": group,
        "duration": 5.0,
        "injected_at": kw.pop("injected_at", None),
    } | kw


def probe_event(t: float, name: str, ok: bool, latency_ms: float, groups: list[str]) -> dict:
    e = {"t": T0 + t, "event": "probe", "host": "h1", "probe": name, "ok": ok}
    e["latency_ms"] = latency_ms
    if groups:
        e["groups"] = groups
    return e


def journal(rng: random.Random) -> list[dict[str, Any]]:
    """A run as the engine journals it: probes every ~0.5-1 s, faults one after another
    (sometimes overlapping), heals by the agent or the dead-man, failures while faults hurt."""
    events: list[tuple[float, int, dict[str, Any]]] = []
    n = 0

    def add(t: float, e: dict[str, Any]) -> None:
        nonlocal n
        n += 1
        events.append((t, n, e))

    span = rng.uniform(60, 240)
    hurt: list[tuple[float, float, str]] = []  # (from, to, group) probes fail
    t = rng.uniform(0, 5)
    i = 0
    while t < span - 5:
        i += 1
        fid = f"f{i:03d}"
        group = rng.choice(["web", "db"])
        duration = rng.uniform(0.5, 12)
        add(t, fault_event("inject", t, fid, group))
        end = t + duration
        if rng.random() < 0.2:
            add(end, fault_event("heal_failed", end, fid, group, attempts=1))
            end += rng.uniform(0.5, 3)
        if rng.random() < 0.9:  # the rest stay open: the run stops with them active
            how = rng.choice(["heal", "heal", "watchdog", "healed_by_environment"])
            add(end, fault_event(how, end, fid, group, how="healed", injected_at=T0 + t))
        if rng.random() < 0.5:
            hurt.append((t + rng.uniform(0, 2), end + rng.uniform(-1, 15), group))
        t += rng.uniform(1, 25) if rng.random() < 0.8 else rng.uniform(0, 1)
    for name, declared in PROBES.items():
        groups = list(declared)
        if rng.random() < 0.2:
            continue  # sometimes a probe is missing
        step = rng.uniform(0.3, 1.2)
        t = rng.uniform(0, 1)
        while t < span + 45:
            bad = any(a <= t <= b and (not groups or g in groups) for a, b, g in hurt)
            ok = not bad if rng.random() > 0.05 else bad
            latency = rng.uniform(1, 400)
            add(t + latency / 1000, probe_event(t + latency / 1000, name, ok, latency, groups))
            t += step
    events.sort(key=lambda item: (item[0], item[1]))
    return [e for _, _, e in events]


PROBES = {"site": (), "db-only": ("db",), "web-only": ("web",)}


def judged_online(events: list[dict[str, Any]], probes: dict | None = PROBES) -> dict[str, Any]:
    outcomes = FaultOutcomes(probes=probes)
    judged = {}
    for e in events:
        for f in outcomes.observe(e):
            assert f.fault_id not in judged, "a fault is judged once"
            judged[f.fault_id] = f
    for f in outcomes.flush():
        assert f.fault_id not in judged
        judged[f.fault_id] = f
    return judged


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_online_verdicts_and_recovery_times_agree_with_the_report(seed: int) -> None:
    events = journal(random.Random(seed))
    full = {f.fault_id: f for f in build_report(events).faults}
    online = judged_online(events)
    assert set(online) == set(full)
    for fid, f in full.items():
        o = online[fid]
        assert (o.verdict, o.recovered) == (f.verdict, f.recovered), fid
        assert o.time_to_recover == pytest.approx(f.time_to_recover), fid


def test_a_fault_is_judged_soon_after_its_window_not_at_the_end() -> None:
    events = [fault_event("inject", 0, "f1", "web")]
    events += [probe_event(t / 2, "site", not 1 <= t / 2 <= 3, 5.0, []) for t in range(0, 8)]
    events.append(fault_event("heal", 4, "f1", "web", how="healed", injected_at=T0))
    outcomes = FaultOutcomes()
    assert all(outcomes.observe(e) == [] for e in events)  # still inside heal + SETTLE_S
    judged = []
    t = 4.0
    while not judged and t < 60:
        t += 0.5
        judged = outcomes.observe(probe_event(t, "site", True, 5.0, []))
    assert judged and judged[0].fault_id == "f1", "judged once the settle window passed"
    assert 45.0 < t < 47.0  # heal + SETTLE_S, then LATE_S for checks still running
    assert judged[0].verdict == "outage"  # 5 of 8 checks failed before recovery
    assert judged[0].time_to_recover == pytest.approx(3.495)
    assert outcomes.flush() == []


def test_a_probe_that_never_recovers_is_judged_after_give_up_and_memory_is_freed() -> None:
    outcomes = FaultOutcomes(give_up_s=60)
    outcomes.observe(probe_event(-1, "db", True, 1.0, ["db"]))
    outcomes.observe(fault_event("inject", 0, "f1", "db"))
    outcomes.observe(fault_event("heal", 2, "f1", "db", how="healed", injected_at=T0))
    judged = []
    t = 0.0
    while not judged and t < 200:
        t += 1
        judged = outcomes.observe(probe_event(t, "db", False, 1.0, ["db"]))
    assert judged[0].verdict == "outage" and not judged[0].recovered
    assert 61 < t < 64
    assert outcomes._events == []  # nothing kept once no fault is pending
    outcomes.observe(probe_event(t + 1, "db", False, 1.0, ["db"]))
    assert outcomes._events == []


def test_group_outcomes_keep_the_worst_fault_per_group() -> None:
    events = [fault_event("inject", 0, "f1", "web")]
    events += [probe_event(t, "site", True, 1.0, []) for t in range(1, 4)]
    events.append(fault_event("heal", 3, "f1", "web", how="healed", injected_at=T0))
    events.append(fault_event("inject", 20, "f2", "web"))
    events += [probe_event(t, "site", t > 40, 1.0, []) for t in range(21, 60)]
    events.append(fault_event("heal", 24, "f2", "web", how="healed", injected_at=T0 + 20))
    groups = GroupOutcomes()
    groups.add(judged_online(events).values())
    [(verdict, count)] = groups.verdicts()
    assert (verdict.group, verdict.verdict, count) == ("web", "outage", 2)
    assert "pause of web-1" in verdict.reason
