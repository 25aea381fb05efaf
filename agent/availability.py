"""Availability over a sliding window, and the stop condition built on it.

Pure: no clock, no threads, no I/O. A sample is `(t, ok)` with `t` in unix seconds.
The probe runner (agent/probes.py) feeds it; the report uses the same counting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.config import StopSection
from agent.durations import format_duration

Sample = tuple[float, bool]


@dataclass(frozen=True)
class Ratio:
    """`ok` successes out of `total` samples."""

    ok: int = 0
    total: int = 0

    @property
    def value(self) -> float | None:
        """The fraction, or None when there were no samples (unknown, not 100 %)."""
        return self.ok / self.total if self.total else None

    def percent(self) -> str:
        value = self.value
        return "n/a" if value is None else f"{value * 100:.1f}%"


def window_counts(samples: Iterable[Sample], now: float, window: float) -> Ratio:
    """Samples with `now - window < t <= now`; samples from the future are ignored."""
    ok = total = 0
    start = now - window
    for t, good in samples:
        if start < t <= now:
            total += 1
            ok += 1 if good else 0
    return Ratio(ok, total)


def count_between(samples: Iterable[Sample], start: float, end: float) -> Ratio:
    """Samples with `start <= t <= end` (closed interval, for fault windows)."""
    ok = total = 0
    for t, good in samples:
        if start <= t <= end:
            total += 1
            ok += 1 if good else 0
    return Ratio(ok, total)


def breach(name: str, ratio: Ratio, stop: StopSection) -> str | None:
    """A sentence if `ratio` violates the stop condition, else None.

    Disabled when `stop.min_availability` is 0; never fires on fewer than
    `stop.min_samples` samples (one early failure must not halt a run).
    """
    if stop.min_availability <= 0 or ratio.total < stop.min_samples:
        return None
    value = ratio.value
    if value is None or value >= stop.min_availability:
        return None
    return (
        f"probe {name!r} succeeded {ratio.ok} of {ratio.total} times "
        f"({value * 100:.1f}%) over the last {format_duration(stop.window)}, "
        f"below the stop condition's {stop.min_availability * 100:g}%"
    )


def halt_reason(
    samples: Mapping[str, Iterable[Sample]], stop: StopSection, now: float
) -> str | None:
    """The first probe (in the given order) whose recent availability breaches `stop`."""
    for name, probe_samples in samples.items():
        reason = breach(name, window_counts(probe_samples, now, stop.window), stop)
        if reason is not None:
            return reason
    return None
