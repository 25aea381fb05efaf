"""The coordinator's state: one SQLite database on the coordinator host.

WAL mode; every operation that decides anything runs in one `BEGIN IMMEDIATE`
transaction, so admissions from every agent's session process are serialized by
SQLite's write lock: read state, call the pure admission logic, write the result.

Times: `*_at` columns are the coordinator clock (CLOCK_BOOTTIME, shared by every
process on the host, never goes back; across a reboot the stored values are
shifted so the downtime counts as zero time, which keeps leases live longer, the
safe way). `*_wall` columns are unix seconds for display only.

A lease row is its history: granted_at .. ended_at (released or expired); rows
are never deleted by the protocol. The fencing counter only grows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.coordinator import admission
from agent.coordinator.admission import (
    AcquireRequest,
    FleetState,
    GroupHealth,
    LiveLease,
    Refusal,
)
from agent.coordinator.policy import FleetPolicy
from agent.coordinator.protocol import GroupCounts
from agent.errors import AgentError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fencing (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_token INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    lease_id TEXT PRIMARY KEY,
    token INTEGER NOT NULL UNIQUE,
    host TEXT NOT NULL,
    grp TEXT NOT NULL,
    fault TEXT NOT NULL,
    duration REAL NOT NULL,
    granted_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT,
    granted_wall REAL NOT NULL,
    ended_wall REAL,
    renewals INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS leases_open ON leases (ended_at) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY,
    last_contact_wall REAL NOT NULL,
    last_op TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    host TEXT NOT NULL,
    grp TEXT NOT NULL,
    members INTEGER NOT NULL,
    running INTEGER NOT NULL,
    healthy INTEGER NOT NULL,
    at REAL NOT NULL,
    at_wall REAL NOT NULL,
    PRIMARY KEY (host, grp)
);
CREATE INDEX IF NOT EXISTS reports_by_group ON reports (grp, at);
CREATE INDEX IF NOT EXISTS reports_by_host ON reports (host, at);
CREATE INDEX IF NOT EXISTS reports_by_age ON reports (at);
INSERT OR IGNORE INTO fencing (id, last_token) VALUES (1, 0);
"""

# Report rows one host keeps (its most recent groups): a hostile key cannot grow the
# table past this, and a decision reads only one group's fresh rows.
MAX_REPORTED_GROUPS = 256
REPORT_KEEP = 86400.0  # reports older than this are deleted (they no longer count anyway)


class StoreError(AgentError):
    """The coordinator database cannot be opened, read or written."""


def boot_clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def current_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Granted:
    lease_id: str
    token: int
    ttl: float
    expires_at: float


@dataclass(frozen=True)
class Interval:
    """One lease's recorded life: [start, end)."""

    lease_id: str
    host: str
    group: str
    start: float
    end: float


