"""Steady-state probes: HTTP and TCP checks run continuously in daemon threads.

Effects only (sockets, threads); the window arithmetic and the stop condition
live in agent/availability.py. Every result is journaled as a `probe` event:

    {"event": "probe", "probe": "site", "kind": "http", "endpoint": "http://...",
     "ok": false, "latency_ms": 1001.2, "status": null, "detail": "no answer within 1s"}

With `samples = N` (N > 1) a probe starts N checks per interval on a fixed
schedule (one every interval/N), each on a short-lived thread, whether or not
the earlier ones have answered: a check waiting out its timeout neither delays
nor drops the next (a sequential prober would sample a slow, failing backend
less often than a healthy one). A balancer spreading requests over replicas is
sampled the way independent users hit it. A probe that declares `groups` journals them, and
the report judges only those groups' faults against it.

A check never takes much longer than its timeout: a timer shuts the socket down
at the deadline, so a server that trickles bytes cannot hold a probe thread.
(Name resolution is the exception: use an address or an /etc/hosts name.)
The engine never waits on a probe: it reads `snapshot()` and `halt_reason()`.
"""

from __future__ import annotations

import http.client
import math
import socket
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent import availability
from agent.config import Probe, StopSection
from agent.durations import format_duration
from agent.journal import Journal

MAX_BODY = 1 << 20  # bytes read when looking for `body_contains`
KEEP_SAMPLES = 20_000  # per probe, in memory (the journal keeps them all)
USER_AGENT = "chaos-agent-probe"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    detail: str
    status: int | None = None


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _Deadline:
    """Shuts a socket down when the time is up, interrupting any blocking call."""

    def __init__(self, seconds: float) -> None:
        self.sock: socket.socket | None = None
        self.expired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        self.expired = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _describe_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {format_duration(timeout)}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without a response"
    if isinstance(exc, socket.gaierror):
        return f"name not resolved: {exc.strerror}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


def check_http(probe: Probe) -> ProbeResult:
    """GET `probe.url`; ok when the status matches and the body has the substring.

    Redirects are not followed: a 302 is a 302.
    """
    began = time.monotonic()
    parts = urllib.parse.urlsplit(probe.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname or "",
            parts.port,
            timeout=probe.timeout,
            context=ssl.create_default_context(),
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=probe.timeout)
    status: int | None = None
    with _Deadline(probe.timeout) as deadline:
        try:
            conn.connect()
            deadline.sock = conn.sock
            conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Connection": "close"})
            response = conn.getresponse()
            status = response.status
            if status != probe.expect_status:
                detail = f"HTTP {status}, expected {probe.expect_status}"
                return ProbeResult(False, _ms(began), detail, status)
            if probe.body_contains:
                body = response.read(MAX_BODY)
                if deadline.expired:  # the shutdown ends the read early, without an error
                    took = format_duration(probe.timeout)
                    detail = f"HTTP {status} but the body did not arrive within {took}"
                    return ProbeResult(False, _ms(began), detail, status)
                if probe.body_contains.encode("utf-8") not in body:
                    detail = f"HTTP {status} but the body lacks {probe.body_contains!r}"
                    return ProbeResult(False, _ms(began), detail[:200], status)
            return ProbeResult(True, _ms(began), f"HTTP {status}", status)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.expired:
                detail = f"no answer within {format_duration(probe.timeout)}"
            else:
                detail = _describe_error(exc, probe.timeout)
            return ProbeResult(False, _ms(began), detail, status)
        finally:
            conn.close()


def check_tcp(probe: Probe) -> ProbeResult:
    """Connect to `probe.address` (host:port) within the timeout, then close."""
    began = time.monotonic()
    try:
        host, port = _host_port(probe.address)
        with socket.create_connection((host, port), timeout=probe.timeout):
            pass
    except (OSError, ValueError) as exc:
        return ProbeResult(False, _ms(began), _describe_error(exc, probe.timeout))
    return ProbeResult(True, _ms(began), "connected")


def run_check(probe: Probe) -> ProbeResult:
    """One check of either kind; never raises."""
    try:
        return check_http(probe) if probe.kind == "http" else check_tcp(probe)
    except Exception as exc:  # noqa: BLE001 - a probe bug must not kill its thread
        return ProbeResult(False, 0.0, f"probe error: {type(exc).__name__}: {exc}"[:200])


def _ms(began: float) -> float:
    return round((time.monotonic() - began) * 1000, 1)


def endpoint(probe: Probe) -> str:
    return probe.url if probe.kind == "http" else probe.address


