"""Append-only journal: one JSON object per line per event. Best effort by design.

Every event carries: ts (ISO-8601 UTC), t (unix seconds), event, host, dry_run,
seed, and the fault's fields where one is involved (fault_id, fault, target_kind,
container_id, container, group, duration, deadline). Event names:
start, stop, plan, skip, inject, inject_failed, heal, heal_failed, stuck,
healed_by_environment, recover, probe, halt, lease, error, watchdog.

`write` is the one emission point: observers (metrics, notifications; subscribed
in agent/wiring.py) see every event after it is written, whether or not a file is
kept. The file rotates by size (`[agent] journal_max_bytes`, keep
`journal_keep` older files: journal.jsonl.1 is the newest of them); every
rotation step is one atomic rename, so a crash mid-rotation loses nothing and
never reorders. `read_journal` and `journal_lines` read the rotated set,
oldest first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent import statedir
from agent.errors import AgentError
from agent.model import ActiveFault

Observer = Callable[[dict[str, Any]], None]


def fault_fields(record: ActiveFault) -> dict[str, Any]:
    return {
        "fault_id": record.fault_id,
        "fault": record.fault,
        "target_kind": record.target_kind,
        "container_id": record.target_id,
        "container": record.target_name,
        "group": record.group,
        "duration": round(record.deadline - record.injected_at, 3),
        "injected_at": record.injected_at,
        "deadline": record.deadline,
        "params": dict(record.params),
    }


class Journal:
    def __init__(
        self,
        path: Path | None,
        *,
        host: str,
        seed: int | None = None,
        dry_run: bool = False,
        clock: Any = None,
        max_bytes: int = 0,
        keep: int = 0,
    ) -> None:
        self.path = path
        self.host = host
        self.seed = seed
        self.dry_run = dry_run
        self._clock = clock
        self._lock = threading.Lock()
        self.last_error = ""
        self._checked = False
        self.max_bytes = max_bytes  # 0: never rotate
        self.keep = keep
        self._observers: list[Observer] = []
        self._checked_tail = False
        self.observer_errors = 0

    def subscribe(self, observer: Observer) -> None:
        """Call observer(entry) after every event; it must be quick and never block."""
        self._observers.append(observer)

    def _notify(self, entry: dict[str, Any]) -> None:
        for observer in self._observers:
            try:
                observer(entry)
            except Exception:  # noqa: BLE001 - an observer never breaks the agent
                self.observer_errors += 1

    def _append(self, line: bytes) -> None:
        """Append one line (caller holds the lock); rotate first when it would overflow."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._checked_tail:
            # a torn line left by a crash must not swallow the next event
            self._checked_tail = True
            if not _ends_with_newline(self.path):
                line = b"\n" + line
        fd = statedir.open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            size = os.fstat(fd).st_size
            if self.max_bytes and size and size + len(line) > self.max_bytes:
                os.close(fd)
                fd = -1
                rotate(self.path, self.keep)
                fd = statedir.open_nofollow(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640
                )
            os.write(fd, line)
        finally:
            if fd >= 0:
                os.close(fd)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        import time

        now = self._clock() if self._clock else time.time()
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds"),
            "t": round(now, 3),
            "event": event,
            "host": self.host,
            "seed": self.seed,
            "dry_run": self.dry_run,
        }
        entry.update(fields)
        if self.path is not None:
            line = json.dumps(entry, ensure_ascii=True, default=str, separators=(",", ":"))
            try:
                with self._lock:
                    if not self._checked:
                        statedir.ensure(self.path.parent)  # once: refuse a directory others write
                        self._checked = True
                    self._append((line + "\n").encode("ascii"))
            except OSError as exc:  # the journal is best effort; the ledger is not
                self.last_error = f"journal {self.path}: {exc.strerror}"
            except AgentError as exc:
                self.last_error = exc.one_line()
        self._notify(entry)
        return entry


def _ends_with_newline(path: Path) -> bool:
    """True for a missing or empty file too (nothing torn to separate from)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return True
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
    except OSError:
        return True


def rotated_path(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def rotate(path: Path, keep: int) -> None:
    """journal.jsonl -> .1 -> .2 ... -> .keep (the oldest dropped), one atomic rename each.

    Renames run oldest first, so a crash between two of them leaves a gap in the
    numbers, never two copies of a file nor events out of order.
    """
    if keep <= 0:
        path.unlink(missing_ok=True)
        return
    for n in range(keep - 1, 0, -1):
        older = rotated_path(path, n)
        if older.exists():
            os.replace(older, rotated_path(path, n + 1))
    try:
        os.replace(path, rotated_path(path, 1))
    except FileNotFoundError:  # another writer (the watchdog) rotated it just now
        pass


def journal_files(path: Path) -> list[Path]:
    """The rotated set, oldest first, the live file last (missing ones left out)."""
    numbered: list[tuple[int, Path]] = []
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except OSError:
        names = []
    for name in names:
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            numbered.append((int(name[len(prefix) :]), path.parent / name))
    files = [p for _, p in sorted(numbered, reverse=True)]
    if path.exists():
        files.append(path)
    return files


def journal_lines(path: Path) -> Iterator[str]:
    """Every non-empty line of the rotated set, oldest first (for streaming readers)."""
    for file in journal_files(path):
        try:
            fh = open(file, encoding="utf-8", errors="replace")
        except FileNotFoundError:  # rotated away while we listed
            continue
        with fh:
            for line in fh:
                line = line.strip()
                if line:
                    yield line


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Events in order across the rotated set; a torn line (crash mid-write) is skipped."""
    for line in journal_lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def unhealed_intents(path: Path) -> list[ActiveFault]:
    """Intent records with no later heal: what a lost or corrupt ledger held."""
    open_: dict[str, ActiveFault] = {}
    for event in read_journal(path):
        kind = event.get("event")
        if kind == "intent" and isinstance(event.get("record"), dict) and not event.get("dry_run"):
            try:
                record = ActiveFault.from_json(event["record"])
            except (TypeError, ValueError):
                continue
            open_[record.fault_id] = record
        elif (
            kind in ("heal", "healed_by_environment")
            or (kind == "watchdog" and event.get("how") != "failed")  # the dead-man healed it
        ) and event.get("fault_id"):
            open_.pop(str(event["fault_id"]), None)
    return list(open_.values())
