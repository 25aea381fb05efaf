"""Server side of one agent's SSH session: what sshd's forced command runs.

Reads request lines from stdin, writes one reply line per request to stdout, and
exits cleanly on EOF. The agent's identity is the host name given on the command
line by the forced command of its key, never anything the client sends (a request
carrying a "host" field is refused). Nothing here raises on bad input: every
malformed, oversized or non-UTF-8 line gets an error reply and changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from agent.coordinator import protocol
from agent.coordinator.admission import Refusal
from agent.coordinator.policy import FleetPolicy, Stamp, load_policy_stamped
from agent.coordinator.protocol import ProtocolError
from agent.coordinator.store import Store, StoreError
from agent.errors import AgentError, ConfigError

IDLE_TIMEOUT = 100.0  # seconds without a request before a session ends (agents reconnect)
MAX_SESSIONS_PER_HOST = 4  # concurrent sessions one agent identity may hold
RATE = 20.0  # requests per second one session may send (a burst of BURST first)
BURST = 40.0


class PolicyCache:
    """Loads the policy file, and again whenever it changes on disk.

    A file that changed while being read is never adopted (the request is refused as
    with a broken policy, and the next one reads it again)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: Stamp | None = None
        self.policy: FleetPolicy | None = None
        self.error = ""

    def get(self) -> FleetPolicy | None:
        try:
            st = os.stat(self.path)
            stamp: Stamp | None = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        if stamp is None or stamp != self._stamp:
            try:
                self.policy, self._stamp = load_policy_stamped(self.path)
                self.error = ""
            except ConfigError as exc:
                self.policy, self.error, self._stamp = None, exc.one_line(), None
        return self.policy


class Session:
    def __init__(self, host: str, store: Store, policies: PolicyCache) -> None:
        if not protocol.valid_host(host):
            raise ConfigError(f"invalid host name {host[:80]!r}: use [A-Za-z0-9._-]{{1,64}}")
        self.host = host
        self.store = store
        self.policies = policies

    def handle(self, line: bytes) -> bytes:
        """One request line (without its newline) -> one reply line. Never raises."""
        try:
            request = protocol.parse_request(line)
        except ProtocolError as exc:
            return protocol.error_reply(exc.request_id, "bad_request", exc.one_line())
        try:
            return self._dispatch(request)
        except AgentError as exc:
            return protocol.error_reply(request.id, "unavailable", exc.one_line())
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the session
            return protocol.error_reply(request.id, "internal", type(exc).__name__)

    def _policy(self) -> FleetPolicy | Refusal:
        policy = self.policies.get()
        if policy is None:
            return Refusal("halted", f"coordinator policy unusable: {self.policies.error}")
        return policy

    def _dispatch(self, req: protocol.Request) -> bytes:
        if isinstance(req, protocol.Acquire):
            policy = self._policy()
            if isinstance(policy, Refusal):
                self.store.touch(self.host, "acquire")
                return protocol.error_reply(req.id, "policy", policy.reason)
            granted = self.store.acquire(
                policy, self.host, req.group, req.fault, req.duration, req.report
            )
            if isinstance(granted, Refusal):
                return protocol.error_reply(req.id, granted.code, granted.reason)
            return protocol.ok_reply(
                req.id,
                lease_id=granted.lease_id,
                token=granted.token,
                ttl=granted.ttl,
                host=self.host,
            )
        if isinstance(req, protocol.Renew):
            policy = self._policy()
            if isinstance(policy, Refusal):
                self.store.touch(self.host, "renew")
                return protocol.error_reply(req.id, "policy", policy.reason)
            renewed = self.store.renew(policy, self.host, req.lease_id, req.token)
            if isinstance(renewed, Refusal):
                return protocol.error_reply(req.id, renewed.code, renewed.reason)
            return protocol.ok_reply(
                req.id, lease_id=renewed.lease_id, token=renewed.token, ttl=renewed.ttl
            )
        if isinstance(req, protocol.Release):
            refused = self.store.release(self.host, req.lease_id, req.token)
            if refused is not None:
                return protocol.error_reply(req.id, refused.code, refused.reason)
            return protocol.ok_reply(req.id, released=True)
        if isinstance(req, protocol.Report):
            self.store.report(self.host, req.groups)
            return protocol.ok_reply(req.id)
        status = self.store.status(history=0)
        policy = self.policies.get()
        return protocol.ok_reply(
            req.id,
            host=self.host,
            halted=status["halted"],
            halt_reason=status["halt_reason"],
            live=len(status["live"]),
            mine=[
                {"lease_id": s["lease_id"], "token": s["token"], "expires_in": s["expires_in"]}
                for s in status["live"]
                if s["host"] == self.host
            ],
            policy_ok=policy is not None,
        )


