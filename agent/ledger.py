"""The ledger: active faults on disk, written atomically *before* every injection.

Format: {"version": 1, "faults": [ActiveFault...]}. Atomic write: temp file,
fsync, rename, fsync the directory. A write that fails raises LedgerError, and the
engine injects nothing (fail closed). A corrupt file raises LedgerCorrupt.
The lock file makes one agent per state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from agent import statedir
from agent.errors import LedgerCorrupt, LedgerError, LockHeld
from agent.model import ActiveFault

VERSION = 1


class Ledger:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "ledger.json"

    # -- reading -----------------------------------------------------------------
    def load(self) -> list[ActiveFault]:
        if not self.state_dir.exists():
            return []
        statedir.check(self.state_dir)
        try:
            fd = statedir.open_nofollow(self.path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LedgerError(f"ledger {self.path} cannot be read: {exc.strerror}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError("unknown format")
            faults = [ActiveFault.from_json(item) for item in data["faults"]]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise LedgerCorrupt(
                f"ledger {self.path} is corrupt ({exc.__class__.__name__})",
                hint="faults are recovered from the journal; the file is kept as ledger.json.corrupt",
            ) from None
        return faults

    def quarantine(self) -> Path | None:
        """Move a corrupt ledger aside so it is kept for inspection."""
        if not self.path.exists():
            return None
        target = self.path.with_name(f"ledger.json.corrupt-{int(os.path.getmtime(self.path))}")
        os.replace(self.path, target)
        return target

    # -- writing -----------------------------------------------------------------
    def save(self, faults: list[ActiveFault]) -> None:
        payload: dict[str, Any] = {"version": VERSION, "faults": [f.to_json() for f in faults]}
        data = json.dumps(payload, indent=1, sort_keys=True, ensure_ascii=True).encode("ascii")
        statedir.ensure(self.state_dir)
        tmp = self.path.with_name(f".ledger.json.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        try:
            fd = statedir.open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.state_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise LedgerError(
                f"cannot write the ledger {self.path}: {exc.strerror}",
                hint="no fault is injected until the state directory is writable",
            ) from None


class StateLock:
    """flock on <state_dir>/agent.lock: one agent per state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "agent.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        statedir.ensure(self.path.parent)
        try:
            fd = statedir.open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LedgerError(f"cannot open lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(40):  # the winner may be between its truncate and its write
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
                if holder:
                    break
                time.sleep(0.005)
            holder = holder or "?"
            os.close(fd)
            raise LockHeld(
                f"another chaos-agent (pid {holder}) is using the state directory {self.path.parent}",
                hint="stop it first, or give this one another [agent].state_dir",
            ) from None
        try:  # the PID is informational (the flock is the lock): a full disk is fine here
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
