"""A heal that does not depend on the agent process.

The agent starts one detached watchdog (its own session, so a SIGKILL of the
agent's process group does not reach it). It reads the ledger, and once a
record is overdue by GRACE seconds it runs the same idempotent heal. It never
writes the ledger (the agent owns it): the agent, or its next start, finds the
fault already healed and clears the record. It exits once the agent is gone and
nothing it can heal is pending.

    python -m agent.watchdog --state-dir DIR --agent-pid PID [--config PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from agent.errors import AgentError
from agent.ledger import Ledger
from agent.model import ActiveFault

GRACE = 2.0  # the agent heals on time; act only when it evidently did not
POLL = 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (the agent died, its parent did not reap it yet) is not alive
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _heal(record: ActiveFault, config_path: str | None, state_dir: Path) -> str:
    from agent.adapters.docker_engine import DockerEngine
    from agent.config import load_config
    from agent.journal import Journal, fault_fields
    from agent.wiring import build_registry

    config = load_config(config_path)
    registry = build_registry(config, DockerEngine())
    journal_path = config.agent.journal
    if config.agent.state_dir != state_dir:
        journal_path = state_dir / "journal.jsonl"
    journal = Journal(journal_path, host=config.agent.host)
    fault = registry.get(record.target_kind, record.fault)
    if fault is None:
        return "unknown fault"
    try:
        outcome = fault.heal(record)
    except AgentError as exc:
        journal.write("watchdog", how="failed", detail=exc.one_line(), **fault_fields(record))
        return "failed"
    swarm = {} if outcome.converged_s is None else {"converged_s": outcome.converged_s}
    journal.write(
        "watchdog", how=outcome.how, detail=outcome.detail, **swarm, **fault_fields(record)
    )
    return outcome.how if outcome.healed else "failed"


def watch(state_dir: Path, agent_pid: int, config_path: str | None) -> int:
    ledger = Ledger(state_dir)
    done: set[str] = set()
    while True:
        try:
            records = ledger.load()
        except AgentError:
            records = []
        pending = [r for r in records if r.fault_id not in done]
        alive = _alive(agent_pid)
        if not pending and not alive:
            return 0
        now = time.time()
        for record in pending:
            if now >= record.deadline + GRACE:
                how = _heal(record, config_path, state_dir)
                if how != "failed":
                    done.add(record.fault_id)
        next_due = min(
            (r.deadline + GRACE for r in pending if r.fault_id not in done), default=now + POLL
        )
        time.sleep(min(POLL, max(0.05, next_due - time.time())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos-agent-watchdog")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--agent-pid", type=int, required=True)
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    return watch(Path(args.state_dir), args.agent_pid, args.config)


if __name__ == "__main__":
    raise SystemExit(main())
