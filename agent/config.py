"""Configuration: TOML (tomllib) -> validated, frozen dataclasses.

Every error names the file and the key path, and says how to fix it.
An embedded default works with no file at all.
"""

from __future__ import annotations

import math
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import model
from agent.durations import parse_duration
from agent.errors import ConfigError, UsageError
from agent.fault_params import DEFAULTS as FAULT_PARAMS
from agent.fault_params import (
    DURATION_PARAMS,
    choice_problem,
    missing_partner,
    rate_problem,
    signal_problem,
)
from agent.ops_config import MetricsSection, NotifySection, parse_metrics, parse_notify
from agent.windows import Window, check_timezone, parse_window

DEFAULT_CONFIG_TOML = """\
# chaos-agent embedded default: pause, stop, kill or restart one replica at a
# time among containers labelled chaos.enable=true, every ~2 minutes.
[agent]
state_dir = ""          # default: /var/lib/chaos-agent as root, else ~/.local/state/chaos-agent

[targets]
min_replicas = 2
min_healthy = 1
max_per_group = 1
max_concurrent = 1

[schedule]
mean_interval = "2m"
min_gap = "30s"
first_after = "10s"
duration = "30s"

[faults]
enabled = ["kill", "stop", "pause", "restart"]
"""

# Known parameters per fault and their defaults; values are validated below.
PROBE_TIMEOUT_MAX = 30.0  # a check slower than this tells nothing; shutdown never waits on it


DEADMAN_MODES = ("auto", "process", "container", "systemd", "off")


def _deadman_mode(a: TomlTable) -> str:
    legacy = a.data.get("watchdog")
    if legacy is not None:  # before 0.3: watchdog = true|false
        if a.bool("watchdog", True) is False:
            if "deadman" in a.data:
                raise a.err("watchdog", "give either watchdog = false or deadman, not both")
            return "off"
    mode = a.str("deadman", "auto")
    if mode not in DEADMAN_MODES:
        raise a.err("deadman", f"expected one of {', '.join(DEADMAN_MODES)}, got {mode!r}")
    return mode


def _default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/chaos-agent"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "chaos-agent")


@dataclass(frozen=True)
class AgentSection:
    host: str
    state_dir: Path
    journal: Path
    kill_switch: Path
    dry_run: bool = False
    seed: int | None = None
    heal_retries: int = 5  # failed heals before a fault is marked stuck
    stop_timeout: float = 8.0  # budget to heal everything on SIGTERM (fits docker's 10 s)
    deadman: str = "auto"  # where the dead-man heal lives: auto|process|container|systemd|off
    journal_max_bytes: int = 64 * 1024 * 1024  # rotate the journal past this size (0: never)
    journal_keep: int = 4  # rotated journal files kept (journal.jsonl.1 .. .N)


@dataclass(frozen=True)
class TargetsSection:
    label: str = model.LABEL_ENABLE
    value: str = "true"
    min_replicas: int = 2
    min_healthy: int | float = 1  # int, or a fraction (from "50%": rounds up, the safe way)
    max_per_group: int | float = 1  # int, or a fraction (from "34%": rounds down)
    max_concurrent: int = 1


@dataclass(frozen=True)
class ScheduleSection:
    mean_interval: float = 120.0
    min_gap: float = 30.0
    first_after: float = 10.0
    duration: float = 30.0
    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"


@dataclass(frozen=True)
class FaultsSection:
    enabled: tuple[str, ...] = model.CONTAINER_FAULTS
    weights: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def weight(self, fault: str) -> float:
        return float(self.weights.get(fault, 1.0))

    def params_for(self, fault: str) -> dict[str, Any]:
        """Defaults merged with [faults.<name>]; durations are float seconds."""
        merged = dict(FAULT_PARAMS.get(fault, {}))
        merged.update(self.params.get(fault, {}))
        for key in DURATION_PARAMS:
            if isinstance(merged.get(key), str):
                merged[key] = parse_duration(merged[key], where=f"faults.{fault}.{key}")
        return merged


