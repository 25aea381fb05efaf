"""Time windows, one implementation for the agent's schedule and the coordinator's policy.

`Mon-Fri 09:00-17:00` style windows, parsed from the config (errors name the key path)
and asked "is this moment inside one?" in a named time zone. Pure: the moment is passed
in, never read from a clock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.errors import ConfigError


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0=Mon .. 6=Sun
    start_minute: int  # minutes after midnight
    end_minute: int


_DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_window(text: str, where: str) -> Window:
    """'Mon-Fri 09:00-17:00', 'Sat 10:00-12:00', 'daily 00:00-24:00'."""
    match = re.fullmatch(
        r"\s*([A-Za-z]{3,5})(?:-([A-Za-z]{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s*", text
    )
    if not match:
        raise ConfigError(f"{where}: {text!r} is not a window like 'Mon-Fri 09:00-17:00'")
    first, last = match.group(1).lower(), (match.group(2) or "").lower()
    if first == "daily" and not last:
        days = frozenset(range(7))
    else:
        if first not in _DAY_NAMES or (last and last not in _DAY_NAMES):
            raise ConfigError(f"{where}: {text!r}: days are Mon..Sun or 'daily'")
        a = _DAY_NAMES.index(first)
        b = _DAY_NAMES.index(last) if last else a
        days = frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))
    h1, m1, h2, m2 = (int(match.group(i)) for i in range(3, 7))
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or end <= start:
        raise ConfigError(f"{where}: {text!r}: times must be HH:MM with start before end")
    return Window(days=days, start_minute=start, end_minute=end)


def check_timezone(name: str, where: str) -> None:
    if name == "UTC":  # always known (in_window uses datetime's own UTC for it)
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: unknown time zone {name!r} (e.g. 'Europe/Berlin')") from None


def zone(name: str) -> dt.tzinfo:
    if name == "UTC":
        return dt.UTC
    from zoneinfo import ZoneInfo  # imported when used: it costs a CLI start ~15 ms

    return ZoneInfo(name)


def in_window(moment: float | dt.datetime, windows: Sequence[Window], timezone: str) -> bool:
    """True when `moment` (unix seconds, or an aware datetime) falls in one of `windows`
    in `timezone` (no windows: any time)."""
    if not windows:
        return True
    tz = zone(timezone)
    if isinstance(moment, dt.datetime):
        local = moment.astimezone(tz)
    else:
        local = dt.datetime.fromtimestamp(moment, tz)
    minute = local.hour * 60 + local.minute
    return any(
        local.weekday() in w.days and w.start_minute <= minute < w.end_minute for w in windows
    )
