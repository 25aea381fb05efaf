"""`chaos-agent inject` returns as soon as its last heal is settled, not one idle wake later."""

from __future__ import annotations

import pytest

from agent.one_off import wait_for_heals

pytestmark = pytest.mark.pure


class Loop:
    """What wait_for_heals drives: heals settle on the n-th heal_due; waits are counted."""

    def __init__(self, settle_on: int) -> None:
        self.active = ["a fault"]
        self.stop_requested = ""
        self.calls: list[str] = []
        self.settle_on = settle_on
        self.wake = self  # wait/clear below

    def renew_leases(self) -> None:
        self.calls.append("renew")

    def heal_due(self) -> None:
        self.calls.append("heal_due")
        if self.calls.count("heal_due") == self.settle_on:
            self.active = []

    def next_wakeup(self, end: float | None) -> float:
        return 1.0

    def wait(self, timeout: float) -> bool:
        self.calls.append("wait")
        return True

    def clear(self) -> None:
        pass


@pytest.mark.parametrize("settle_on", [1, 3])
def test_the_wait_ends_when_the_last_heal_is_settled(settle_on: int) -> None:
    loop = Loop(settle_on)
    wait_for_heals(loop)  # type: ignore[arg-type]
    assert loop.active == []
    assert loop.calls[-1] == "heal_due"  # no wait after the heal that emptied it
    assert loop.calls.count("wait") == settle_on - 1


def test_a_stop_request_ends_the_wait() -> None:
    loop = Loop(settle_on=99)
    loop.stop_requested = "SIGTERM"
    wait_for_heals(loop)  # type: ignore[arg-type]
    assert loop.calls == [] and loop.active == ["a fault"]