@dataclass(frozen=True)
class ProcessGroup:
    group: str
    match: str = ""  # regex searched in the joined command line
    env: str = ""  # "NAME=VALUE" the process must carry in its environment
    min_replicas: int = 2
    min_healthy: int = 1
    faults: tuple[str, ...] = model.PROCESS_FAULTS
    signal: str = "SIGKILL"


@dataclass(frozen=True)
class Probe:
    name: str
    kind: str  # "http" | "tcp"
    url: str = ""
    address: str = ""  # host:port for tcp
    expect_status: int = 200
    body_contains: str = ""
    interval: float = 1.0
    timeout: float = 1.0
    samples: int = 1  # checks per interval, spread evenly over it, each on its own thread
    groups: tuple[str, ...] = ()  # groups (or compose projects) it speaks for; () = all


MAX_PROBE_SAMPLES = 20  # checks per interval (threads per probe)


@dataclass(frozen=True)
class StopSection:
    """Stop condition: halt, heal and exit non-zero if availability drops below a floor."""

    min_availability: float = 0.0  # 0 disables; e.g. 0.8 for 80 %
    window: float = 60.0
    min_samples: int = 5


@dataclass(frozen=True)
class CoordinatorSection:
    enabled: bool = False
    host: str = ""
    port: int = 22
    user: str = "chaos"
    key: str = ""  # private key path
    known_hosts: str = "~/.ssh/known_hosts"
    accept_new_host_key: bool = False  # only when the user asks for it explicitly
    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    renew_margin: float = 5.0  # the local deadline ends this long before the lease TTL


@dataclass(frozen=True)
class Config:
    agent: AgentSection
    targets: TargetsSection = TargetsSection()
    schedule: ScheduleSection = ScheduleSection()
    faults: FaultsSection = FaultsSection()
    processes: tuple[ProcessGroup, ...] = ()
    probes: tuple[Probe, ...] = ()
    stop: StopSection = StopSection()
    coordinator: CoordinatorSection = CoordinatorSection()
    metrics: MetricsSection = MetricsSection()
    notify: NotifySection = NotifySection()
    source: str = "<embedded default>"


# --- validation helpers -------------------------------------------------------


