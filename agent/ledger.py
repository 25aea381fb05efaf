"""The ledger: active faults on disk, written atomically *before* every injection.

Format: {"version": 1, "faults": [ActiveFault...]}. Atomic write: temp file, rename;
a durable write also fsyncs the file before and the directory after the rename. A write
that fails raises LedgerError, and the engine injects nothing (fail closed). A corrupt
file raises LedgerCorrupt. The lock file makes one agent per state directory.

Which writes are durable (issue 13, figures in benchmarks/RESULTS.md): only the
write-ahead intent (`ActiveFaults.add`) must survive a power loss, and it is fsynced.
The status update after inject and the removal after a verified heal are atomic renames
without fsync: every process (a restarted agent, the dead-man) reads them from the page
cache, so a crash of the agent loses nothing; only a power loss or kernel crash can undo
them, and then the durable record before them is healed again, idempotently, pinned to
identity (a rebooted host restarted its containers: "healed by environment"); a torn file
is LedgerCorrupt, recovered from the journal, with no new faults until looked at.
Each fsync'd write costs 0.7-1 ms here, about half the agent's own time per fault.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

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
    def save(self, faults: list[ActiveFault], *, durable: bool = True) -> None:
        """Replace the ledger atomically; `durable`: fsync file and directory (see above)."""
        payload: dict[str, Any] = {"version": VERSION, "faults": [f.to_json() for f in faults]}
        data = json.dumps(payload, indent=1, sort_keys=True, ensure_ascii=True).encode("ascii")
        statedir.ensure(self.state_dir)
        tmp = self.path.with_name(f".ledger.json.{os.getpid()}.{os.urandom(8).hex()}.tmp")
        try:
            fd = statedir.open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            if durable:
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


def _written(fd: int, size: int) -> str:
    """What the lock's holder wrote; it may be between its truncate and its write."""
    text = ""
    for _ in range(40):
        text = os.pread(fd, size, 0).decode("utf-8", "replace").strip()
        if text:
            break
        time.sleep(0.005)
    return text


def held_text(path: Path, *, size: int = 80, empty: str = "?") -> str | None:
    """What the holder of the flock on `path` wrote (`empty` if nothing), or None if free.

    The one liveness probe for the state directory's locks (the agent's, the dead-man's):
    a flock is released by the kernel when its holder dies, in whatever container or unit
    it ran, so it works where a PID would not.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _written(fd, size) or empty
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def lock_holder(state_dir: Path) -> str | None:
    """What the agent holding <state_dir>/agent.lock wrote ("<pid> <token>"), or None."""
    return held_text(state_dir / "agent.lock")


class StateLock:
    """flock on <state_dir>/agent.lock: one agent per state directory.

    The file says "<pid> <token>": the token names this hold, so a dead-man armed
    for it knows a later agent's hold from its own.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "agent.lock"
        self._fd: int | None = None
        self.token = os.urandom(8).hex()

    def acquire(self) -> None:
        statedir.ensure(self.path.parent)
        try:
            fd = statedir.open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LedgerError(f"cannot open lock file {self.path}: {exc.strerror}") from None
        try:
            # a dead-man takes the lock for a few milliseconds to clear what it healed
            for attempt in range(50):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == 49:
                        raise
                    time.sleep(0.01)
        except BlockingIOError:
            holder = _written(fd, 64).split(" ")[0] or "?"
            os.close(fd)
            raise LockHeld(
                f"another chaos-agent (pid {holder}) is using the state directory {self.path.parent}",
                hint="stop it first, or give this one another [agent].state_dir",
            ) from None
        try:  # the PID is informational (the flock is the lock): a full disk is fine here
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.token}".encode(), 0)
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


class LedgerLike(Protocol):
    """What the engine needs of a ledger: the file one, or the dry run's memory one."""

    def load(self) -> list[ActiveFault]: ...

    def save(self, faults: list[ActiveFault], *, durable: bool = True) -> None: ...

    def quarantine(self) -> Any: ...


class MemoryLedger:
    """Dry-run ledger: the planner still sees its (pretend) active faults."""

    def __init__(self) -> None:
        self.faults: list[ActiveFault] = []

    def load(self) -> list[ActiveFault]:
        return list(self.faults)

    def save(self, faults: list[ActiveFault], *, durable: bool = True) -> None:
        self.faults = list(faults)

    def quarantine(self) -> None:
        return None


class ActiveFaults:
    """The active faults in memory, written through to the ledger.

    `add` is the write-ahead, durable, and raises LedgerError (no write, no inject); a
    failed update or removal keeps going with the record on disk, and says so once.
    Updates and removals are not fsynced (see the module's docstring for why).
    """

    def __init__(self, ledger: LedgerLike, on_error: Callable[[str], None]) -> None:
        self.ledger = ledger
        self.on_error = on_error
        self.faults: list[ActiveFault] = []

    def add(self, record: ActiveFault) -> None:
        faults = [*self.faults, record]
        self.ledger.save(faults)
        self.faults = faults

    def replace(self, record: ActiveFault) -> None:
        self.faults = [record if a.fault_id == record.fault_id else a for a in self.faults]
        try:
            self.ledger.save(self.faults, durable=False)
        except LedgerError as exc:  # the intent is on disk already; keep going
            self.on_error(f"ledger update failed: {exc.message}")

    def remove(self, *fault_ids: str) -> None:
        self.faults = [a for a in self.faults if a.fault_id not in fault_ids]
        try:
            self.ledger.save(self.faults, durable=False)
        except LedgerError as exc:
            self.on_error(f"ledger update failed (the record stays on disk): {exc.message}")
