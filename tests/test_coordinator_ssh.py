"""The coordinator against a real OpenSSH server: agents connect with paramiko exactly
as in production (key auth, known_hosts, the forced command with `restrict`).

Scenarios 11-13, 15, 18, 19 of shared/RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pytest
from conftest import need, wait_for
from coordinator_sshd import SshdServer, _plan, keygen, sshd_available

from agent.adapters.ssh import HostKeyRefused, SshLine
from agent.coordinator.client import CoordinatorLeases
from agent.coordinator.store import Interval
from agent.errors import CoordinatorUnavailable, LeaseRefused, NotEligible
from agent.leases import GroupReport, Lease

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "coordinator_sshd.py"
LAUNCHER = """
import subprocess, sys
p = subprocess.Popen(sys.argv[1:], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid)
"""
HOSTS = [f"web-{i}" for i in range(1, 11)]
REPORT = GroupReport("web", 10, 10, 10)


def policy(**keys) -> str:
    values = {
        "max_concurrent": 1,
        "max_per_group": 1,
        "min_healthy": 1,
        "min_gap": "0s",
        "lease_ttl": "30s",
    }
    values.update(keys)
    return "[fleet]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


@pytest.fixture
def sshd_factory():
    reason = sshd_available()
    need(not reason, reason)
    servers: list[SshdServer] = []
    procs: list[subprocess.Popen] = []
    clients: list[CoordinatorLeases] = []

    def make(**policy_keys) -> SshdServer:
        srv = SshdServer(HOSTS, policy(**policy_keys))
        servers.append(srv)
        return srv.start()

    others: list[psutil.Process] = []
    make.procs = procs  # type: ignore[attr-defined]
    make.others = others  # type: ignore[attr-defined]
    make.clients = clients  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        for c in clients:
            c.close()
        for other in others:
            with contextlib.suppress(psutil.Error):
                other.kill()
        for srv in servers:
            srv.stop()


def leases_for(factory, srv: SshdServer, host: str, **over) -> CoordinatorLeases:
    client = CoordinatorLeases(srv.section(host, **over), host)
    factory.clients.append(client)
    return client


def spawn(factory, srv: SshdServer, mode: str, host: str, **cfg) -> subprocess.Popen:
    section = {k: v for k, v in srv.section(host).__dict__.items()}
    args = json.dumps({"section": section, "host": host, **cfg})
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), mode, args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=srv.worker_env(),
    )
    factory.procs.append(proc)
    return proc


def max_live(intervals: list[Interval]) -> tuple[int, dict[str, int]]:
    """Sweep the recorded [start, end) intervals: the most live at any instant, overall and per group."""
    events = []
    for iv in intervals:
        assert iv.end >= iv.start
        events.append((iv.start, 1, iv.group))
        events.append((iv.end, 0, iv.group))  # at equal times an end comes before a start
    events.sort(key=lambda e: (e[0], e[1]))
    live, peak = 0, 0
    per: dict[str, int] = defaultdict(int)
    peak_per: dict[str, int] = defaultdict(int)
    for _t, is_start, group in events:
        delta = 1 if is_start else -1
        live += delta
        per[group] += delta
        peak = max(peak, live)
        peak_per[group] = max(peak_per[group], per[group])
    return peak, dict(peak_per)


def test_acquire_renew_release_round_trip(sshd_factory):
    srv = sshd_factory(lease_ttl="20s")
    leases = leases_for(sshd_factory, srv, "web-1")
    before = time.monotonic()
    lease = leases.acquire(_plan("web", 30), REPORT)
    assert lease.token >= 1 and lease.ttl == 20.0
    assert before + 20 - 0.5 <= lease.local_deadline <= time.monotonic() + 20 - 0.5
    renewed = leases.renew(lease)
    assert renewed.token == lease.token and renewed.local_deadline > lease.local_deadline
    leases.release(renewed)
    status = json.loads(srv.cli("status", "--json").stdout)
    assert status["live"] == [] and status["recent"][0]["end_reason"] == "released"
    assert status["recent"][0]["renewals"] == 1 and status["recent"][0]["host"] == "web-1"
    assert [h["host"] for h in status["hosts"]] == ["web-1"]
    text = srv.cli("status").stdout
    assert "active leases: 0" in text and "web-1" in text


def test_three_agent_processes_race_for_the_last_slot(sshd_factory):
    srv = sshd_factory(max_concurrent=2, max_per_group=2, min_healthy=0)
    holder = leases_for(sshd_factory, srv, "web-1")
    holder.acquire(_plan("web", 30), REPORT)  # one slot of two is taken
    start_at = time.time() + 3.0
    procs = [spawn(sshd_factory, srv, "race", h, start_at=start_at) for h in HOSTS[1:4]]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["result"] for r in results) == ["granted", "refused", "refused"]
    assert all("max_concurrent" in r["reason"] for r in results if r["result"] == "refused")
    store = srv.store()
    try:
        peak, _ = max_live(store.intervals())
    finally:
        store.close()
    assert peak == 2


def test_stress_ten_clients_with_random_crashes(sshd_factory):
    """10 agent processes, thousands of acquire/release, random kill -9 and restarts.

    Judged only from the recorded lease intervals in the store.
    """
    limits = {"max_concurrent": 3, "max_per_group": 2}
    srv = sshd_factory(min_healthy=0, lease_ttl="1s", heal_grace="5s", **limits)
    rng = random.Random(4)
    groups = ["web", "db", "cache"]
    ops = 300

    def start(i: int) -> subprocess.Popen:
        return spawn(
            sshd_factory, srv, "stress", HOSTS[i],
            group=groups[i % 3], ops=ops, hold=0.01, duration=0.05,
        )  # fmt: skip

    procs = {i: start(i) for i in range(10)}
    kills = 0
    finished: list[dict] = []
    deadline = time.monotonic() + 90
    while procs and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.3))
        for i, p in list(procs.items()):
            if p.poll() is not None:
                out, err = p.communicate()
                assert p.returncode == 0, err[-2000:]
                finished.append(json.loads(out.strip().splitlines()[-1]))
                del procs[i]
        if kills < 15 and procs:
            i = rng.choice(sorted(procs))
            procs[i].send_signal(signal.SIGKILL)
            procs[i].wait()
            kills += 1
            procs[i] = start(i)
    assert not procs, "stress workers did not finish in time"
    store = srv.store()
    try:
        intervals = store.intervals()
        status = store.status(history=100_000)
    finally:
        store.close()
    peak, peak_per = max_live(intervals)
    expired = sum(1 for r in status["recent"] if r["end_reason"] == "expired")
    print(
        f"\nstress: {len(intervals)} grants, {kills} kills, {expired} expired, peak {peak}, per group {peak_per}"
    )
    assert peak <= limits["max_concurrent"]
    assert all(v <= limits["max_per_group"] for v in peak_per.values())
    attempts = sum(f["granted"] + f["refused"] + f["unavailable"] for f in finished)
    assert attempts >= 2000 and len(intervals) >= 500
    tokens = sorted(r["token"] for r in status["recent"])
    assert len(tokens) == len(set(tokens)) == len(intervals)


def test_sigkilled_holder_keeps_its_slot_until_deadline_plus_heal_grace(sshd_factory):
    """Not renewed is not healed: the slot stays taken while the dead agent's fault
    may still be in effect (until its dead-man has healed it), then frees itself."""
    srv = sshd_factory(lease_ttl="2s", heal_grace="5s")
    holder = spawn(sshd_factory, srv, "hold", "web-1", duration=3)
    first = json.loads(holder.stdout.readline())
    assert first["result"] == "granted"
    granted_at = time.monotonic()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    other = leases_for(sshd_factory, srv, "web-2")
    time.sleep(2.5)  # past the TTL: before, the slot was free here
    with pytest.raises(LeaseRefused, match="max_concurrent"):
        other.acquire(_plan("web", 30), REPORT)
    while True:
        try:
            lease = other.acquire(_plan("web", 30), REPORT)
            break
        except LeaseRefused:
            assert time.monotonic() - granted_at < 20, "the dead agent's lease never expired"
            time.sleep(0.1)
    assert time.monotonic() - granted_at >= 3 + 5 - 0.2  # deadline + heal_grace
    assert lease.token > first["token"]
    status = json.loads(srv.cli("status", "--json").stdout)
    assert status["recent"][0]["end_reason"] == "expired" and status["recent"][0]["host"] == "web-1"


def _no_contact(srv: SshdServer) -> bool:
    store = srv.store()
    try:
        return store.status()["hosts"] == []
    finally:
        store.close()


def test_unknown_host_key_is_refused_and_known_hosts_untouched(sshd_factory):
    srv = sshd_factory()
    srv.known_hosts.write_text("# nothing known\n")
    before = srv.known_hosts.read_bytes()
    leases = leases_for(sshd_factory, srv, "web-1")
    with pytest.raises(HostKeyRefused) as info:
        leases.acquire(_plan("web", 30), REPORT)
    message = info.value.one_line()
    assert "not in" in message and "SHA256:" in message and "\n" not in message
    assert srv.known_hosts.read_bytes() == before
    assert _no_contact(srv)


def test_changed_host_key_is_refused_even_with_accept_new(sshd_factory, tmp_path):
    srv = sshd_factory()
    other = keygen(tmp_path / "other_host_key")
    kind, b64 = Path(str(other) + ".pub").read_text().split()[:2]
    srv.known_hosts.write_text(f"[127.0.0.1]:{srv.port} {kind} {b64}\n")
    before = srv.known_hosts.read_bytes()
    for accept in (False, True):
        leases = leases_for(sshd_factory, srv, "web-1", accept_new_host_key=accept)
        with pytest.raises(HostKeyRefused, match="CHANGED"):
            leases.acquire(_plan("web", 30), REPORT)
    assert srv.known_hosts.read_bytes() == before
    assert _no_contact(srv)


def test_accept_new_host_key_only_when_asked(sshd_factory):
    srv = sshd_factory()
    srv.known_hosts.unlink()
    leases = leases_for(sshd_factory, srv, "web-1", accept_new_host_key=True)
    assert leases.status()["host"] == "web-1"
    assert srv.known_hosts.read_text().startswith(f"[127.0.0.1]:{srv.port} ssh-ed25519 ")


def _transport(srv: SshdServer, host: str):
    import paramiko  # the tests may use paramiko directly to play a hostile client

    client = paramiko.SSHClient()
    client.load_host_keys(str(srv.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        port=srv.port,
        username="root",
        key_filename=str(srv.key(host)),
        allow_agent=False,
        look_for_keys=False,
        timeout=5,
    )
    return client


def _ask(chan, raw: bytes) -> dict:
    chan.settimeout(10)
    chan.sendall(raw)
    buf = b""
    while b"\n" not in buf:
        data = chan.recv(65536)
        assert data, f"channel closed; got {buf!r}"
        buf += data
    return json.loads(buf.split(b"\n")[0])


def test_agent_key_can_only_speak_the_protocol(sshd_factory):
    import paramiko

    srv = sshd_factory()
    client = _transport(srv, "web-1")
    try:
        transport = client.get_transport()
        # any command: the forced command runs instead and answers in JSON
        chan = transport.open_session()
        chan.exec_command("id; cat /etc/shadow")
        got = _ask(chan, b"id\n")
        assert got["ok"] is False and got["error"] == "bad_request"
        assert _ask(chan, b'{"v":1,"op":"status"}\n')["host"] == "web-1"
        chan.close()
        # no PTY
        chan = transport.open_session()
        with pytest.raises(paramiko.SSHException):
            chan.get_pty()
        chan.close()
        # a shell request also gets the protocol
        chan = transport.open_session()
        chan.invoke_shell()
        assert _ask(chan, b"echo $SHELL\n")["error"] == "bad_request"
        chan.close()
        # no sftp: the subsystem request gets the forced command, not an sftp server
        chan = transport.open_session(timeout=5)
        chan.settimeout(2)
        chan.invoke_subsystem("sftp")
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            paramiko.SFTPClient(chan).listdir("/")
        chan.close()
        # no port forwarding, either direction
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel(
                "direct-tcpip", ("127.0.0.1", srv.port), ("127.0.0.1", 0), timeout=5
            )
        with pytest.raises(paramiko.SSHException):
            transport.request_port_forward("127.0.0.1", 0)
    finally:
        client.close()


def test_openssh_client_with_the_agent_key_gets_no_shell(sshd_factory):
    srv = sshd_factory()
    base = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={srv.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        str(srv.key("web-1")),
        "-p",
        str(srv.port),
    ]
    run = subprocess.run(
        [*base, "root@127.0.0.1", "id"],
        input=b'{"v":1,"op":"status"}\n',
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 0
    assert json.loads(run.stdout)["host"] == "web-1" and b"uid=" not in run.stdout
    tty = subprocess.run(
        [*base, "-tt", "root@127.0.0.1", "sh"], input=b"", capture_output=True, timeout=60
    )
    assert b"PTY allocation request failed" in tty.stderr
    sftp_cmd = [
        "sftp",
        "-b",
        "-",
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={srv.known_hosts}",
        "-i",
        str(srv.key("web-1")),
        "-P",
        str(srv.port),
        "root@127.0.0.1",
    ]
    try:  # the server side is the protocol session, which never speaks sftp
        sftp = subprocess.run(sftp_cmd, input=b"ls /\n", capture_output=True, timeout=4)
        assert sftp.returncode != 0 and b"etc" not in sftp.stdout
    except subprocess.TimeoutExpired as exc:
        assert b"etc" not in (exc.stdout or b"")


def test_identity_comes_from_the_key_line(sshd_factory):
    srv = sshd_factory()
    line = SshLine(
        host="127.0.0.1",
        port=srv.port,
        user="root",
        key_path=str(srv.key("web-2")),
        known_hosts=str(srv.known_hosts),
    )
    try:
        acquire = {
            "v": 1,
            "id": 1,
            "op": "acquire",
            "group": "web",
            "fault": "pause",
            "duration": 5,
            "report": {"members": 3, "running": 3, "healthy": 3},
        }
        spoofed = json.loads(
            line.request(json.dumps({**acquire, "host": "web-1"}).encode() + b"\n")
        )
        assert spoofed["ok"] is False and "SSH key" in spoofed["reason"]
        granted = json.loads(line.request(json.dumps(acquire).encode() + b"\n"))
        assert granted["ok"] and granted["host"] == "web-2"
    finally:
        line.close()
    status = json.loads(srv.cli("status", "--json").stdout)
    assert [s["host"] for s in status["live"]] == ["web-2"]
    # web-1 cannot release web-2's lease
    other = leases_for(sshd_factory, srv, "web-1")
    other.release(Lease(granted["lease_id"], granted["token"], 30.0, 0.0))
    assert len(json.loads(srv.cli("status", "--json").stdout)["live"]) == 1


def test_oversized_and_binary_input_over_ssh(sshd_factory):
    srv = sshd_factory()
    line = SshLine(
        host="127.0.0.1",
        port=srv.port,
        user="root",
        key_path=str(srv.key("web-1")),
        known_hosts=str(srv.known_hosts),
        request_timeout=10,
    )
    try:
        big = json.loads(line.request(b"{" + b'"a":1,' * 40_000 + b"\n"))
        assert big["ok"] is False and "longer than" in big["reason"]
        binary = json.loads(line.request(b"\xff\x00\xfe\x1b[2J\n"))
        assert binary["ok"] is False and binary["error"] == "bad_request"
        assert json.loads(line.request(b'{"v":1,"op":"status"}\n'))["live"] == 0
    finally:
        line.close()


def test_coordinator_killed_mid_run_fails_closed_within_timeout(sshd_factory):
    srv = sshd_factory()
    leases = leases_for(sshd_factory, srv, "web-1", request_timeout=2.0, connect_timeout=2.0)
    lease = leases.acquire(_plan("web", 30), REPORT)
    srv.kill()
    t0 = time.monotonic()
    with pytest.raises(CoordinatorUnavailable):
        leases.renew(lease)
    with pytest.raises(CoordinatorUnavailable):
        leases.acquire(_plan("web", 30), REPORT)
    assert time.monotonic() - t0 < 2 * 2.0 + 3
    assert time.monotonic() < lease.local_deadline  # the agent heals by its own deadline


def test_coordinator_frozen_with_sigstop_never_blocks_forever(sshd_factory):
    srv = sshd_factory()
    leases = leases_for(sshd_factory, srv, "web-1", request_timeout=1.0, connect_timeout=1.0)
    # the first reply starts the session process: on a busy machine it can take over 1 s
    lease = leases.acquire(_plan("web", 30), REPORT, timeout=30.0)
    srv.signal_all(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(CoordinatorUnavailable, match="did not answer"):
            leases.renew(lease)
        renew_took = time.monotonic() - t0
        t1 = time.monotonic()
        with pytest.raises(CoordinatorUnavailable):  # reconnect: TCP accepted, no banner
            leases.acquire(_plan("web", 30), REPORT)
        reconnect_took = time.monotonic() - t1
        with pytest.raises(CoordinatorUnavailable, match="next attempt"):  # backing off
            leases.acquire(_plan("web", 30), REPORT)
    finally:
        srv.signal_all(signal.SIGCONT)
    assert renew_took < 1.0 + 2.0  # the request timeout, plus slack for a loaded CI
    assert reconnect_took < 4 * 1.0 + 2.0  # the connect watchdog bound
    deadline = time.monotonic() + 10
    while True:  # after the backoff it reconnects by itself
        try:
            renewed = leases.renew(lease)
            break
        except CoordinatorUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert renewed.token == lease.token


def test_a_call_with_a_timeout_is_bounded_even_when_it_must_reconnect(sshd_factory):
    """The engine bounds each call by its nearest lease deadline: a renew that first has
    to reconnect to a frozen sshd must still end within that bound, not 4 x connect_timeout."""
    srv = sshd_factory()
    leases = leases_for(sshd_factory, srv, "web-1", request_timeout=10.0, connect_timeout=10.0)
    lease = leases.acquire(_plan("web", 30), REPORT)
    leases.close()  # the next call must open a new connection
    srv.signal_all(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(CoordinatorUnavailable):
            leases.renew(lease, timeout=1.0)
        took = time.monotonic() - t0
    finally:
        srv.signal_all(signal.SIGCONT)
    assert took < 1.0 + 5.0  # unbounded: the banner alone may take 10 s, the watchdog 40 s


def test_halt_refuses_acquire_and_renew_until_resume(sshd_factory):
    srv = sshd_factory()
    web1 = leases_for(sshd_factory, srv, "web-1")
    web2 = leases_for(sshd_factory, srv, "web-2")
    lease = web1.acquire(_plan("web", 30), REPORT)
    halted = srv.cli("halt", "--reason", "incident 42")
    assert halted.returncode == 0, halted.stderr
    with pytest.raises(LeaseRefused, match="halted"):
        web1.renew(lease)
    web1.release(lease)
    with pytest.raises(LeaseRefused, match="halted"):
        web2.acquire(_plan("web", 30), REPORT)
    assert web2.status()["halted"] is True
    assert "HALTED: incident 42" in srv.cli("status").stdout
    assert srv.cli("resume").returncode == 0
    assert web2.acquire(_plan("web", 30), REPORT).token > lease.token


def test_stale_fencing_token_and_expired_lease_are_refused(sshd_factory):
    srv = sshd_factory(
        lease_ttl="2s", heal_grace="5s", max_concurrent=2, max_per_group=2, min_healthy=0
    )
    web1 = leases_for(sshd_factory, srv, "web-1")
    web2 = leases_for(sshd_factory, srv, "web-2")
    web1.status(), web2.status()  # connected first: a 2 s ttl must not pay for the handshake
    lease = web1.acquire(_plan("web", 0.5), REPORT)
    with pytest.raises(LeaseRefused, match="stale_token"):
        web1.renew(Lease(lease.lease_id, lease.token + 1, lease.ttl, 0.0))
    # frozen past its lease (deadline 0.5 s + heal_grace 5 s): another agent gets a
    # newer token, the old lease is gone
    time.sleep(5.8)
    newer = web2.acquire(_plan("web", 30), REPORT)
    assert newer.token > lease.token
    with pytest.raises(LeaseRefused, match="expired"):
        web1.renew(lease)


def test_coordinator_processes_are_never_process_targets(sshd_factory):
    """Issue 10, item 5 (RELIABILITY scenario 16): a `[[processes]] match = "python"` group
    on the coordinator host must not offer the session or the sshd serving it."""
    from agent.adapters import processes
    from agent.config import ProcessGroup

    srv = sshd_factory()
    # the "agent" is an unrelated process: the test's own tree (sshd is a child of
    # pytest) must not be what protects the session
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-c", "import time; time.sleep(300)"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    agent = psutil.Process(int(launched.stdout.strip()))
    sshd_factory.others.append(agent)
    client = leases_for(sshd_factory, srv, "web-1")
    client.status()  # a live session process now serves web-1
    session = wait_for(
        lambda: [
            p
            for p in psutil.process_iter(["cmdline"])
            if "agent.coordinator" in (p.info["cmdline"] or []) and p.pid in srv.descendants()
        ],
        20,
    )
    serving = {session[0].pid, *(p.pid for p in session[0].parents() if p.pid != 1)}
    groups = (ProcessGroup("py", match="python"), ProcessGroup("ssh", match="sshd"))
    found = {t.pid for t in processes.discover_processes(groups, self_pid=agent.pid)}
    assert not serving & found, (serving, found)
    with pytest.raises(NotEligible, match="coordinator"):
        processes.pinned(session[0].pid, session[0].create_time(), self_pid=agent.pid)


def test_a_session_that_ended_idle_is_reopened_by_the_next_call(sshd_factory):
    """Item 5: sessions end when idle; the agent's next call must simply reconnect."""
    srv = sshd_factory()
    client = leases_for(sshd_factory, srv, "web-1")
    assert client.status()["host"] == "web-1"

    def session_pids() -> list[int]:
        return [
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if "agent.coordinator" in (p.info["cmdline"] or []) and p.pid in srv.descendants()
        ]

    [pid] = wait_for(session_pids, 20)
    os.kill(pid, signal.SIGTERM)  # what the idle timeout amounts to: the session process ends
    wait_for(lambda: not client._transport.connected, 20)
    assert client.status()["host"] == "web-1"
    assert session_pids() and pid not in session_pids()
