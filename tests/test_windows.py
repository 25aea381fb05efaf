"""One time-window implementation (agent/windows.py) for the agent's schedule, its gate and
the coordinator's admission: the same moment gets the same answer from all three."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.coordinator.admission import in_windows
from agent.coordinator.policy import FleetPolicy
from agent.errors import ConfigError
from agent.gate import GateState, Timing, why_closed
from agent.windows import check_timezone, in_window, parse_window

pytestmark = pytest.mark.pure

WEEKDAYS = (parse_window("Mon-Fri 09:00-17:00", "w"),)
# Monday 2026-11-30 08:59:59 UTC, then one second later
MON_0859 = dt.datetime(2026, 11, 30, 8, 59, 59, tzinfo=dt.UTC).timestamp()


def test_edges_in_utc_and_in_a_named_zone() -> None:
    assert not in_window(MON_0859, WEEKDAYS, "UTC")
    assert in_window(MON_0859 + 1, WEEKDAYS, "UTC")
    assert not in_window(MON_0859 + 1 + 8 * 3600, WEEKDAYS, "UTC")  # 17:00 is outside
    # 09:00 UTC is 10:00 in Berlin (winter): inside there from 08:00 UTC
    assert in_window(MON_0859 - 3600 + 1, WEEKDAYS, "Europe/Berlin")
    assert in_window(MON_0859, (), "UTC")  # no windows: any time


def test_parse_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"schedule.windows\[0\]"):
        parse_window("Mon-Fri 17:00-09:00", "schedule.windows[0]")
    with pytest.raises(ConfigError, match="unknown time zone"):
        check_timezone("Mars/Olympus", "fleet.timezone")


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.integers(min_value=0, max_value=14 * 24 * 3600),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)
def test_gate_and_coordinator_agree_on_every_moment(seconds: int, zone: str) -> None:
    now = MON_0859 + seconds
    wall = dt.datetime.fromtimestamp(now, dt.UTC)
    fleet = FleetPolicy(min_gap=0, windows=WEEKDAYS, timezone=zone)
    agent = why_closed(
        GateState(
            now=now, timing=Timing(min_gap=0, windows=WEEKDAYS, timezone=zone), max_concurrent=1
        )
    )
    inside = in_window(now, WEEKDAYS, zone)
    assert in_windows(fleet, wall) == inside
    assert (agent is None) == inside