class TomlTable:
    """Pops keys from one TOML table; anything left over is an unknown key."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {path} must be a table, got {_kind(data)}")
        self.data = dict(data)
        self.path = path
        self.source = source

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def err(self, key: str, text: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self._where(key)}: {text}")

    def has(self, key: str) -> bool:
        return key in self.data

    def str(self, key: str, default: str) -> str:
        value = self.data.pop(key, default)
        if not isinstance(value, str):
            raise self.err(key, f"expected a string, got {_kind(value)}")
        if "\x00" in value:
            raise self.err(key, "contains a NUL byte")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.pop(key, default)
        if not isinstance(value, bool):
            raise self.err(key, f"expected true or false, got {_kind(value)}")
        return value

    def int(self, key: str, default: int, *, minimum: int = 0, maximum: int = 1_000_000) -> int:
        value = self.data.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(key, f"expected a whole number, got {_kind(value)}")
        if not minimum <= value <= maximum:
            raise self.err(key, f"must be between {minimum} and {maximum}, got {value!r:.40}")
        return value

    def number(self, key: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self.data.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.err(key, f"expected a number, got {_kind(value)}")
        if isinstance(value, int) and not minimum <= value <= maximum:
            value = math.inf  # compared as an int: a 400-digit one must not overflow float()
        if not (minimum <= float(value) <= maximum) or math.isnan(value):
            raise self.err(key, f"must be between {minimum:g} and {maximum:g}, got {value!r:.40}")
        return float(value)

    def duration(
        self, key: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        value = self.data.pop(key, default)
        try:
            seconds = parse_duration(value, where=f"{self.source}: {self._where(key)}")
        except UsageError as exc:
            raise ConfigError(exc.message) from None
        if seconds < minimum:
            raise self.err(key, f"must be at least {minimum:g}s, got {value!r}")
        if maximum is not None and seconds > maximum:
            raise self.err(key, f"must be at most {maximum:g}s, got {value!r}")
        return seconds

    def count_or_percent(self, key: str, default: int | float) -> int | float:
        """An int, or "NN%" returned as a fraction in (0, 1]."""
        value = self.data.pop(key, default)
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
            if not match or not 0 < float(match.group(1)) <= 100:
                raise self.err(key, f"expected a count or a percentage like '50%', got {value!r}")
            return float(match.group(1)) / 100.0
        if isinstance(value, float) and not isinstance(value, bool) and 0 < value < 1:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.err(key, f"expected a count or a percentage like '50%', got {value!r}")
        return value

    def str_list(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.data.pop(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.err(key, "expected a list of strings")
        return tuple(value)

    def table(self, key: str) -> TomlTable:
        return TomlTable(self.data.pop(key, {}), self._where(key), self.source)

    def done(self) -> None:
        if self.data:
            key = sorted(self.data)[0]
            raise self.err(key, "unknown key (see `chaos-agent config show` for every key)")


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _fault_name(name: str, where: str, source: str, allowed: tuple[str, ...]) -> str:
    if name not in allowed:
        raise ConfigError(
            f"{source}: {where}: unknown fault {name!r} (known: {', '.join(allowed)})"
        )
    return name


def _parse_fault_params(fault: str, table: TomlTable) -> dict[str, Any]:
    out: dict[str, Any] = {}
    defaults = FAULT_PARAMS[fault]
    for key, default in defaults.items():
        if not table.has(key):
            continue
        if key in DURATION_PARAMS:
            out[key] = table.duration(key, 0.0)
        elif key == "percent":
            out[key] = table.number(key, default, minimum=0.0, maximum=100.0)
        elif key == "host_ports":
            out[key] = table.bool(key, default)
        else:
            value = table.str(key, default)
            if key == "signal":
                value = value.upper()
                value = value if value.startswith("SIG") else "SIG" + value
                problem = signal_problem(value)
            elif key == "rate":
                problem = rate_problem(value)
            else:
                problem = choice_problem(fault, key, value)
            if problem:
                raise table.err(key, problem)
            out[key] = value
    partner = missing_partner(fault, out)
    if partner:
        raise table.err(*partner)
    table.done()
    return out


# --- entry points ---------------------------------------------------------------


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    root = TomlTable(data, "", source)

    a = root.table("agent")
    state_dir = Path(os.path.expanduser(a.str("state_dir", "") or _default_state_dir()))
    journal = a.str("journal", "")
    kill_switch = a.str("kill_switch", "")
    seed_raw = a.data.pop("seed", None)
    if seed_raw is not None and (isinstance(seed_raw, bool) or not isinstance(seed_raw, int)):
        raise a.err("seed", f"expected a whole number, got {_kind(seed_raw)}")
    agent = AgentSection(
        host=a.str("host", "") or socket.gethostname(),
        state_dir=state_dir,
        journal=Path(os.path.expanduser(journal)) if journal else state_dir / "journal.jsonl",
        kill_switch=Path(os.path.expanduser(kill_switch)) if kill_switch else state_dir / "STOP",
        dry_run=a.bool("dry_run", False),
        seed=seed_raw,
        heal_retries=a.int("heal_retries", 5, minimum=1, maximum=1000),
        stop_timeout=a.duration("stop_timeout", 8.0, minimum=0.5),
        deadman=_deadman_mode(a),
        journal_max_bytes=a.int("journal_max_bytes", 64 * 1024 * 1024, maximum=2**40),
        journal_keep=a.int("journal_keep", 4, maximum=1000),
    )
    a.done()

    t = root.table("targets")
    targets = TargetsSection(
        label=t.str("label", model.LABEL_ENABLE),
        value=t.str("value", "true"),
        min_replicas=t.int("min_replicas", 2, minimum=1),
        min_healthy=t.count_or_percent("min_healthy", 1),
        max_per_group=t.count_or_percent("max_per_group", 1),
        max_concurrent=t.int("max_concurrent", 1, minimum=0),
    )
    if not targets.label:
        raise t.err("label", "must not be empty")
    t.done()

    s = root.table("schedule")
    windows_raw = s.str_list("windows", ())
    schedule = ScheduleSection(
        mean_interval=s.duration("mean_interval", 120.0, minimum=0.1),
        min_gap=s.duration("min_gap", 30.0),
        first_after=s.duration("first_after", 10.0),
        duration=s.duration("duration", 30.0, minimum=0.1),
        windows=tuple(
            parse_window(w, f"{source}: schedule.windows[{i}]") for i, w in enumerate(windows_raw)
        ),
        timezone=s.str("timezone", "UTC"),
    )
    check_timezone(schedule.timezone, f"{source}: schedule.timezone")
    s.done()

    f = root.table("faults")
    enabled = tuple(
        _fault_name(n, f"faults.enabled[{i}]", source, model.ALL_FAULTS)
        for i, n in enumerate(f.str_list("enabled", model.CONTAINER_FAULTS))
    )
    weights_t = f.table("weights")
    weights: dict[str, float] = {}
    for name in list(weights_t.data):
        _fault_name(name, f"faults.weights.{name}", source, model.ALL_FAULTS)
        weights[name] = weights_t.number(name, 1.0, minimum=0.0, maximum=1e6)
    params: dict[str, dict[str, Any]] = {}
    for name in list(f.data):
        if name in FAULT_PARAMS and isinstance(f.data[name], dict):
            params[name] = _parse_fault_params(name, f.table(name))
    f.done()
    faults = FaultsSection(enabled=enabled, weights=weights, params=params)

    processes = []
    raw_procs = root.data.pop("processes", [])
    if not isinstance(raw_procs, list):
        raise ConfigError(f"{source}: processes must be an array of tables ([[processes]])")
    for i, raw in enumerate(raw_procs):
        p = TomlTable(raw, f"processes[{i}]", source)
        group = p.str("group", "")
        if not group:
            raise p.err("group", "every [[processes]] entry needs a group name")
        match = p.str("match", "")
        env = p.str("env", "")
        if not match and not env:
            raise p.err("match", "give match (a command-line regex) and/or env (NAME=VALUE)")
        if match:
            try:
                re.compile(match)
            except re.error as exc:
                raise p.err("match", f"invalid regular expression: {exc}") from None
        if env and "=" not in env:
            raise p.err("env", f"expected NAME=VALUE, got {env!r}")
        pfaults = tuple(
            _fault_name(n, f"processes[{i}].faults[{j}]", source, model.PROCESS_FAULTS)
            for j, n in enumerate(p.str_list("faults", model.PROCESS_FAULTS))
        )
        signal_name = p.str("signal", "SIGKILL").upper()
        problem = signal_problem(signal_name)
        if problem:
            raise p.err("signal", problem)
        processes.append(
            ProcessGroup(
                group=group,
                match=match,
                env=env,
                min_replicas=p.int("min_replicas", targets.min_replicas, minimum=1),
                min_healthy=p.int("min_healthy", 1, minimum=0),
                faults=pfaults,
                signal=signal_name,
            )
        )
        p.done()

    probes = []
    raw_probes = root.data.pop("probes", [])
    if not isinstance(raw_probes, list):
        raise ConfigError(f"{source}: probes must be an array of tables ([[probes]])")
    for i, raw in enumerate(raw_probes):
        p = TomlTable(raw, f"probes[{i}]", source)
        url = p.str("url", "")
        address = p.str("address", "")
        kind = p.str("kind", "http" if url else "tcp")
        if kind not in ("http", "tcp"):
            raise p.err("kind", f"must be http or tcp, got {kind!r}")
        if kind == "http" and not re.match(r"https?://", url):
            raise p.err("url", "an http probe needs url = 'http://host:port/path'")
        if kind == "tcp" and not re.fullmatch(r"\[?[^\s\]]+\]?:\d{1,5}", address):
            raise p.err("address", "a tcp probe needs address = 'host:port'")
        probes.append(
            Probe(
                name=p.str("name", f"probe{i + 1}"),
                kind=kind,
                url=url,
                address=address,
                expect_status=p.int("expect_status", 200, minimum=100, maximum=599),
                body_contains=p.str("body_contains", ""),
                interval=p.duration("interval", 1.0, minimum=0.05),
                timeout=p.duration("timeout", 1.0, minimum=0.05, maximum=PROBE_TIMEOUT_MAX),
                samples=p.int("samples", 1, minimum=1, maximum=MAX_PROBE_SAMPLES),
                groups=p.str_list("groups", ()),
            )
        )
        p.done()

    st = root.table("stop")
    stop = StopSection(
        min_availability=st.number("min_availability", 0.0, minimum=0.0, maximum=1.0),
        window=st.duration("window", 60.0, minimum=1.0),
        min_samples=st.int("min_samples", 5, minimum=1),
    )
    st.done()

    c = root.table("coordinator")
    coordinator = CoordinatorSection(
        enabled=c.bool("enabled", False),
        host=c.str("host", ""),
        port=c.int("port", 22, minimum=1, maximum=65535),
        user=c.str("user", "chaos"),
        key=c.str("key", ""),
        known_hosts=c.str("known_hosts", "~/.ssh/known_hosts"),
        accept_new_host_key=c.bool("accept_new_host_key", False),
        connect_timeout=c.duration("connect_timeout", 5.0, minimum=0.1),
        request_timeout=c.duration("request_timeout", 5.0, minimum=0.1),
        # every coordinator call is bounded by the nearest local lease deadline, so the
        # margin need not cover the call timeouts; it must leave time to heal: not 0
        renew_margin=c.duration("renew_margin", 5.0, minimum=0.1),
    )
    if coordinator.enabled and not coordinator.host:
        raise c.err("host", "the coordinator is enabled but has no host")
    c.done()

    metrics = parse_metrics(root.table("metrics"))
    notify = parse_notify(root.table("notify"))
    root.done()
    return Config(
        agent=agent,
        targets=targets,
        schedule=schedule,
        faults=faults,
        processes=tuple(processes),
        probes=tuple(probes),
        stop=stop,
        coordinator=coordinator,
        metrics=metrics,
        notify=notify,
        source=source,
    )


def decode_toml(text: str, *, source: str) -> dict[str, Any]:
    """tomllib.loads with every failure as one ConfigError line, hostile input included."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: malformed TOML: {exc}") from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        raise ConfigError(f"{source}: malformed TOML: {str(exc)[:120]}") from None
    except RecursionError:
        raise ConfigError(f"{source}: malformed TOML: arrays or tables nested too deep") from None


def parse_toml_text(text: str, *, source: str) -> Config:
    return parse_config(decode_toml(text, source=source), source=source)


def read_toml_file(path: str | os.PathLike[str], *, what: str, missing_hint: str) -> dict[str, Any]:
    """Read and decode one TOML file; every failure is a one-line ConfigError."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} does not exist ({missing_hint})") from None
    except OSError as exc:
        raise ConfigError(f"{what} {p} cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not valid UTF-8 at byte {exc.start}") from None
    return decode_toml(text, source=str(p))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load from `path`, $CHAOS_AGENT_CONFIG, or the embedded default."""
    chosen = path or os.environ.get("CHAOS_AGENT_CONFIG") or ""
    if not chosen:
        return parse_toml_text(DEFAULT_CONFIG_TOML, source="<embedded default>")
    data = read_toml_file(
        chosen, what="config file", missing_hint="omit --config to use the default"
    )
    return parse_config(data, source=str(Path(chosen)))


def resolve_fraction(value: int | float, members: int, *, round_up: bool) -> int:
    """A count stays a count; a fraction of `members` rounds the safe way."""
    if isinstance(value, int):
        return value
    exact = value * members
    return math.ceil(exact - 1e-9) if round_up else math.floor(exact + 1e-9)