class Store:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = boot_clock,
        wall: Callable[[], float] = time.time,
        boot_id: Callable[[], str] = current_boot_id,
        busy_timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._wall = wall
        self._boot_id = boot_id
        try:
            if not self.path.exists():
                if not create:
                    raise StoreError(
                        f"no coordinator database at {self.path} (run `coordinator init`)"
                    )
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._create_schema()
        except sqlite3.Error as exc:
            raise StoreError(f"coordinator database {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"coordinator database {self.path}: {exc.strerror}") from None

    # -- transactions --------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[float]:
        """BEGIN IMMEDIATE; yields the coordinator clock read *after* taking the lock."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"coordinator database {self.path} is busy: {exc}") from None
        try:
            now = self._now()
            yield now
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _create_schema(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    def _meta(self, key: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _now(self) -> float:
        """Clock inside a transaction: never below the last value any process recorded."""
        clock = self._clock()
        boot = self._boot_id()
        last = float(self._meta("last_clock", "0") or 0)
        stored_boot = self._meta("boot_id")
        if stored_boot and boot and stored_boot != boot:
            # Rebooted: shift every recorded time so the downtime counts as zero.
            shift = clock - last
            self._db.execute(
                "UPDATE leases SET granted_at = granted_at + ?1, expires_at = expires_at + ?1, "
                "ended_at = ended_at + ?1",
                (shift,),
            )
            self._db.execute("UPDATE reports SET at = at + ?", (shift,))
            last_grant = self._meta("last_grant_at")
            if last_grant:
                self._set_meta("last_grant_at", repr(float(last_grant) + shift))
            last = clock
        if stored_boot != boot:
            self._set_meta("boot_id", boot)
        if not self._meta("schema_version"):
            self._set_meta("schema_version", str(SCHEMA_VERSION))
        now = max(clock, last)
        self._set_meta("last_clock", repr(now))
        self._expire(now)
        return now

    def _expire(self, now: float) -> None:
        wall = self._wall()
        self._db.execute(
            "UPDATE leases SET ended_at = expires_at, end_reason = 'expired', "
            "ended_wall = ? - (? - expires_at) WHERE ended_at IS NULL AND expires_at <= ?",
            (wall, now, now),
        )

    def _state(self, now: float, group: str | None = None, max_age: float = 0.0) -> FleetState:
        """Live leases, and the fresh reports of `group` only (none without a group)."""
        rows = self._db.execute(
            "SELECT lease_id, host, grp, token, granted_at, expires_at, duration, fault "
            "FROM leases WHERE ended_at IS NULL"
        ).fetchall()
        leases = tuple(LiveLease(*row) for row in rows)
        reports: tuple[GroupHealth, ...] = ()
        if group is not None:
            reports = tuple(
                GroupHealth(*row)
                for row in self._db.execute(
                    "SELECT host, grp, members, running, healthy, at FROM reports "
                    "WHERE grp = ? AND at >= ?",
                    (group, now - max_age),
                ).fetchall()
            )
        last_grant = self._meta("last_grant_at")
        return FleetState(
            halted=self._meta("halted") == "1",
            leases=leases,
            last_grant_at=float(last_grant) if last_grant else None,
            reports=reports,
        )

    def _wall_dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._wall(), tz=dt.UTC)

    def _touch(self, host: str, op: str) -> None:
        self._db.execute(
            "INSERT INTO hosts (host, last_contact_wall, last_op) VALUES (?, ?, ?) "
            "ON CONFLICT (host) DO UPDATE SET last_contact_wall = excluded.last_contact_wall, "
            "last_op = excluded.last_op",
            (host, self._wall(), op),
        )

    def _save_reports(self, host: str, groups: tuple[GroupCounts, ...], now: float) -> None:
        wall = self._wall()
        self._db.executemany(
            "INSERT INTO reports (host, grp, members, running, healthy, at, at_wall) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host, grp) DO UPDATE SET "
            "members = excluded.members, running = excluded.running, "
            "healthy = excluded.healthy, at = excluded.at, at_wall = excluded.at_wall",
            [(host, g.group, g.members, g.running, g.healthy, now, wall) for g in groups],
        )
        # bounded: a host keeps its most recent groups only, and nobody keeps old rows
        self._db.execute(
            "DELETE FROM reports WHERE host = ?1 AND rowid NOT IN (SELECT rowid FROM reports "
            "WHERE host = ?1 ORDER BY at DESC LIMIT ?2)",
            (host, MAX_REPORTED_GROUPS),
        )
        self._db.execute("DELETE FROM reports WHERE at < ?", (now - REPORT_KEEP,))

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise StoreError(f"coordinator database {self.path}: {exc}") from None

    # -- operations ----------------------------------------------------------------
    def acquire(
        self,
        policy: FleetPolicy,
        host: str,
        group: str,
        fault: str,
        duration: float,
        report: GroupCounts,
    ) -> Granted | Refusal:
        def run() -> Granted | Refusal:
            with self._tx() as now:
                self._touch(host, "acquire")
                state = self._state(now, group, policy.report_max_age)
                request = AcquireRequest(
                    host,
                    group,
                    fault,
                    duration,
                    GroupHealth(host, group, report.members, report.running, report.healthy, now),
                )
                decision = admission.admit(policy, state, request, now, self._wall_dt())
                self._save_reports(host, (report,), now)
                if isinstance(decision, Refusal):
                    return decision
                self._db.execute("UPDATE fencing SET last_token = last_token + 1 WHERE id = 1")
                token = int(self._db.execute("SELECT last_token FROM fencing").fetchone()[0])
                lease_id = "L-" + uuid.uuid4().hex
                self._db.execute(
                    "INSERT INTO leases (lease_id, token, host, grp, fault, duration, granted_at, "
                    "expires_at, granted_wall) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        lease_id,
                        token,
                        host,
                        group,
                        fault,
                        duration,
                        now,
                        decision.expires_at,
                        self._wall(),
                    ),
                )
                self._set_meta("last_grant_at", repr(now))
                return Granted(lease_id, token, decision.ttl, decision.expires_at)

        return self._guard(run)

    def _open_lease(self, lease_id: str) -> LiveLease | None:
        row = self._db.execute(
            "SELECT lease_id, host, grp, token, granted_at, expires_at, duration, fault "
            "FROM leases WHERE lease_id = ? AND ended_at IS NULL",
            (lease_id,),
        ).fetchone()
        return LiveLease(*row) if row else None

    def _ended_reason(self, lease_id: str, host: str) -> Refusal | None:
        row = self._db.execute(
            "SELECT host, end_reason FROM leases WHERE lease_id = ?", (lease_id,)
        ).fetchone()
        if row is None:
            return None
        if row[0] != host:
            return Refusal("not_owner", "the lease belongs to another host")
        if row[1] == "expired":
            return Refusal("expired", "the lease expired before it was renewed")
        return Refusal("unknown_lease", f"the lease was already {row[1]}")

    def renew(self, policy: FleetPolicy, host: str, lease_id: str, token: int) -> Granted | Refusal:
        def run() -> Granted | Refusal:
            with self._tx() as now:
                self._touch(host, "renew")
                lease = self._open_lease(lease_id)
                if lease is None:
                    ended = self._ended_reason(lease_id, host)
                    if ended is not None:
                        return ended
                decision = admission.check_renew(
                    policy, self._state(now), lease, host, token, now, self._wall_dt()
                )
                if isinstance(decision, Refusal):
                    return decision
                self._db.execute(
                    "UPDATE leases SET expires_at = ?, renewals = renewals + 1 WHERE lease_id = ?",
                    (decision.expires_at, lease_id),
                )
                return Granted(lease_id, token, decision.ttl, decision.expires_at)

        return self._guard(run)

    def release(self, host: str, lease_id: str, token: int) -> Refusal | None:
        """None when released now or already ended (idempotent); a Refusal otherwise."""

        def run() -> Refusal | None:
            with self._tx() as now:
                self._touch(host, "release")
                lease = self._open_lease(lease_id)
                if lease is None:
                    ended = self._ended_reason(lease_id, host)
                    if ended is not None and ended.code == "not_owner":
                        return ended
                    return None
                if lease.host != host:
                    return Refusal("not_owner", "the lease belongs to another host")
                if lease.token != token:
                    return Refusal("stale_token", f"stale fencing token {token}")
                self._db.execute(
                    "UPDATE leases SET ended_at = ?, end_reason = 'released', ended_wall = ? "
                    "WHERE lease_id = ?",
                    (now, self._wall(), lease_id),
                )
                return None

        return self._guard(run)

    def report(self, host: str, groups: tuple[GroupCounts, ...]) -> None:
        def run() -> None:
            with self._tx() as now:
                self._touch(host, "report")
                self._save_reports(host, groups, now)

        self._guard(run)

    def touch(self, host: str, op: str) -> None:
        def run() -> None:
            with self._tx():
                self._touch(host, op)

        self._guard(run)

    def halt(self, reason: str) -> None:
        def run() -> None:
            with self._tx():
                self._set_meta("halted", "1")
                self._set_meta("halt_reason", reason)
                self._set_meta("halted_wall", repr(self._wall()))

        self._guard(run)

    def resume(self) -> None:
        def run() -> None:
            with self._tx():
                self._set_meta("halted", "0")
                self._set_meta("halt_reason", "")

        self._guard(run)

    def status(self, *, history: int = 20) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            with self._tx() as now:
                wall = self._wall()
                live = [
                    {
                        "lease_id": r[0],
                        "token": r[1],
                        "host": r[2],
                        "group": r[3],
                        "fault": r[4],
                        "duration": r[5],
                        "age": round(now - r[6], 3),
                        "expires_in": round(r[7] - now, 3),
                        "granted_wall": r[8],
                        "renewals": r[9],
                    }
                    for r in self._db.execute(
                        "SELECT lease_id, token, host, grp, fault, duration, granted_at, "
                        "expires_at, granted_wall, renewals FROM leases WHERE ended_at IS NULL "
                        "ORDER BY token"
                    )
                ]
                recent = [
                    {
                        "lease_id": r[0],
                        "token": r[1],
                        "host": r[2],
                        "group": r[3],
                        "fault": r[4],
                        "granted_wall": r[5],
                        "ended_wall": r[6],
                        "end_reason": r[7],
                        "renewals": r[8],
                    }
                    for r in self._db.execute(
                        "SELECT lease_id, token, host, grp, fault, granted_wall, ended_wall, "
                        "end_reason, renewals FROM leases WHERE ended_at IS NOT NULL "
                        "ORDER BY ended_at DESC LIMIT ?",
                        (history,),
                    )
                ]
                hosts = [
                    {
                        "host": r[0],
                        "last_contact_wall": r[1],
                        "ago": round(wall - r[1], 3),
                        "last_op": r[2],
                    }
                    for r in self._db.execute(
                        "SELECT host, last_contact_wall, last_op FROM hosts ORDER BY host"
                    )
                ]
                return {
                    "halted": self._meta("halted") == "1",
                    "halt_reason": self._meta("halt_reason"),
                    "last_token": int(
                        self._db.execute("SELECT last_token FROM fencing").fetchone()[0]
                    ),
                    "live": live,
                    "recent": recent,
                    "hosts": hosts,
                }

        return self._guard(run)

    def intervals(self) -> list[Interval]:
        """Every lease's recorded life; an open lease ends at its current expiry."""

        def run() -> list[Interval]:
            with self._tx():
                rows = self._db.execute(
                    "SELECT lease_id, host, grp, granted_at, COALESCE(ended_at, expires_at) "
                    "FROM leases ORDER BY granted_at"
                ).fetchall()
            return [Interval(*row) for row in rows]

        return self._guard(run)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
