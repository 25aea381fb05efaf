"""Prometheus metrics, built as an observer of journal events (subscribed in agent/wiring.py).

Names follow Prometheus conventions with the `chaos_agent_` prefix. Labels are bounded:
fault, group, probe, outcome, reason (a fixed code, never the free-text sentence), never a
container id. Served over HTTP (`[metrics] listen`/`port`, 127.0.0.1 by default) and/or
written for node_exporter's textfile collector (`[metrics] textfile`), atomically.

prometheus-client is an optional extra: `pip install 'chaos-agent[metrics]'`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from agent.errors import ConfigError
from agent.ops_config import MetricsSection
from agent.outcomes import FaultOutcomes

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
except ImportError:  # pragma: no cover - the extra is not installed
    CollectorRegistry = None  # type: ignore[assignment,misc]

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RECOVERY_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# skip sentences -> a bounded reason code (first match wins)
SKIP_CODES = (
    ("kill switch", "kill_switch"),
    ("injection blocked", "blocked"),
    ("coordinator", "coordinator"),
    ("discovery failed", "discovery"),
    ("lease", "lease"),
    ("window", "window"),
    ("stuck", "stuck"),
    ("no eligible", "no_eligible"),
    ("eligible", "no_eligible"),
    ("replica", "too_few_replicas"),
    ("healthy", "too_few_healthy"),
    ("concurrent", "max_concurrent"),
    ("max_per_group", "max_per_group"),
    ("no target", "no_targets"),
)


HEAL_OUTCOMES = ("healed", "gone", "environment", "watchdog", "failed")
NOTIFY_RESULTS = ("sent", "failed", "retried", "dropped")


def skip_code(reason: str) -> str:
    low = reason.lower()
    for needle, code in SKIP_CODES:
        if needle in low:
            return code
    return "other"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("chaos-agent")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "unknown"


class Metrics:
    """Turns journal events into Prometheus series; `observe` is the journal observer."""

    def __init__(
        self,
        *,
        host: str,
        window: float = 60.0,
        probes: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        if CollectorRegistry is None:
            raise ConfigError(
                "[metrics] needs prometheus-client: pip install 'chaos-agent[metrics]'"
            )
        r = self.registry = CollectorRegistry()
        p = "chaos_agent_"
        Info(p + "build", "chaos-agent version and host", registry=r).info(
            {"version": _version(), "host": host}
        )
        self.injected = Counter(p + "faults_injected", "Faults injected", ["fault", "group"], registry=r)  # fmt: skip
        self.decisions = Counter(p + "decisions", "Scheduled decisions by outcome", ["outcome"], registry=r)  # fmt: skip
        self.skips = Counter(p + "skips", "Scheduled attempts that did not fault, by reason", ["reason"], registry=r)  # fmt: skip
        self.active = Gauge(p + "active_faults", "Faults active now", ["fault", "group"], registry=r)  # fmt: skip
        self.duration = Histogram(p + "fault_duration_seconds", "Time from inject to heal", ["fault"], buckets=DURATION_BUCKETS, registry=r)  # fmt: skip
        self.lateness = Histogram(p + "heal_lateness_seconds", "Heal time minus the fault's deadline", ["fault"], buckets=LATENESS_BUCKETS, registry=r)  # fmt: skip
        self.recovery = Histogram(p + "time_to_recover_seconds", "From a fault's start until every probe that failed during it succeeded again (faults that hurt a probe and recovered)", ["fault"], buckets=RECOVERY_BUCKETS, registry=r)  # fmt: skip
        self.verdicts = Counter(p + "fault_verdicts", "Faults judged by the report's rules, by group and verdict", ["group", "verdict"], registry=r)  # fmt: skip
        self.heals = Counter(p + "heals", "Heal attempts by outcome", ["outcome"], registry=r)  # fmt: skip
        self.stuck = Gauge(p + "stuck_faults", "Faults whose heal is stuck", registry=r)  # fmt: skip
        self.probe_up = Gauge(p + "probe_up", "Last result of a probe (1 ok, 0 failed)", ["probe"], registry=r)  # fmt: skip
        self.probe_latency = Gauge(p + "probe_latency_seconds", "Latency of the last probe", ["probe"], registry=r)  # fmt: skip
        self.availability = Gauge(p + "probe_availability_ratio", "Share of ok probes over the stop window", ["probe"], registry=r)  # fmt: skip
        self.kill_switch = Gauge(p + "kill_switch_engaged", "1 while the kill switch is present", registry=r)  # fmt: skip
        self.halted = Gauge(p + "halted", "1 once a stop condition halted the run", registry=r)  # fmt: skip
        self.last_fault = Gauge(p + "last_fault_timestamp_seconds", "Unix time of the last injection", registry=r)  # fmt: skip
        self.leases = Counter(p + "lease_requests", "Lease requests by result", ["result"], registry=r)  # fmt: skip
        self.events = Counter(p + "journal_events", "Journal events by name", ["event"], registry=r)  # fmt: skip
        self.notifications = Counter(p + "notifications", "Notifications by target and result", ["target", "result"], registry=r)  # fmt: skip
        self.members = Gauge(p + "group_members", "Members of a group by state", ["group", "state"], registry=r)  # fmt: skip
        self.eligible = Gauge(p + "group_eligible_members", "Members the policy may fault now", ["group"], registry=r)  # fmt: skip
        self.next_fault = Gauge(p + "next_fault_timestamp_seconds", "Unix time of the next scheduled attempt", registry=r)  # fmt: skip
        self.up_since = Gauge(p + "start_timestamp_seconds", "Unix time the run started", registry=r)  # fmt: skip
        # known label values start at 0, so dashboards and rate() see them before they happen
        for code in {code for _, code in SKIP_CODES} | {"other"}:
            self.skips.labels(code)
        for outcome in HEAL_OUTCOMES:
            self.heals.labels(outcome)
        for outcome in ("injected", "skipped", "inject_failed"):
            self.decisions.labels(outcome)
        for result in ("granted", "refused", "unavailable"):
            self.leases.labels(result)
        self._window = window
        self._samples: dict[str, deque[tuple[float, bool]]] = {}
        self._active: dict[str, tuple[str, str]] = {}  # fault_id -> (fault, group)
        self._stuck: set[str] = set()
        self._outcomes = FaultOutcomes(probes=probes)
        self._lock = threading.Lock()

    # -- the observer ----------------------------------------------------------------------
    def observe(self, e: dict[str, Any]) -> None:
        name = str(e.get("event", ""))
        with self._lock:
            self.events.labels(name).inc()
            handler = getattr(self, "_on_" + name, None)
            if handler is not None:
                handler(e)
            for judged in self._outcomes.observe(e):
                self.verdicts.labels(judged.group, judged.verdict).inc()
                if judged.time_to_recover is not None:
                    self.recovery.labels(judged.fault).observe(judged.time_to_recover)

    def _fault_labels(self, e: dict[str, Any]) -> tuple[str, str]:
        return str(e.get("fault", "")), str(e.get("group", ""))

    def _on_start(self, e: dict[str, Any]) -> None:
        self.up_since.set(float(e.get("t", time.time())))

    def _on_inject(self, e: dict[str, Any]) -> None:
        fault, group = self._fault_labels(e)
        self.injected.labels(fault, group).inc()
        self.decisions.labels("injected").inc()
        self.leases.labels("granted").inc()
        self.last_fault.set(float(e.get("t", time.time())))
        self._activate(str(e.get("fault_id", "")), fault, group)

    def _on_recover(self, e: dict[str, Any]) -> None:
        fault, group = self._fault_labels(e)
        self._activate(str(e.get("fault_id", "")), fault, group)

    def _activate(self, fault_id: str, fault: str, group: str) -> None:
        if fault_id and fault_id not in self._active:
            self._active[fault_id] = (fault, group)
            self.active.labels(fault, group).inc()

    def _deactivate(self, fault_id: str) -> None:
        labels = self._active.pop(fault_id, None)
        if labels is not None:
            self.active.labels(*labels).dec()
        if fault_id in self._stuck:
            self._stuck.discard(fault_id)
            self.stuck.set(len(self._stuck))

    def _on_inject_failed(self, e: dict[str, Any]) -> None:
        self.decisions.labels("inject_failed").inc()

    def _on_skip(self, e: dict[str, Any]) -> None:
        code = skip_code(str(e.get("reason", "")))
        self.skips.labels(code).inc()
        self.decisions.labels("skipped").inc()
        if code == "lease":
            self.leases.labels("refused").inc()
        elif code == "coordinator":
            self.leases.labels("unavailable").inc()

    def _healed(self, e: dict[str, Any], outcome: str) -> None:
        fault = str(e.get("fault", ""))
        self.heals.labels(outcome).inc()
        t = float(e.get("t", time.time()))
        if isinstance(e.get("injected_at"), int | float):
            self.duration.labels(fault).observe(max(0.0, t - float(e["injected_at"])))
        if isinstance(e.get("deadline"), int | float):
            self.lateness.labels(fault).observe(max(0.0, t - float(e["deadline"])))
        self._deactivate(str(e.get("fault_id", "")))

    def _on_heal(self, e: dict[str, Any]) -> None:
        self._healed(e, str(e.get("how", "healed")) or "healed")

    def _on_healed_by_environment(self, e: dict[str, Any]) -> None:
        self._healed(e, "environment")

    def _on_watchdog(self, e: dict[str, Any]) -> None:
        if e.get("how") == "failed":
            self.heals.labels("failed").inc()
        else:
            self._healed(e, "watchdog")

    def _on_heal_failed(self, e: dict[str, Any]) -> None:
        self.heals.labels("failed").inc()

    def _on_stuck(self, e: dict[str, Any]) -> None:
        self._stuck.add(str(e.get("fault_id", "")))
        self.stuck.set(len(self._stuck))

    def _on_halt(self, e: dict[str, Any]) -> None:
        if "kill switch" in str(e.get("reason", "")):
            self.kill_switch.set(1)
        else:
            self.halted.set(1)

    def _on_resume(self, e: dict[str, Any]) -> None:
        self.kill_switch.set(0)

    def _on_probe(self, e: dict[str, Any]) -> None:
        probe = str(e.get("probe", ""))
        ok = bool(e.get("ok"))
        t = float(e.get("t", time.time()))
        self.probe_up.labels(probe).set(1 if ok else 0)
        if isinstance(e.get("latency_ms"), int | float):
            self.probe_latency.labels(probe).set(float(e["latency_ms"]) / 1000.0)
        samples = self._samples.setdefault(probe, deque())
        samples.append((t, ok))
        while samples and samples[0][0] < t - self._window:
            samples.popleft()
        self.availability.labels(probe).set(sum(1 for _, good in samples if good) / len(samples))

    def known_notify_targets(self, names: list[str]) -> None:
        for name in names:
            for result in NOTIFY_RESULTS:
                self.notifications.labels(name, result)

    def count_notification(self, target: str, result: str) -> None:
        with self._lock:
            self.notifications.labels(target, result).inc()

    def update_from_snapshot(self, snap: dict[str, Any]) -> None:
        """Group and schedule gauges from the engine's snapshot (the live view's data)."""
        with self._lock:
            self.members.clear()
            self.eligible.clear()
            for group in snap.get("groups", []):
                name = str(group.get("name", ""))
                states: dict[str, int] = {}
                eligible = 0
                for member in group.get("members", []):
                    state = str(member.get("state", ""))
                    states[state] = states.get(state, 0) + 1
                    eligible += 1 if member.get("eligible") else 0
                for state, count in states.items():
                    self.members.labels(name, state).set(count)
                self.eligible.labels(name).set(eligible)
            if snap.get("next_fault_at") is not None:
                self.next_fault.set(float(snap["next_fault_at"]))

    # -- exposition ------------------------------------------------------------------------
    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MetricsExporter:
    """Serves and/or writes the metrics; `start` and `stop` are idempotent."""

    def __init__(self, section: MetricsSection, metrics: Metrics) -> None:
        self.section = section
        self.metrics = metrics
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.port = 0

    def start(self) -> None:
        from prometheus_client import start_http_server

        if self.section.enabled and self._server is None:
            try:
                server, _thread = start_http_server(
                    self.section.port, addr=self.section.listen, registry=self.metrics.registry
                )
            except OSError as exc:
                raise ConfigError(
                    f"[metrics] cannot listen on {self.section.listen}:{self.section.port}: {exc.strerror}"
                ) from None
            self._server = server
            self.port = int(server.server_address[1])
        if self.section.textfile and self._thread is None:
            self._thread = threading.Thread(target=self._textfile_loop, daemon=True)
            self._thread.start()

    def write_textfile(self) -> None:
        from prometheus_client import write_to_textfile

        write_to_textfile(self.section.textfile, self.metrics.registry)  # tmp file + rename

    def _textfile_loop(self) -> None:
        while True:
            try:
                self.write_textfile()
            except OSError:
                pass  # best effort, like the journal
            if self._stop.wait(self.section.textfile_interval):
                break

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
            try:
                self.write_textfile()  # the final state
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