class ProbeRunner:
    """One daemon thread per probe, each checking at its interval and journaling results."""

    def __init__(
        self,
        probes: tuple[Probe, ...],
        journal: Journal,
        *,
        window: float = 60.0,
        check: Callable[[Probe], ProbeResult] = run_check,
    ) -> None:
        self.probes = probes
        self.journal = journal
        self.window = window  # for snapshot(); halt_reason() uses the stop section's window
        self._check = check
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []  # checks in flight (samples > 1)
        self._samples: dict[str, deque[availability.Sample]] = {
            p.name: deque(maxlen=KEEP_SAMPLES) for p in probes
        }
        self._last: dict[str, dict[str, Any]] = {}
        self._streak: dict[str, int] = {p.name: 0 for p in probes}

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for probe in self.probes:
            loop = self._loop if probe.samples <= 1 else self._schedule
            thread = threading.Thread(
                target=loop, args=(probe,), name=f"probe-{probe.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def signal_stop(self) -> None:
        """Tell every thread to stop, without waiting (a check in progress runs out)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop every thread; waits at most `timeout` (default: the longest probe timeout + 1s)."""
        self._stop.set()
        budget = (
            timeout if timeout is not None else max((p.timeout for p in self.probes), default=0) + 1
        )
        until = time.monotonic() + budget
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))
        with self._lock:
            workers = list(self._workers)
        for thread in workers:
            thread.join(max(0.0, until - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    def _loop(self, probe: Probe) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            result = self._check(probe)
            if self._stop.is_set():
                break
            self.record(probe, result)
            self._stop.wait(max(0.0, probe.interval - (time.monotonic() - began)))

    def _schedule(self, probe: Probe) -> None:
        """Start a check every interval/samples on its own thread (open loop)."""
        spacing = probe.interval / probe.samples
        limit = math.ceil(probe.timeout / spacing) + 1  # checks that can be in flight
        due = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                self._workers = [w for w in self._workers if w.is_alive()]
                busy = sum(1 for w in self._workers if w.name == f"probe-{probe.name}-check")
                if busy < limit:
                    worker = threading.Thread(
                        target=self._one, args=(probe,), name=f"probe-{probe.name}-check"
                    )
                    worker.daemon = True
                    self._workers.append(worker)
                    worker.start()
            now = time.monotonic()
            due = max(due + spacing, now)
            self._stop.wait(due - now)

    def _one(self, probe: Probe) -> None:
        result = self._check(probe)
        if not self._stop.is_set():
            self.record(probe, result)

    def record(self, probe: Probe, result: ProbeResult) -> None:
        """Journal one result and remember it (public for the engine's tests)."""
        extra: dict[str, Any] = {"groups": list(probe.groups)} if probe.groups else {}
        entry = self.journal.write(
            "probe",
            probe=probe.name,
            kind=probe.kind,
            endpoint=endpoint(probe),
            ok=result.ok,
            latency_ms=result.latency_ms,
            status=result.status,
            detail=result.detail,
            **extra,
        )
        # the journal's `t` is when the check ended; the sample is placed at its start
        t = float(entry["t"]) - max(0.0, result.latency_ms) / 1000.0
        with self._lock:
            self._samples.setdefault(probe.name, deque(maxlen=KEEP_SAMPLES)).append((t, result.ok))
            self._streak[probe.name] = 0 if result.ok else self._streak.get(probe.name, 0) + 1
            self._last[probe.name] = {
                "last_ok": result.ok,
                "last_detail": result.detail,
                "last_t": t,
                "latency_ms": result.latency_ms,
                "status": result.status,
            }

    def snapshot(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Per probe: last result, consecutive failures, and ok/total over `window` seconds."""
        at = time.time() if now is None else now
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for probe in self.probes:
                ratio = availability.window_counts(self._samples[probe.name], at, self.window)
                last = self._last.get(probe.name, {})
                out[probe.name] = {
                    "kind": probe.kind,
                    "endpoint": endpoint(probe),
                    "last_ok": last.get("last_ok"),
                    "last_detail": last.get("last_detail", "no result yet"),
                    "last_t": last.get("last_t"),
                    "latency_ms": last.get("latency_ms"),
                    "failures_in_a_row": self._streak.get(probe.name, 0),
                    "ok": ratio.ok,
                    "total": ratio.total,
                    "availability": ratio.value,
                    "window": self.window,
                }
        return out

    def halt_reason(self, stop: StopSection, now: float | None = None) -> str | None:
        """A sentence naming the probe and its figures if the stop condition is met."""
        if stop.min_availability <= 0:
            return None
        at = time.time() if now is None else now
        with self._lock:
            samples = {name: list(s) for name, s in self._samples.items()}
        return availability.halt_reason(samples, stop, at)
