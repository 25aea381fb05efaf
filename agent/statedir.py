"""The state directory is trusted only if nobody else could have written into it.

Like sshd's StrictModes: the directory must be owned by the effective user (or root)
and not writable by group or others; otherwise someone else could plant a ledger (and
make `heal` resume or start what the agent never touched) or a symlink (and make the
journal append to any file). Files in it are opened with O_NOFOLLOW, and the ledger's
temporary file with O_EXCL under an unpredictable name.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.errors import LedgerError


class StateDirUnsafe(LedgerError):
    """The state directory could have been written by someone else: refuse to use it."""


def check(path: Path) -> None:
    """Raise StateDirUnsafe unless `path` is a directory only this user (or root) can write."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise LedgerError(f"state directory {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirUnsafe(f"state directory {path} is not a directory")
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise StateDirUnsafe(
            f"state directory {path} is owned by uid {st.st_uid}, not by this user "
            f"(uid {euid}) or root: refusing to trust it",
            hint=f"chown {euid} {path}, or set another [agent].state_dir",
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateDirUnsafe(
            f"state directory {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): refusing to trust it",
            hint=f"chmod go-w {path}",
        )


def ensure(path: Path) -> None:
    """Create the state directory (0700) if missing, then `check` it."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LedgerError(f"cannot create the state directory {path}: {exc.strerror}") from None
    check(path)


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open that refuses a symlink planted at `path` (ELOOP)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