def read_line(stream: BinaryIO, limit: int) -> tuple[bytes | None, bool]:
    """(line without newline, too_long). (None, False) at EOF; a partial last line is dropped."""
    chunk = stream.readline(limit + 1)
    if not chunk.endswith(b"\n"):
        if len(chunk) <= limit:
            return None, False  # EOF (possibly mid-line: the request never completed)
        while True:  # too long: discard up to the next newline
            chunk = stream.readline(limit + 1)
            if not chunk:
                return None, False
            if chunk.endswith(b"\n"):
                return b"", True
    line = chunk[:-1]
    if len(line) > limit - 1:
        return b"", True
    return line, False


class _Idle(Exception):
    pass


def _on_alarm(_signum: int, _frame: object) -> None:
    raise _Idle


def session_slot(db: Path, host: str, limit: int = MAX_SESSIONS_PER_HOST) -> int | None:
    """Hold one of `limit` per-identity slots (flock on a file next to the database, freed
    by the kernel when this process ends); the fd, or None if every slot is taken."""
    slots = db.with_name(db.name + ".sessions")
    for i in range(limit):
        try:
            slots.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(slots / f"{host}.{i}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StoreError(f"session slots in {slots}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return fd
    return None


class RateLimit:
    """A token bucket: `wait()` sleeps as long as needed to stay within `rate`/s."""

    def __init__(
        self,
        rate: float = RATE,
        burst: float = BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self.tokens, self.at = burst, clock()

    def wait(self) -> None:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            self._sleep((1.0 - self.tokens) / self.rate)
            self.tokens, self.at = 1.0, self._clock()
        self.tokens -= 1.0


def serve(
    host: str,
    db: Path,
    policy: Path,
    stdin: BinaryIO,
    stdout: BinaryIO,
    *,
    idle_timeout: float | None = None,
    max_sessions: int | None = None,
) -> int:
    """Serve requests until EOF, or until `idle_timeout` s pass without a request (needs
    the main thread: SIGALRM). With `max_sessions`, at most that many sessions of this
    host run at once; one more gets an error reply and ends. Returns the exit code."""
    store = Store(db, create=False)  # a wrong path must not start a fresh fencing counter
    slot = None
    previous = None
    try:
        if max_sessions is not None:
            slot = session_slot(db, host, max_sessions)
            if slot is None:
                stdout.write(
                    protocol.error_reply(
                        None, "unavailable", f"host {host} already has {max_sessions} sessions"
                    )
                )
                stdout.flush()
                return 1
        if idle_timeout is not None:
            previous = signal.signal(signal.SIGALRM, _on_alarm)
        session = Session(host, store, PolicyCache(policy))
        limiter = RateLimit()
        while True:
            try:
                if idle_timeout is not None:
                    signal.setitimer(signal.ITIMER_REAL, idle_timeout)
                line, too_long = read_line(stdin, protocol.MAX_LINE)
            except _Idle:
                return 0
            finally:
                if idle_timeout is not None:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            if line is None:
                return 0
            limiter.wait()
            if too_long:
                reply = protocol.error_reply(
                    None, "bad_request", f"line longer than {protocol.MAX_LINE} bytes"
                )
            else:
                reply = session.handle(line)
            try:
                stdout.write(reply)
                stdout.flush()
            except (BrokenPipeError, ConnectionResetError):
                return 0
    except _Idle:  # the alarm landed just outside the read: still idle, end quietly
        return 0
    finally:
        if previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if slot is not None:
            os.close(slot)
        with contextlib.suppress(Exception):
            store.close()
