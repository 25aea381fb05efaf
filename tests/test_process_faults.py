"""Process faults against real processes this test starts (and always reaps)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from agent.adapters import processes
from agent.config import ProcessGroup, parse_config
from agent.errors import IdentityChanged, NotEligible, TargetGone
from agent.faults.process import ProcessKill, ProcessPause, process_faults
from agent.model import ActiveFault, Target

pytestmark = pytest.mark.host

SLEEPER = "import time; time.sleep(600)"


LAUNCHER = """
import subprocess, sys
p = subprocess.Popen(sys.argv[1:], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid)
"""


@pytest.fixture
def spawn() -> Iterator[Callable[..., psutil.Process]]:
    """Start a sleeper that is NOT in the test's (the agent's) process tree: a launcher
    starts it in a new session and exits, so it is re-parented. Killed at teardown."""
    started: list[psutil.Process] = []

    def make(marker: str, env: dict[str, str] | None = None) -> psutil.Process:
        full_env = {k: v for k, v in os.environ.items() if k != "CHAOS_GROUP"}
        full_env.update(env or {})
        out = subprocess.run(
            [sys.executable, "-c", LAUNCHER, sys.executable, "-c", SLEEPER, marker],
            env=full_env, capture_output=True, text=True, check=True, timeout=10,
        )  # fmt: skip
        proc = psutil.Process(int(out.stdout.strip()))
        started.append(proc)
        return proc

    yield make
    for proc in started:
        try:
            if proc.is_running():  # same (pid, create_time) only
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(started, timeout=10)


def exited(proc: psutil.Process, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def record_for(fault: Any, target: Target, **kw: Any) -> ActiveFault:
    now = time.time()
    return ActiveFault(
        fault_id=uuid.uuid4().hex[:12],
        fault=fault.name,
        target_kind="process",
        target_id=target.id,
        target_name=target.name,
        group=target.group,
        injected_at=now,
        deadline=now + 10,
        started_at=target.id.split(":")[2],
        pid=target.pid,
        **kw,
    )


def wait_status(proc: psutil.Process, wanted: str, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.status() != wanted:
        time.sleep(0.02)
    return proc.status() == wanted


def status(pid: int) -> str:
    return psutil.Process(pid).status()


def test_discovery_matches_regex_and_env_label_only(spawn: Callable) -> None:
    marker = f"chaos-marker-{uuid.uuid4().hex[:8]}"
    label = f"db-{uuid.uuid4().hex[:6]}"
    both = spawn(marker, {"CHAOS_GROUP": label})
    no_label = spawn(marker)
    other_cmd = spawn("something-else", {"CHAOS_GROUP": label})
    time.sleep(0.2)
    group = ProcessGroup(group="db", match=marker, env=f"CHAOS_GROUP={label}")
    found = processes.discover_processes((group,), self_pid=os.getpid())
    assert [t.pid for t in found] == [both.pid]
    t = found[0]
    assert t.kind == "process" and t.group == "db" and t.state == "running"
    assert t.id == processes.process_id(both.pid, psutil.Process(both.pid).create_time())
    assert t.name.endswith(f"[{both.pid}]") and t.allowed_faults == frozenset({"kill", "pause"})
    by_regex = processes.discover_processes(
        (ProcessGroup("db", match=marker),), self_pid=os.getpid()
    )
    assert {x.pid for x in by_regex} == {both.pid, no_label.pid}
    by_env = processes.discover_processes(
        (ProcessGroup("db", env=f"CHAOS_GROUP={label}"),), self_pid=os.getpid()
    )
    assert {x.pid for x in by_env} == {both.pid, other_cmd.pid}


def test_never_pid1_nor_the_agents_own_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", SLEEPER, "agent-child"])
    time.sleep(0.1)
    request_cleanup = child
    me = os.getpid()
    found = processes.discover_processes((ProcessGroup("all", match="."),), self_pid=me)
    pids = {t.pid for t in found}
    assert found, "a catch-all regex found nothing on this host"
    assert 1 not in pids and me not in pids and child.pid not in pids
    assert not pids & {p.pid for p in psutil.Process(me).parents()}
    fault = ProcessKill((), self_pid=me)
    own = Target("process", processes.process_id(me, psutil.Process(me).create_time()), "me",
                 "g", "running", pid=me)  # fmt: skip
    assert "agent" in (fault.refuse(own) or "")
    init = Target("process", processes.process_id(1, psutil.Process(1).create_time()), "init",
                  "g", "running", pid=1)  # fmt: skip
    assert "PID 1" in (fault.refuse(init) or "")
    kid = Target("process", processes.process_id(child.pid, psutil.Process(child.pid).create_time()),
                 "kid", "g", "running", pid=child.pid)  # fmt: skip
    assert "agent" in (fault.refuse(kid) or "")
    with pytest.raises(NotEligible):
        fault.inject(record_for(fault, kid))
    assert request_cleanup.poll() is None
    request_cleanup.kill()
    request_cleanup.wait(timeout=5)


def test_pause_is_always_followed_by_cont(spawn: Callable) -> None:
    marker = f"chaos-pause-{uuid.uuid4().hex[:8]}"
    p = spawn(marker)
    time.sleep(0.1)
    [target] = processes.discover_processes(
        (ProcessGroup("g", match=marker),), self_pid=os.getpid()
    )
    fault = ProcessPause(())
    record = record_for(fault, target)
    try:
        fault.inject(record)
        assert wait_status(p, psutil.STATUS_STOPPED)
        [seen] = processes.discover_processes(
            (ProcessGroup("g", match=marker),), self_pid=os.getpid()
        )
        assert seen.state == "paused"
    finally:
        outcome = ProcessPause(()).heal(record)  # a fresh object: the record alone
    assert outcome.healed and outcome.how == "healed"
    assert status(p.pid) != psutil.STATUS_STOPPED
    assert p.is_running()
    assert ProcessPause(()).heal(record).healed  # idempotent


def test_kill_uses_the_groups_signal_and_gone_is_clean(spawn: Callable) -> None:
    marker = f"chaos-kill-{uuid.uuid4().hex[:8]}"
    p = spawn(marker)
    time.sleep(0.1)
    group = ProcessGroup("g", match=marker, signal="SIGTERM")
    [target] = processes.discover_processes((group,), self_pid=os.getpid())
    fault = ProcessKill((group,))
    record = record_for(fault, target)
    assert fault.inject(record) == {"signal": "SIGTERM"}
    assert exited(p)
    assert fault.heal(record).how == "gone"
    with pytest.raises(TargetGone):
        fault.inject(record)  # exited meanwhile: a clean skip, not a crash
    assert ProcessPause(()).heal(record).how == "gone"


def test_pid_reuse_check_refuses_a_stale_identity(spawn: Callable) -> None:
    p = spawn(f"chaos-reuse-{uuid.uuid4().hex[:8]}")
    time.sleep(0.1)
    real = psutil.Process(p.pid).create_time()
    stale = Target("process", processes.process_id(p.pid, real - 5.0), "old", "g", "running",
                   pid=p.pid)  # fmt: skip
    for fault in (ProcessKill(()), ProcessPause(())):
        record = record_for(fault, stale)
        with pytest.raises(IdentityChanged):
            fault.inject(record)
        assert fault.heal(record).how == "environment"
        assert fault.refuse(stale)
    assert p.is_running() and status(p.pid) != psutil.STATUS_STOPPED


def test_hostile_command_lines_are_only_data(spawn: Callable, tmp_path: Any) -> None:
    pwned = tmp_path / "pwned"
    marker = f"chaos-evil-{uuid.uuid4().hex[:6]} ; $(touch {pwned}) `touch {pwned}` ' \" ü\n"
    p = spawn(marker)
    time.sleep(0.1)
    [target] = processes.discover_processes(
        (ProcessGroup("g", match="chaos-evil-"),), self_pid=os.getpid()
    )
    assert target.pid == p.pid
    fault = ProcessPause(())
    record = record_for(fault, target)
    try:
        fault.inject(record)
    finally:
        assert fault.heal(record).healed
    assert not pwned.exists()


def test_factory_reads_the_config() -> None:
    cfg = parse_config({"processes": [{"group": "db", "match": "mysqld", "signal": "SIGTERM"}]})
    faults = {f.name: f for f in process_faults(cfg)}
    assert set(faults) == {"kill", "pause"}
    assert all(f.kind == "process" and f.unavailable() is None for f in faults.values())
