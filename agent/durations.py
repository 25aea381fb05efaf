"""Human durations: "30s", "5m", "1h", "1h30m", "250ms"; a bare number means seconds."""

from __future__ import annotations

import re

from agent.errors import UsageError

MAX_DURATION = 7 * 86400.0  # the longest duration anything accepts (as the coordinator's)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object, *, where: str = "duration") -> float:
    """Seconds as a float; raises UsageError naming `where` on anything else."""
    if isinstance(value, bool):
        raise UsageError(f"{where}: {value!r} is not a duration (use 30s, 5m, 1h)")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = float("inf")
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                shown = value if len(value) <= 40 else value[:40] + "..."
                raise UsageError(f"{where}: {shown!r} is not a duration (use 30s, 5m, 1h)")
    else:
        raise UsageError(f"{where}: {type(value).__name__} is not a duration (use 30s, 5m, 1h)")
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise UsageError(f"{where}: must be a finite, non-negative duration, got {_shown(value)}")
    if seconds > MAX_DURATION:
        raise UsageError(f"{where}: must be at most 7d, got {_shown(value)}")
    return seconds


def positive_duration(value: str | None, default: float, option: str) -> float:
    """A command-line duration that must be more than 0 (`default` when not given)."""
    if value is None:
        return default
    seconds = parse_duration(value, where=option)
    if seconds <= 0:
        raise UsageError(f"{option}: must be more than 0, got {value!r}")
    return seconds


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.0f}s" if seconds == int(seconds) else f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
