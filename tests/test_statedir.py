"""The state directory is not trusted blindly (issue 10, item 8): real files, a real
stopped process, the real CLI."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent.errors import LedgerError
from agent.journal import Journal
from agent.ledger import Ledger, StateLock
from agent.model import ActiveFault
from agent.statedir import StateDirUnsafe, check
from tests.conftest import detached_process, run_cli

pytestmark = pytest.mark.host


def record(pid: int = 0, create_time: float = 0.0) -> ActiveFault:
    now = time.time()
    return ActiveFault(
        fault_id="planted",
        fault="pause",
        target_kind="process",
        target_id=f"pid:{pid}:{create_time!r}",
        target_name=f"sleeper[{pid}]",
        group="g",
        injected_at=now - 60,
        deadline=now - 1,
        started_at=repr(create_time),
        pid=pid,
        status="active",
    )


@pytest.fixture
def stopped_process() -> Iterator[psutil.Process]:
    """A process someone else stopped: the agent never paused it."""
    with detached_process(sys.executable, "-c", "import time; time.sleep(600)") as proc:
        proc.send_signal(signal.SIGSTOP)
        yield proc


def test_world_writable_state_dir_is_refused_and_a_planted_ledger_resumes_nothing(
    tmp_path: Path, stopped_process: psutil.Process
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    planted = record(stopped_process.pid, stopped_process.create_time())
    (state / "ledger.json").write_text(json.dumps({"version": 1, "faults": [planted.to_json()]}))
    state.chmod(0o777)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{state}"\nwatchdog = false\n'
        '[[processes]]\ngroup = "g"\nmatch = "never-matches-anything"\n'
    )
    for args in (("heal",), ("status",)):
        result = run_cli(*args, "--config", str(cfg))
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "writable by group or others" in lines[0], result.stderr
        assert "chmod go-w" in lines[0]
    assert stopped_process.status() == psutil.STATUS_STOPPED
    assert json.loads((state / "ledger.json").read_text())["faults"][0]["fault_id"] == "planted"
    state.chmod(0o700)  # fixed as the message says: now the same directory is trusted
    check(state)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_state_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 12345, 12345)
    with pytest.raises(StateDirUnsafe, match="owned by uid 12345"):
        Ledger(state).load()
    with pytest.raises(StateDirUnsafe):
        StateLock(state).acquire()
    with pytest.raises(StateDirUnsafe):
        Ledger(state).save([])


def test_symlinks_planted_in_the_state_dir_are_never_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / "journal.jsonl").symlink_to(victim)
    journal = Journal(state / "journal.jsonl", host="h")
    journal.write("start")
    assert victim.read_text() == "precious\n"
    assert journal.last_error
    # the old predictable temp name, and the ledger itself
    (state / f".ledger.json.{os.getpid()}.tmp").symlink_to(victim)
    Ledger(state).save([record()])
    assert victim.read_text() == "precious\n"
    assert [f.fault_id for f in Ledger(state).load()] == ["planted"]
    os.unlink(state / "ledger.json")
    (state / "ledger.json").symlink_to(victim)
    with pytest.raises(LedgerError):
        Ledger(state).load()
    (state / "agent.lock").symlink_to(victim)
    with pytest.raises(LedgerError):
        StateLock(state).acquire()
    assert victim.read_text() == "precious\n"
