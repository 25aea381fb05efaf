"""The dead-man heal: a heal that does not depend on the agent being alive.

One per agent run, armed by agent.deadman before its first fault, outside the
agent's lifetime (a detached process, a sibling container, or a transient systemd
unit). It reads the ledger and, once a record is overdue by GRACE seconds, runs
the same idempotent heal, whether the agent died, froze, or detached.

Liveness is the state lock, not a PID: the agent's flock on <state_dir>/agent.lock
is released by the kernel when it dies, in whatever container or unit it ran, and
the text it wrote ("<pid> <token>") tells this run from a later one.
- the owner holds the lock: heal what is overdue, never write the ledger;
- nobody holds it: heal what is left at its deadline, clear it from the ledger
  (taking the lock for the few milliseconds of the write), exit when none is left;
- another run holds it: that agent owns the ledger and its own dead-man: exit.

The dead-man holds <state_dir>/deadman.lock while it lives, so `status` can tell
that it is armed without asking Docker.

    python -m agent.watchdog --state-dir DIR --owner "PID TOKEN" [--config PATH] [--describe TEXT]
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.ledger import Ledger, held_text, lock_holder
from agent.model import ActiveFault

GRACE = 2.0  # the agent heals on time; act only when it evidently did not
POLL = 0.5
DEADMAN_LOCK = "deadman.lock"


class _Healer:
    """Config, registry and journal built once, ahead of the first deadline: at the
    deadline a heal is then one Engine API call, not a cold import."""

    def __init__(self, config_path: str | None, state_dir: Path) -> None:
        self.config_path, self.state_dir = config_path, state_dir
        self._ready: tuple[Any, Any, Any] | None = None

    def prepare(self) -> None:
        if self._ready is not None:
            return
        from agent.adapters.docker_engine import DockerEngine
        from agent.config import load_config
        from agent.journal import Journal
        from agent.wiring import build_registry

        config = load_config(self.config_path)
        registry = build_registry(config, DockerEngine())
        journal_path = config.agent.journal
        if config.agent.state_dir != self.state_dir:
            journal_path = self.state_dir / "journal.jsonl"
        journal = Journal(
            journal_path, host=config.agent.host,
            max_bytes=config.agent.journal_max_bytes, keep=config.agent.journal_keep,
        )  # fmt: skip
        self._ready = (registry, journal, config)

    def heal(self, record: ActiveFault) -> str:
        from agent.journal import fault_fields
        from agent.notify import attach_notifier

        self.prepare()
        assert self._ready is not None
        registry, journal, config = self._ready
        fault = registry.get(record.target_kind, record.fault)
        if fault is None:
            return "failed"
        stop_notifier = attach_notifier(journal, config.notify)  # people learn the dead-man acted
        try:
            try:
                outcome = fault.heal(record)
            except AgentError as exc:
                journal.write(
                    "watchdog", how="failed", detail=exc.one_line(), **fault_fields(record)
                )
                return "failed"
            swarm = {} if outcome.converged_s is None else {"converged_s": outcome.converged_s}
            journal.write(
                "watchdog", how=outcome.how, detail=outcome.detail, **swarm, **fault_fields(record)
            )
            return outcome.how if outcome.healed else "failed"
        finally:
            stop_notifier()


def _clear(state_dir: Path, healed: set[str]) -> bool:
    """Drop healed records from the ledger of a dead agent; False if an agent holds the lock."""
    try:
        fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        ledger = Ledger(state_dir)
        try:
            records = ledger.load()
            left = [r for r in records if r.fault_id not in healed]
            if len(left) != len(records):
                ledger.save(left)
        except AgentError:
            return False
        return True
    finally:
        os.close(fd)  # also releases the flock


def _announce(state_dir: Path, describe: str) -> int | None:
    """Hold deadman.lock for life, with what this dead-man is (for `status`)."""
    try:
        fd = os.open(state_dir / DEADMAN_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # the previous run's dead-man is finishing its own heals: both may live
        return fd
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, describe.encode("utf-8", "replace")[:200], 0)
    return fd


def deadman_holder(state_dir: Path) -> str | None:
    """What the live dead-man of this state dir said it is, or None if none is armed."""
    return held_text(state_dir / DEADMAN_LOCK, size=200, empty="armed")


def watch(state_dir: Path, owner: str, config_path: str | None, describe: str = "") -> int:
    announced = _announce(state_dir, describe or f"process {os.getpid()}")
    healer = _Healer(config_path, state_dir)
    try:
        healer.prepare()
    except (AgentError, OSError):
        pass  # tried again at the deadline, where a failure is journaled
    ledger = Ledger(state_dir)
    healed: set[str] = set()
    try:
        while True:
            holder = lock_holder(state_dir)
            if holder is not None and holder != owner:
                return 0  # a later run owns the ledger now, with its own dead-man
            try:
                records = ledger.load()
            except AgentError:
                records = []
            pending = [r for r in records if r.fault_id not in healed]
            if holder is None:
                if healed and _clear(state_dir, healed):
                    healed.clear()
                if not pending:
                    return 0
            now = time.time()
            for record in pending:
                if now >= record.deadline + GRACE:
                    try:
                        how = healer.heal(record)
                    except (AgentError, OSError):
                        how = "failed"
                    if how != "failed":
                        healed.add(record.fault_id)
            next_due = min(
                (r.deadline + GRACE for r in pending if r.fault_id not in healed),
                default=now + POLL,
            )
            time.sleep(min(POLL, max(0.02, next_due - time.time())))
    finally:
        if announced is not None:
            os.close(announced)


def main(argv: list[str] | None = None) -> int:
    import argparse  # here: `status` imports this module for deadman_holder

    parser = argparse.ArgumentParser(prog="chaos-agent-watchdog")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--owner", required=True, help='the agent lock\'s text, "PID TOKEN"')
    parser.add_argument("--config", default=None)
    parser.add_argument("--describe", default="")
    args = parser.parse_args(argv)
    return watch(Path(args.state_dir), args.owner, args.config, args.describe)


if __name__ == "__main__":
    raise SystemExit(main())
