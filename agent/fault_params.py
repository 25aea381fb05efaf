"""Every fault's parameters and their rules, in one place for the config and the faults.

The config validates `[faults.<name>]` tables with these rules (errors name the key path);
the faults read their parameters with the same defaults and check them again with the same
rules at inject (a record can come from an older ledger or a one-off). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.durations import parse_duration

DEFAULTS: dict[str, dict[str, Any]] = {
    "kill": {"signal": "SIGKILL", "mode": "crash"},  # mode: crash (host PID) | api
    "stop": {"timeout": "10s"},
    "pause": {},
    "restart": {"timeout": "10s"},
    "partition": {"mode": "isolate", "from_group": "", "host_ports": True},
    "loss": {"percent": 30.0},
    "latency": {"delay": "200ms"},
    "jitter": {"delay": "100ms", "jitter": "50ms"},
    "bandwidth": {"rate": "1mbit"},
    "disconnect": {"network": ""},
}
DURATION_PARAMS = ("timeout", "delay", "jitter")
SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGABRT", "SIGSEGV", "SIGUSR1")
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("kill", "mode"): ("crash", "api"),
    ("partition", "mode"): ("isolate", "split", "from"),
}
_RATE = re.compile(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps)")
_RATE_BITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3, "mbps": 8e6}


def param(params: Mapping[str, Any], fault: str, key: str) -> Any:
    """The parameter as given, else the fault's default."""
    value = params.get(key)
    return DEFAULTS[fault][key] if value is None else value


def seconds(params: Mapping[str, Any], fault: str, key: str) -> float:
    """A duration parameter in seconds (given as seconds or as text like '10s')."""
    return parse_duration(param(params, fault, key), where=f"faults.{fault}.{key}")


def rate_bits(rate: str) -> float | None:
    """Bits per second of a tc rate like '1mbit' or '500kbps' (None: not a rate)."""
    match = _RATE.fullmatch(rate)
    return None if match is None else float(match.group(1)) * _RATE_BITS[match.group(2)]


def rate_problem(rate: str) -> str | None:
    if rate_bits(rate) is None:
        return f"expected a rate like '1mbit' or '500kbit', got {rate!r}"
    return None


def percent_problem(percent: float) -> str | None:
    if not 0.0 <= percent <= 100.0:
        return f"must be between 0 and 100, got {percent:g}"
    return None


def choice_problem(fault: str, key: str, value: str) -> str | None:
    choices = CHOICES.get((fault, key))
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(choices)}, got {value!r}"
    return None


def signal_problem(name: str) -> str | None:
    if name not in SIGNALS:
        return f"unknown signal (use one of {', '.join(SIGNALS)})"
    return None


def missing_partner(fault: str, params: Mapping[str, Any]) -> tuple[str, str] | None:
    """(key, why) when one parameter needs another that is not given."""
    if fault == "partition" and params.get("mode") == "from" and not params.get("from_group"):
        return "from_group", "mode 'from' needs from_group, the group to cut off from"
    return None
