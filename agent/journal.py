"""Append-only journal: one JSON object per line per event. Best effort by design.

Every event carries: ts (ISO-8601 UTC), t (unix seconds), event, host, dry_run,
seed, and the fault's fields where one is involved (fault_id, fault, target_kind,
container_id, container, group, duration, deadline). Event names:
start, stop, plan, skip, inject, inject_failed, heal, heal_failed, stuck,
healed_by_environment, recover, probe, halt, lease, error, watchdog.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent import statedir
from agent.errors import AgentError
from agent.model import ActiveFault


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
    ) -> None:
        self.path = path
        self.host = host
        self.seed = seed
        self.dry_run = dry_run
        self._clock = clock
        self._lock = threading.Lock()
        self.last_error = ""
        self._checked = False

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
        if self.path is None:
            return entry
        line = json.dumps(entry, ensure_ascii=True, default=str, separators=(",", ":")) + "\n"
        try:
            with self._lock:
                if not self._checked:
                    statedir.ensure(self.path.parent)  # once: refuse a directory others write
                    self._checked = True
                fd = statedir.open_nofollow(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640
                )
                try:
                    os.write(fd, line.encode("ascii"))
                finally:
                    os.close(fd)
        except OSError as exc:  # the journal is best effort; the ledger is not
            self.last_error = f"journal {self.path}: {exc.strerror}"
        except AgentError as exc:
            self.last_error = exc.one_line()
        return entry


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Events in order; a torn last line (crash mid-write) is skipped."""
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
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
        elif kind in ("heal", "healed_by_environment") and event.get("fault_id"):
            open_.pop(str(event["fault_id"]), None)
    return list(open_.values())
