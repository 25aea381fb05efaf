"""Chaos for the chaos agent: SIGKILL at random moments, a frozen agent, a full disk, two
agents racing for one state directory, a Docker daemon restarted under it, and a fuzzed
config loader. After each, nothing is left broken: every container runs unpaused, no
tagged iptables rule or qdisc remains, the ledger is empty and the journal agrees.

Quick variants run by default (a few minutes); long ones with `-m slow`:

    pytest tests/test_agent_chaos.py                     # ~6 SIGKILL trials, the rest
    pytest tests/test_agent_chaos.py -m slow             # 40 trials (CHAOS_CHAOS_TRIALS=N)
    CHAOS_TEST_RESTART_DOCKERD=1 pytest tests/test_agent_chaos.py -m slow -k daemon_restart
        # restarts the machine's dockerd: every container on it stops (restart
        # policies bring theirs back); run it on a machine nobody else is using

Each test uses its own opt-in label value, so the agent only sees that test's targets.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, need, run_cli, start_agent, wait_for
from tests.conftest import ledger_faults as ledger

SEED = int(os.environ.get("CHAOS_CHAOS_SEED", "20240611"))


# --- helpers ------------------------------------------------------------------------------


def write_config(
    tmp_path: Path,
    value: str,
    *,
    agent: dict[str, Any] | None = None,
    targets: dict[str, Any] | None = None,
    schedule: dict[str, str] | None = None,
    extra: str = "",
    state: Path | None = None,
) -> Path:
    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        return json.dumps(v)

    sched = {"mean_interval": "1s", "min_gap": "0.5s", "first_after": "0s", "duration": "2s"}
    sched.update(schedule or {})
    sections = {
        "agent": {"state_dir": str(state or tmp_path / "state"), **(agent or {})},
        "targets": {"value": value, **(targets or {})},
        "schedule": sched,
    }
    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {lit(v)}" for k, v in table.items()]
    lines.append(extra)
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def journal(state: Path) -> list[dict[str, Any]]:
    path = state / "journal.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a torn line after a SIGKILL
            out.append(json.loads(line))
    return out


def first_event(state: Path, event: str, after: float = 0.0) -> dict[str, Any] | None:
    return next((e for e in journal(state) if e["event"] == event and e["t"] >= after), None)


def watchdog_pids(state: Path) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", f"agent.watchdog --state-dir {state} "], capture_output=True, text=True
    )
    return [int(p) for p in out.stdout.split()]


@pytest.fixture
def value() -> str:
    return f"x-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Agents started by a test: SIGCONT + SIGKILL at teardown (a frozen one too)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.wait(timeout=10)


@pytest.fixture
def watchdogs() -> Iterator[list[Path]]:
    """State dirs whose detached watchdogs must be gone after the test (ended if not)."""
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        for pid in watchdog_pids(d):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _tagged_artifacts(pid: int) -> str:
    """Our iptables chains/tagged rules and qdiscs in a namespace ('' if none)."""
    try:
        from tests.test_network_faults import our_tags  # the network engineer's helper
    except Exception:  # noqa: BLE001 - fall back to the same check done here

        def our_tags(pid: int) -> str:
            text = ""
            for tool in ("iptables-save", "ip6tables-save"):
                text += subprocess.run(
                    ["nsenter", "-t", str(pid), "-n", tool], capture_output=True, text=True
                ).stdout
            return "\n".join(
                line for line in text.splitlines() if "CHAOS-" in line or "chaos-agent:" in line
            )

    tags = our_tags(pid)
    qdiscs = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "tc", "qdisc", "show"], capture_output=True, text=True
    ).stdout
    ours = [ln for ln in qdiscs.splitlines() if re.search(r"qdisc \S+ c[0-9a-f]{3}: ", ln)]
    return "\n".join(filter(None, [tags, *ours]))


def leftovers(
    api: Any, containers: list[dict[str, Any]], state: Path, pids: list[int]
) -> list[str]:
    """Everything a trial left broken; [] when clean."""
    found: list[str] = []
    for c in containers:
        s = api.inspect_container(c["Id"])["State"]
        name = c["Name"].lstrip("/")
        if not s["Running"] or s["Paused"]:
            found.append(f"{name}: running={s['Running']} paused={s['Paused']}")
            continue
        tags = _tagged_artifacts(int(s["Pid"]))
        if tags:
            found.append(f"{name}: tagged artifacts left: {tags}")
    for pid in pids:
        try:
            import psutil

            status = psutil.Process(pid).status()
        except Exception as exc:  # noqa: BLE001
            found.append(f"process {pid}: {exc.__class__.__name__}")
            continue
        if status == "stopped":
            found.append(f"process {pid} left stopped (SIGSTOP)")
    if ledger(state):
        found.append(f"ledger not empty: {[r['fault_id'] for r in ledger(state)]}")
    events = journal(state)
    closed = {
        e.get("fault_id")
        for e in events
        if (e["event"] in ("heal", "healed_by_environment") and not e.get("dry_run"))
        # the dead-man's heal closes a fault whose agent is gone (it clears the ledger)
        or (e["event"] == "watchdog" and e.get("how") != "failed")
    }
    for e in events:
        if e["event"] == "intent" and e["fault_id"] not in closed:
            found.append(f"journal: intent {e['fault_id']} ({e['fault']}) never healed")
    return found


def network_faults_available() -> list[str]:
    try:
        from agent.adapters.docker_engine import DockerEngine
        from agent.config import parse_config
        from agent.faults.network import network_faults
    except ImportError:
        return []
    config = parse_config({}, source="probe")
    return [
        f.name
        for f in network_faults(DockerEngine(), config)
        if f.name in ("partition", "loss") and f.unavailable() is None
    ]


def process_faults_available() -> bool:
    try:
        from agent.faults.process import process_faults  # noqa: F401
    except ImportError:
        return False
    return True


# --- repeated SIGKILL trials ----------------------------------------------------------------


def _sigkill_trials(
    containers: Callable[..., dict[str, Any]],
    docker_api: Any,
    tmp_path: Path,
    value: str,
    procs: list[subprocess.Popen[str]],
    watchdogs: list[Path],
    trials: int,
) -> None:
    kinds = ["pause", "stop", "kill", *network_faults_available()]
    made: list[dict[str, Any]] = []
    for kind in kinds:  # one group per fault kind, so each kind can be active at once
        for i in (1, 2):
            made.append(
                containers(
                    f"{kind}-{i}",
                    {"chaos.enable": value, "chaos.group": f"{value}-{kind}", "chaos.faults": kind},
                )
            )
    sleepers: list[subprocess.Popen[bytes]] = []
    extra = f"[faults]\nenabled = {json.dumps(kinds)}\n"
    if process_faults_available():
        for _ in range(2):
            sleepers.append(
                subprocess.Popen(
                    [sys.executable, "-c", "import time; time.sleep(3600)"],
                    env={**os.environ, "CHAOS_GROUP": value},
                )
            )
        extra += (
            f'[[processes]]\ngroup = "{value}-proc"\nenv = "CHAOS_GROUP={value}"\n'
            'faults = ["pause"]\nmin_replicas = 2\n'
        )
    rng = random.Random(SEED)
    state = tmp_path / "state"
    watchdogs.append(state)
    cfg = write_config(
        tmp_path,
        value,
        targets={"max_concurrent": 20},
        schedule={
            "mean_interval": "0.3s",
            "min_gap": "0.1s",
            "first_after": "0s",
            "duration": "40s",
        },
        extra=extra,
    )
    seen_kinds: set[str] = set()
    left: list[str] = []
    try:
        for trial in range(trials):
            agent = start_agent("run", "--no-live", "--config", str(cfg))
            procs.append(agent)
            time.sleep(rng.uniform(0.4, 3.5))  # a random moment: before, during, after injects
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=10)
            seen_kinds |= {
                r["fault"] + ("/proc" if r["target_kind"] == "process" else "")
                for r in ledger(state)
            }
            if trial % 2 == 0:
                again = run_cli("heal", "--config", str(cfg), timeout=120)
            else:
                again = run_cli(
                    "run", "--no-live", "--config", str(cfg), "--for", "1.5s", timeout=120
                )
            assert again.returncode == 0, again.stderr
            # the watchdog of the killed agent leaves once nothing is pending
            wait_for(lambda: not watchdog_pids(state), 15)
            found = leftovers(docker_api, made, state, [s.pid for s in sleepers])
            left += [f"trial {trial}: {x}" for x in found]
    finally:
        for s in sleepers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(s.pid, signal.SIGCONT)
            s.kill()
            s.wait(timeout=10)
    injects = sum(1 for e in journal(state) if e["event"] == "inject")
    print(
        f"\nSIGKILL trials: {trials}, leftovers: {len(left)}, injects: {injects}, "
        f"kinds active at a kill: {sorted(seen_kinds)} (seed {SEED})"
    )
    assert left == [], "\n".join(left)
    assert injects >= trials  # the trials did fault something


@pytest.mark.docker
def test_sigkill_trials_leave_nothing_broken(
    containers, docker_api, tmp_path, value, procs, watchdogs
):
    _sigkill_trials(containers, docker_api, tmp_path, value, procs, watchdogs, trials=6)


@pytest.mark.docker
@pytest.mark.slow
def test_sigkill_trials_many(containers, docker_api, tmp_path, value, procs, watchdogs):
    trials = int(os.environ.get("CHAOS_CHAOS_TRIALS", "40"))
    _sigkill_trials(containers, docker_api, tmp_path, value, procs, watchdogs, trials=trials)


# --- the watchdog: the agent SIGKILLed and never started again ------------------------------


@pytest.mark.docker
def test_watchdog_heals_stop_and_kill_when_the_agent_is_gone(
    containers, docker_api, tmp_path, value, procs, watchdogs
):
    made = [
        containers(f"{kind}-{i}", {"chaos.enable": value, "chaos.group": f"{value}-{kind}",
                                   "chaos.faults": kind})
        for kind in ("stop", "kill") for i in (1, 2)
    ]  # fmt: skip
    state = tmp_path / "state"
    watchdogs.append(state)
    cfg = write_config(
        tmp_path, value, targets={"max_concurrent": 2},
        schedule={"duration": "3s", "mean_interval": "0.2s", "min_gap": "0.1s"},
        extra='[faults]\nenabled = ["stop", "kill"]\n[faults.stop]\ntimeout = "1s"\n',
    )  # fmt: skip
    agent = start_agent("run", "--no-live", "--config", str(cfg))
    procs.append(agent)
    injects = wait_for(
        lambda: len(ev := [e for e in journal(state) if e["event"] == "inject"]) >= 2 and ev, 15
    )
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=5)
    for inject in injects[:2]:
        cid = inject["container_id"]
        assert not docker_api.inspect_container(cid)["State"]["Running"]
    for inject in injects[:2]:
        cid = inject["container_id"]
        at = wait_for(
            lambda cid=cid: docker_api.inspect_container(cid)["State"]["Running"] and time.time(),
            15,
        )
        assert at - inject["deadline"] < 5.0, (
            f"{inject['fault']} healed {at - inject['deadline']:.1f}s late"
        )
    wanted = {i["fault_id"] for i in injects[:2]}
    wait_for(lambda: wanted <= {e["fault_id"] for e in journal(state)
                                if e["event"] == "watchdog" and e["how"] == "healed"}, 5)  # fmt: skip
    wait_for(lambda: not watchdog_pids(state), 10)
    again = run_cli("heal", "--config", str(cfg))
    assert again.returncode == 0, again.stderr
    assert leftovers(docker_api, made, state, []) == []


@pytest.mark.docker
def test_watchdog_heals_a_fault_whose_agent_died_mid_inject(
    containers, docker_api, tmp_path, value, procs, watchdogs
):
    # `sleep` as PID 1 ignores SIGTERM: `docker stop -t 3` takes 3 s, the agent dies inside it
    made = [
        containers(f"slow-{i}", {"chaos.enable": value, "chaos.group": value},
                   image="chaos-base:bookworm", command=["sleep", "infinity"])
        for i in (1, 2, 3)
    ]  # fmt: skip
    state = tmp_path / "state"
    watchdogs.append(state)
    cfg = write_config(
        tmp_path, value, schedule={"duration": "4s"},
        extra='[faults]\nenabled = ["stop"]\n[faults.stop]\ntimeout = "3s"\n',
    )  # fmt: skip
    agent = start_agent("run", "--no-live", "--config", str(cfg))
    procs.append(agent)
    intent = wait_for(lambda: first_event(state, "intent"), 15, interval=0.01)
    time.sleep(0.3)  # inside the 3 s stop call
    assert first_event(state, "inject") is None, "the stop returned too early for this test"
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=5)
    assert ledger(state)[0]["status"] == "injecting"
    cid = intent["container_id"]
    wait_for(
        lambda: not docker_api.inspect_container(cid)["State"]["Running"], 10
    )  # the stop lands
    at = wait_for(lambda: docker_api.inspect_container(cid)["State"]["Running"] and time.time(), 15)
    assert at - intent["deadline"] < 5.0
    time.sleep(1.0)
    assert docker_api.inspect_container(cid)["State"]["Running"], "stopped again after the heal"
    wait_for(lambda: not watchdog_pids(state), 10)
    assert run_cli("heal", "--config", str(cfg)).returncode == 0
    assert leftovers(docker_api, made, state, []) == []


# --- two agents, one state directory, started at the same instant -----------------------------


@pytest.mark.docker
def test_two_agents_started_at_once_exactly_one_runs(containers, tmp_path, value, procs):
    for i in (1, 2, 3):
        containers(f"race-{i}", {"chaos.enable": value, "chaos.group": value})
    state = tmp_path / "state"
    cfg = write_config(tmp_path, value, schedule={"first_after": "1h"})
    for _round in range(3):
        gate = tmp_path / "gate"
        gate.unlink(missing_ok=True)
        # both wait on the same file, then import and lock within microseconds of each other
        code = (
            "import os, sys, time\n"
            f"while not os.path.exists({str(gate)!r}): time.sleep(0.0005)\n"
            "from agent.cli import main\n"
            f"sys.argv = ['chaos-agent', 'run', '--no-live', '--config', {str(cfg)!r}]\n"
            "main()\n"
        )
        pair = [
            subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]  # fmt: skip
        procs.extend(pair)
        time.sleep(1.0)
        gate.touch()
        loser = wait_for(
            lambda pair=pair: next((p for p in pair if p.poll() is not None), None), 20
        )
        winner = next(p for p in pair if p is not loser)
        time.sleep(1.0)
        assert winner.poll() is None, winner.stderr.read()
        assert loser.returncode == 1
        err = loser.stderr.read()
        assert f"another chaos-agent (pid {winner.pid})" in err
        assert len(err.strip().splitlines()) == 1
        winner.send_signal(signal.SIGTERM)
        winner.wait(timeout=15)
        assert winner.returncode == 0
    starts = [e for e in journal(state) if e["event"] == "start"]
    assert len(starts) == 3


# --- scenario 13: frozen past a deadline --------------------------------------------------------


@pytest.mark.docker
def test_frozen_agent_heals_first_after_sigcont(containers, docker_api, tmp_path, value, procs):
    for i in (1, 2, 3):
        containers(f"frz-{i}", {"chaos.enable": value, "chaos.group": value})
    state = tmp_path / "state"
    cfg = write_config(
        tmp_path, value, agent={"watchdog": False},
        schedule={"duration": "2s", "mean_interval": "0.3s", "min_gap": "0.2s"},
        extra='[faults]\nenabled = ["pause"]\n',
    )  # fmt: skip
    agent = start_agent("run", "--no-live", "--config", str(cfg))
    procs.append(agent)
    inject = wait_for(lambda: first_event(state, "inject"), 15, interval=0.01)
    os.kill(agent.pid, signal.SIGSTOP)
    frozen_at = time.time()
    time.sleep(max(0.0, inject["deadline"] - time.time()) + 3.0)  # well past the deadline
    cid = inject["container_id"]
    assert docker_api.inspect_container(cid)["State"]["Paused"]  # nobody healed it meanwhile
    resumed_at = time.time()
    os.kill(agent.pid, signal.SIGCONT)
    wait_for(lambda: not docker_api.inspect_container(cid)["State"]["Paused"], 5)
    time.sleep(1.5)  # let it plan again after the heal
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=15)
    assert agent.returncode == 0, agent.stderr.read()
    after = [
        e for e in journal(state)
        if e["t"] >= frozen_at and e["event"] in ("heal", "plan", "intent", "inject", "skip")
    ]  # fmt: skip
    assert after, "nothing journaled after the freeze"
    first = after[0]
    assert first["event"] == "heal" and first["fault_id"] == inject["fault_id"], after[:3]
    assert first["t"] >= resumed_at
    assert first["t"] - resumed_at < 1.0
    # anything injected afterwards was decided on a fresh discovery, after the heal
    for e in after[1:]:
        if e["event"] == "intent":
            assert e["t"] >= first["t"]
    assert ledger(state) == []


# --- a full disk under the state directory ------------------------------------------------------


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "state"
    mnt.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)],
        capture_output=True, text=True,
    )  # fmt: skip
    need(result.returncode == 0, f"mount a tmpfs (root, CAP_SYS_ADMIN): {result.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path) -> None:
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # down to the last byte
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        (mnt / "probe").write_bytes(b"x")


@pytest.mark.docker
def test_full_disk_refuses_to_inject_and_says_why(
    containers, docker_api, tmp_path, value, full_tmpfs
):
    web = [
        containers(f"full-{i}", {"chaos.enable": value, "chaos.group": value}) for i in (1, 2, 3)
    ]
    cfg = write_config(tmp_path, value, agent={"watchdog": False}, state=full_tmpfs,
                       extra='[faults]\nenabled = ["pause", "stop"]\n')  # fmt: skip
    fill(full_tmpfs)
    since = time.time()
    one = run_cli(
        "inject", "pause", web[0]["Name"].lstrip("/"), "--duration", "5s", "--config", str(cfg)
    )
    assert one.returncode == 1, one.stdout + one.stderr
    err = one.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "No space left on device" in err and "internal error" not in err, err
    assert "ledger" in err, err
    run = run_cli("run", "--no-live", "--config", str(cfg), "--for", "3s", timeout=60)
    assert "internal error" not in run.stderr, run.stderr
    assert "not faulting" in run.stderr and "cannot write the ledger" in run.stderr, run.stderr
    for c in web:
        s = docker_api.inspect_container(c["Id"])["State"]
        assert s["Running"] and not s["Paused"]
    events = subprocess.run(
        ["docker", "events", "--since", str(int(since)), "--until", str(int(time.time()) + 1),
         "--filter", f"label=chaos.enable={value}", "--format", "{{.Action}}"],
        capture_output=True, text=True, timeout=30,
    ).stdout.split()  # fmt: skip
    assert [a for a in events if a in ("pause", "kill", "stop", "die")] == []


# --- the config loader, fuzzed ------------------------------------------------------------------

_KEYS = {
    "agent": ["host", "state_dir", "journal", "kill_switch", "dry_run", "seed", "heal_retries",
              "stop_timeout", "deadman"],
    "targets": ["label", "value", "min_replicas", "min_healthy", "max_per_group", "max_concurrent"],
    "schedule": ["mean_interval", "min_gap", "first_after", "duration", "windows", "timezone"],
    "faults": ["enabled", "weights", "kill", "stop", "partition", "loss", "latency", "bandwidth"],
    "stop": ["min_availability", "window", "min_samples"],
    "coordinator": ["enabled", "host", "port", "user", "key", "known_hosts", "connect_timeout"],
}  # fmt: skip
_TOML_VALUES = [
    '"30s"', '"250ms"', '"1h"', '"0s"', '"-5s"', '"5x"', '""', '"50%"', '"101%"', '"34%"', "0", "-1",
    "1", "2", "9223372036854775807", "1e308", "inf", "nan", "-0.0", "0.5", "true", "false", "[]",
    '["pause", "kill"]', '["nope"]', "[1, 2]", "{}", '{pause = 2, kill = -1}', '{pause = "x"}',
    '"Mon-Fri 09:00-17:00"', '["Mon-Fri 09:00-17:00"]', '["Sun 23:00-01:00"]', '["Xyz 25:00-26:00"]',
    '"Europe/Berlin"', '"No/Such_Zone"', '"../../etc"', '"\\u0000"', '"SIGKILL"', '"SIGFOO"',
    '"crash"', '"api"', '"isolate"', '"from"', "1979-05-27T07:32:00Z", '"\\u001b[31m"',
]  # fmt: skip


def _check(parse: Callable[[], Any]) -> None:
    from agent.config import Config
    from agent.errors import ConfigError

    try:
        result = parse()
    except ConfigError as exc:
        assert exc.one_line()
        return
    assert isinstance(result, Config)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for section in draw(
        st.lists(st.sampled_from([*_KEYS, "processes", "probes", "bogus"]), max_size=4)
    ):
        if section in ("processes", "probes"):
            lines.append(f"[[{section}]]")
            keys = ["group", "match", "env", "faults", "signal", "name", "url", "kind", "address",
                    "interval", "timeout", "expect_status", "min_replicas"]  # fmt: skip
        else:
            lines.append(f"[{section}]")
            keys = _KEYS.get(section, ["x"]) + ["unknown_key"]
        for key in draw(st.lists(st.sampled_from(keys), max_size=5, unique=True)):
            value = draw(st.one_of(st.sampled_from(_TOML_VALUES),
                                   st.text(max_size=12).map(json.dumps)))  # fmt: skip
            lines.append(f"{key} = {value}")
    if draw(st.booleans()):  # damage: a random splice of printable noise
        noise = draw(st.text(max_size=20))
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, noise)
    return "\n".join(lines) + "\n"


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=16),
    st.sampled_from(["30s", "1ms", "50%", "pause", "kill", "SIGKILL", "Mon 00:00-23:59", "UTC"]),
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def config_dicts(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_values)  # not even a table
    data: dict[str, Any] = {}
    for section in draw(
        st.lists(st.sampled_from([*_KEYS, "processes", "probes", "zzz"]), max_size=4)
    ):
        if section in ("processes", "probes"):
            data[section] = draw(st.one_of(_values, st.lists(st.dictionaries(
                st.sampled_from(["group", "match", "env", "faults", "url", "name", "kind"]),
                _values, max_size=4), max_size=2)))  # fmt: skip
            continue
        keys = _KEYS.get(section, ["x"])
        table = draw(st.dictionaries(st.sampled_from([*keys, "extra"]), _values, max_size=5))
        data[section] = table if draw(st.integers(0, 5)) else draw(_values)
    return data


@pytest.mark.pure
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml_documents())
def test_fuzz_toml_text_gives_a_config_or_a_config_error(text: str) -> None:
    from agent.config import parse_toml_text

    _check(lambda: parse_toml_text(text, source="fuzz.toml"))


@pytest.mark.pure
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_gives_a_config_or_a_config_error(text: str) -> None:
    from agent.config import parse_toml_text

    _check(lambda: parse_toml_text(text, source="fuzz.toml"))


@pytest.mark.pure
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_dicts())
def test_fuzz_config_structures_give_a_config_or_a_config_error(data: Any) -> None:
    from agent.config import parse_config

    _check(lambda: parse_config(data, source="fuzz"))


# --- the Docker daemon restarted under a running agent --------------------------------------------


def _dockerd_pid() -> int | None:
    out = subprocess.run(["pgrep", "-x", "-o", "dockerd"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.stdout.strip() else None


@pytest.mark.docker
@pytest.mark.slow
def test_docker_daemon_restart_injects_nothing_while_away_then_reconciles(
    containers, docker_api, tmp_path, value, procs, watchdogs
):
    if os.environ.get("CHAOS_TEST_RESTART_DOCKERD") != "1":
        pytest.skip("restarts the machine's dockerd: set CHAOS_TEST_RESTART_DOCKERD=1")
    pid = _dockerd_pid()
    need(pid is not None, "a dockerd process this test may restart")
    web = [
        containers(f"dd-{i}", {"chaos.enable": value, "chaos.group": value}, restart="always")
        for i in (1, 2, 3)
    ]
    time.sleep(11)  # Docker applies restart policies only to containers that ran 10 s
    state = tmp_path / "state"
    watchdogs.append(state)
    # max_concurrent 2: with the fault active the gate stays open, so attempts reach
    # discovery while the daemon is away (with 1 they stop at the gate, never asking it)
    cfg = write_config(
        tmp_path, value, agent={"watchdog": False}, targets={"max_concurrent": 2},
        schedule={"duration": "20s", "mean_interval": "0.5s", "min_gap": "0.3s"},
        extra='[faults]\nenabled = ["pause"]\n',
    )  # fmt: skip
    agent = start_agent("run", "--no-live", "--config", str(cfg))
    procs.append(agent)
    inject = wait_for(lambda: first_event(state, "inject"), 20)
    assert [r["fault_id"] for r in ledger(state)] == [inject["fault_id"]]
    os.kill(pid, signal.SIGTERM)  # what a daemon restart does
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 60, interval=0.2)
    down_at = time.time()
    time.sleep(3.0)  # the agent keeps trying while the daemon is away
    assert [r["fault_id"] for r in ledger(state)] == [inject["fault_id"]], "lost from the ledger"
    up = subprocess.run(
        [str(REPO / "scripts" / "docker-engine.sh")], capture_output=True, text=True, timeout=120
    )
    assert up.returncode == 0, up.stderr
    up_at = time.time()
    # the paused container was stopped with the daemon and restarted by its policy: a new
    # instance, which the agent must leave alone and record as healed by the environment
    healed = wait_for(
        lambda: next((e for e in journal(state) if e["event"] in ("heal", "healed_by_environment")
                      and e.get("fault_id") == inject["fault_id"]), None), 40)  # fmt: skip
    assert healed["how"] in ("environment", "gone", "healed", "already")
    wait_for(
        lambda: all(docker_api.inspect_container(c["Id"])["State"]["Running"] for c in web), 60
    )
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=30)
    events = journal(state)
    away = [e for e in events if down_at <= e["t"] <= up_at]
    assert not [e for e in away if e["event"] in ("intent", "inject")], away
    assert any(
        e["event"] == "skip" and "discovery failed" in e.get("reason", "") for e in away
    ) or any(e["event"] in ("error", "heal_failed") for e in away)
    assert agent.returncode == 0, agent.stderr.read()
    assert leftovers(docker_api, web, state, []) == []
