"""Protocol validation, the session loop, policy parsing, `authorize`, and the client's
handling of hostile replies. No SSH here (see test_coordinator_ssh.py)."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import CoordinatorSection
from agent.coordinator import protocol
from agent.coordinator.cli import authorized_keys_line
from agent.coordinator.client import CoordinatorLeases
from agent.coordinator.policy import load_policy, policy_text
from agent.coordinator.protocol import ProtocolError, parse_request
from agent.coordinator.session import PolicyCache, Session, read_line
from agent.coordinator.store import Store
from agent.errors import ConfigError, CoordinatorUnavailable, LeaseRefused, UsageError
from agent.leases import GroupReport, Lease
from agent.model import Plan, Target

pytestmark = pytest.mark.pure

REPO = Path(__file__).resolve().parent.parent
ACQUIRE = {
    "v": 1,
    "id": 1,
    "op": "acquire",
    "group": "web",
    "fault": "pause",
    "duration": 30,
    "report": {"members": 3, "running": 3, "healthy": 3},
}
PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvEfHMUx3sF0VCw8S8xkWxEO8C4JUOjhpBd1QzOQ3xZ me@x"


def line(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture
def session(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text(min_gap="0s", max_concurrent=1))
    store = Store(tmp_path / "c.db")
    yield Session("web-1", store, PolicyCache(policy))
    store.close()


def reply(raw: bytes) -> dict:
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    return json.loads(raw)


def test_valid_requests_parse():
    got = parse_request(line(ACQUIRE))
    assert isinstance(got, protocol.Acquire) and got.report.healthy == 3 and got.group == "web"
    renew = parse_request(line({"v": 1, "op": "renew", "lease_id": "L-" + "a" * 32, "token": 3}))
    assert isinstance(renew, protocol.Renew) and renew.token == 3
    rep = {
        "v": 1,
        "op": "report",
        "groups": [{"group": "db", "members": 2, "running": 1, "healthy": 1}],
    }
    assert isinstance(parse_request(line(rep)), protocol.Report)
    assert isinstance(parse_request(b'{"v":1,"op":"status"}'), protocol.Status)


@pytest.mark.parametrize(
    "bad",
    [
        {**ACQUIRE, "v": 2},
        {**ACQUIRE, "v": True},
        {**ACQUIRE, "op": "grant"},
        {**ACQUIRE, "host": "web-9"},
        {**ACQUIRE, "extra": 1},
        {**ACQUIRE, "fault": "rm -rf"},
        {**ACQUIRE, "group": "web; $(id)"},
        {**ACQUIRE, "group": "x" * 129},
        {**ACQUIRE, "duration": -1},
        {**ACQUIRE, "duration": 1e300},
        {**ACQUIRE, "duration": "30"},
        {**ACQUIRE, "duration": True},
        {**ACQUIRE, "report": {"members": 1, "running": 2, "healthy": 2}},
        {**ACQUIRE, "report": {"members": 3, "running": 3, "healthy": 3, "host": "x"}},
        {**ACQUIRE, "report": [1, 2]},
        {**ACQUIRE, "id": {"a": 1}},
        {k: v for k, v in ACQUIRE.items() if k != "report"},
        {"v": 1, "op": "renew", "lease_id": "L-../../etc", "token": 3},
        {"v": 1, "op": "renew", "lease_id": "L-" + "a" * 32, "token": 0},
        {"v": 1, "op": "renew", "lease_id": "L-" + "a" * 32, "token": 2**70},
        {
            "v": 1,
            "op": "report",
            "groups": [{"group": "a", "members": 1, "running": 1, "healthy": 1}] * 2,
        },
        [1, 2, 3],
        "status",
    ],
)
def test_invalid_requests_are_refused(bad):
    with pytest.raises(ProtocolError):
        parse_request(line(bad))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"\xff\xfe\x00binary",
        b'{"v":1,"op":"status"}\x00',
        b'{"v":1,"op":"status","v":1}',
        b'{"v":1,"op":"acquire","duration":NaN}',
        b"[" * 100_000,
        b"{" + b"x" * (protocol.MAX_LINE + 1),
    ],
)
def test_malformed_bytes_are_refused(raw):
    with pytest.raises(ProtocolError):
        parse_request(raw)


def test_client_sent_host_is_refused_and_changes_nothing(session):
    got = reply(session.handle(line({**ACQUIRE, "host": "web-9"})))
    assert got["ok"] is False and got["error"] == "bad_request" and "SSH key" in got["reason"]
    assert session.store.status()["live"] == []
    granted = reply(session.handle(line(ACQUIRE)))
    assert granted["ok"] and granted["host"] == "web-1"
    assert [s["host"] for s in session.store.status()["live"]] == ["web-1"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=2048))
def test_any_bytes_get_a_clean_error_reply(session, raw):
    got = reply(session.handle(raw))
    assert got["v"] == 1 and got["ok"] is False and got["error"] == "bad_request"
    assert session.store.status()["live"] == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.sampled_from(
        [ACQUIRE, {"v": 1, "op": "renew", "lease_id": "L-" + "0" * 32, "token": 1}]
    ),
    key=st.sampled_from(
        ["v", "id", "op", "group", "fault", "duration", "report", "lease_id", "token", "host"]
    ),
    value=json_values,
)
def test_mutated_requests_never_crash(session, base, key, value):
    got = reply(session.handle(line({**base, key: value})))
    assert isinstance(got["ok"], bool)
    if not got["ok"]:
        assert got["error"] in {"bad_request", "unknown_lease", "max_concurrent", "min_healthy"}


def test_read_line_handles_oversized_and_partial_lines():
    big = b"x" * (protocol.MAX_LINE + 10) + b"\n"
    stream = io.BytesIO(big + b'{"v":1,"op":"status"}\n' + b"partial-without-newline")
    assert read_line(stream, protocol.MAX_LINE) == (b"", True)
    assert read_line(stream, protocol.MAX_LINE) == (b'{"v":1,"op":"status"}', False)
    assert read_line(stream, protocol.MAX_LINE) == (None, False)


def test_session_process_over_pipes(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text(policy_text())
    session = [sys.executable, "-m", "agent.coordinator", "session", "web-1"]
    session += ["--db", str(tmp_path / "c.db"), "--policy", str(policy)]
    missing = subprocess.run(
        session,
        input=b"",
        capture_output=True,
        timeout=60,
        cwd=REPO,
    )
    assert missing.returncode == 1 and b"coordinator init" in missing.stderr
    assert not (tmp_path / "c.db").exists()
    Store(tmp_path / "c.db").close()
    payload = (
        b"x" * (200 * 1024)
        + b"\n\xff\xfe\x80\n"
        + b'{"v":1,"id":"a","op":"status"}\n'
        + line({**ACQUIRE, "host": "evil"})
        + b"\n"
    )
    proc = subprocess.run(
        session,
        input=payload,
        capture_output=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["ok"] for r in replies] == [False, False, True, False]
    assert "longer than" in replies[0]["reason"] and "UTF-8" in replies[1]["reason"]
    assert replies[2]["host"] == "web-1" and replies[2]["live"] == 0


@pytest.mark.parametrize("host", ["", "a b", "x;id", "../x", "..", "é", "a" * 65, "web-1\n"])
def test_session_refuses_bad_identity(tmp_path, host):
    with pytest.raises(ConfigError):
        Session(host, Store(tmp_path / "c.db"), PolicyCache(tmp_path / "p.toml"))


def test_policy_errors_name_the_key_path(tmp_path):
    p = tmp_path / "p.toml"
    cases = {
        policy_text(max_concurrent=-1): "fleet.max_concurrent",
        policy_text(lease_ttl="soon"): "fleet.lease_ttl",
        policy_text(windows=["Mon 25:00-26:00"]): "fleet.windows[0]",
        policy_text(faults=["nuke"]): "fleet.faults[0]",
        policy_text(max_concurent=1): "fleet.max_concurent",
        "[fleets]\n": "fleets",
        policy_text(timezone="Mars/Base"): "fleet.timezone",
        policy_text(reporters={"db": ["a b"]}): "reporters.db",
    }
    for text, path in cases.items():
        p.write_text(text)
        with pytest.raises(ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
            load_policy(p)
    p.write_text(policy_text(max_concurrent=3, min_gap="1m", windows=["daily 00:00-24:00"]))
    pol = load_policy(p)
    assert pol.max_concurrent == 3 and pol.min_gap == 60 and len(pol.windows) == 1


def test_invalid_policy_refuses_acquire_and_renew_but_allows_release(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text(policy_text(max_concurrent="x"))
    store = Store(tmp_path / "c.db")
    s = Session("web-1", store, PolicyCache(policy))
    got = reply(s.handle(line(ACQUIRE)))
    assert got["error"] == "policy" and "fleet.max_concurrent" in got["reason"]
    store.close()


def test_authorized_keys_line():
    text = authorized_keys_line(
        PUB, "web-1", db="/var/lib/c.db", policy="/etc/c.toml", python="/usr/bin/python3"
    )
    assert text == (
        'command="/usr/bin/python3 -m agent.coordinator session web-1 --db /var/lib/c.db '
        '--policy /etc/c.toml",restrict ' + " ".join(PUB.split()[:2]) + " chaos-agent:web-1"
    )
    spaced = authorized_keys_line(PUB, "w", db="/a b/c.db", policy="/p", python="/py")
    assert "'/a b/c.db'" in spaced


@pytest.mark.parametrize(
    ("key", "host", "db"),
    [
        (PUB, "web 1", "/d"),
        (PUB, "web;id", "/d"),
        (PUB, "", "/d"),
        ('command="sh" ' + PUB, "w", "/d"),
        (PUB + "\n" + PUB, "w", "/d"),
        ("ssh-ed25519 AAAA!!!", "w", "/d"),
        ("ssh-rsa " + PUB.split()[1], "w", "/d"),
        (PUB, "w", 'x"y'),
        (PUB, "w", "/a\nb"),
        (PUB, "w", "relative.db"),
        (PUB, "w", "/srv/it's/c.db"),
    ],
)
def test_authorize_refuses_bad_input(key, host, db):
    with pytest.raises(UsageError):
        authorized_keys_line(key, host, db=db, policy="/p", python="/py")


def test_authorize_never_emits_a_quote_inside_the_forced_command():
    """Issue 10, item 6: shlex quoting of a `'` produced a `"` that ends command="..."."""
    for db in ("/srv/a b/c.db", "/srv/x$(id)/c.db", "/srv/é/c.db", "/srv/it's/c.db"):
        try:
            text = authorized_keys_line(PUB, "w", db=db, policy="/p", python="/py")
        except UsageError:
            continue
        command = text.split('command="', 1)[1].split('",restrict ', 1)[0]
        assert '"' not in command and "\\" not in command, text
        assert shlex.split(command)[6] == db


def test_authorize_cli(tmp_path):
    pub = tmp_path / "k.pub"
    pub.write_text(PUB + "\n")
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.coordinator",
            "authorize",
            str(pub),
            "--host",
            "db-2",
            "--db",
            "/srv/c.db",
            "--policy",
            "/srv/p.toml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f'command="{sys.executable} -m agent.coordinator session db-2 ')
    assert ",restrict ssh-ed25519 " in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "agent.coordinator", "authorize", str(pub), "--host", "db 2;x"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: invalid --host")


# --- the client against a scripted transport ------------------------------------------


class Scripted:
    def __init__(self, *replies: bytes) -> None:
        self.replies = list(replies)
        self.sent: list[dict] = []
        self.closed = 0

    def request(self, raw: bytes, timeout: float | None = None) -> bytes:
        self.sent.append(json.loads(raw))
        rep = self.replies.pop(0)
        return rep.replace(b"$ID", str(self.sent[-1]["id"]).encode())

    def close(self) -> None:
        self.closed += 1


PLAN = Plan("pause", Target("container", "c" * 64, "web-1", "web", "running"), 30.0)
REPORT = GroupReport("web", 3, 3, 3)
SECTION = CoordinatorSection(enabled=True, host="x", renew_margin=5.0)


def test_client_acquire_sets_local_deadline_before_ttl():
    t = Scripted(
        b'{"v":1,"id":$ID,"ok":true,"lease_id":"L-'
        + b"a" * 32
        + b'","token":9,"ttl":60,"host":"web-1"}'
    )
    leases = CoordinatorLeases(SECTION, "web-1", transport=t, clock=lambda: 100.0)
    got = leases.acquire(PLAN, REPORT)
    assert got.token == 9 and got.ttl == 60 and got.local_deadline == 155.0
    assert "host" not in t.sent[0] and t.sent[0]["report"] == {
        "members": 3,
        "running": 3,
        "healthy": 3,
    }


@pytest.mark.parametrize(
    ("raw", "exc"),
    [
        (b'{"v":1,"id":$ID,"ok":false,"error":"halted","reason":"stop\\u001b[2J"}', LeaseRefused),
        (
            b'{"v":1,"id":$ID,"ok":false,"error":"unavailable","reason":"db busy"}',
            CoordinatorUnavailable,
        ),
        (b'{"v":1,"id":999,"ok":true}', CoordinatorUnavailable),
        (b"\xff\xff", CoordinatorUnavailable),
        (
            b'{"v":1,"id":$ID,"ok":true,"lease_id":"L-' + b"a" * 32 + b'","token":true,"ttl":60}',
            CoordinatorUnavailable,
        ),
        (
            b'{"v":1,"id":$ID,"ok":true,"lease_id":"L-' + b"a" * 32 + b'","token":1,"ttl":1e999}',
            CoordinatorUnavailable,
        ),
        (
            b'{"v":1,"id":$ID,"ok":true,"lease_id":"; rm","token":1,"ttl":60}',
            CoordinatorUnavailable,
        ),
    ],
)
def test_client_hostile_replies(raw, exc):
    leases = CoordinatorLeases(SECTION, "web-1", transport=Scripted(raw))
    with pytest.raises(exc) as info:
        leases.acquire(PLAN, REPORT)
    assert "\x1b" not in info.value.one_line()


def test_client_release_is_best_effort():
    t = Scripted(b'{"v":1,"id":$ID,"ok":false,"error":"stale_token","reason":"x"}')
    leases = CoordinatorLeases(SECTION, "web-1", transport=t)
    leases.release(Lease("L-" + "a" * 32, 3, 60.0, 0.0))
    assert t.sent[0]["op"] == "release" and t.sent[0]["token"] == 3


# --- issue 10: hostile files, idle sessions ---------------------------------------------


def test_a_policy_cut_anywhere_before_its_last_key_is_refused(tmp_path):
    """Item 3: an empty or truncated file used to be a valid, permissive policy."""
    full = policy_text(max_concurrent=0, min_gap="0s")
    p = tmp_path / "p.toml"
    last_key = full.rindex("\ntimezone") + 1
    for cut in range(last_key):
        p.write_text(full[:cut])
        with pytest.raises(ConfigError):
            load_policy(p)
    p.write_text(full)
    assert load_policy(p).max_concurrent == 0
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    check = subprocess.run(
        [sys.executable, "-m", "agent.coordinator", "check", "--policy", str(empty)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert check.returncode == 2 and "[fleet]" in check.stderr, check.stderr


def test_truncated_policy_refuses_acquire(tmp_path):
    """Item 3: `cat new > policy.toml` truncates a `max_concurrent = 0` policy first."""
    policy = tmp_path / "p.toml"
    policy.write_text(policy_text(max_concurrent=0, min_gap="0s"))
    store = Store(tmp_path / "c.db")
    s = Session("web-1", store, PolicyCache(policy))
    assert reply(s.handle(line(ACQUIRE)))["error"] == "max_concurrent"
    policy.write_text("")  # what the shell's `>` does before writing the new text
    got = reply(s.handle(line({**ACQUIRE, "fault": "kill"})))
    assert got["ok"] is False and got["error"] == "policy", got
    store.close()


def test_a_policy_changing_while_read_is_not_adopted(tmp_path, monkeypatch):
    """Item 3: never adopt a file that changed between the start and the end of a read."""
    from agent.coordinator import policy as policy_mod

    p = tmp_path / "p.toml"
    p.write_text(policy_text(max_concurrent=2))
    cache = PolicyCache(p)
    real_fstat = os.fstat
    calls = {"n": 0}

    def growing_fstat(fd):
        calls["n"] += 1
        st = real_fstat(fd)
        if calls["n"] == 2:  # the second look: the writer appended meanwhile
            p.write_text(policy_text(max_concurrent=2) + "# more\n")
            st = real_fstat(fd)
        return st

    monkeypatch.setattr(policy_mod.os, "fstat", growing_fstat)
    assert cache.get() is None and "changed while being read" in cache.error
    monkeypatch.setattr(policy_mod.os, "fstat", real_fstat)
    assert cache.get() is not None and cache.get().max_concurrent == 2


def test_idle_session_ends_and_one_identity_has_a_session_limit(tmp_path):
    """Item 5: an idle session ends by itself; one identity holds at most N sessions."""
    policy = tmp_path / "p.toml"
    policy.write_text(policy_text())
    Store(tmp_path / "c.db").close()
    base = [sys.executable, "-m", "agent.coordinator", "session", "web-1"]
    base += ["--db", str(tmp_path / "c.db"), "--policy", str(policy)]
    procs = []
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*base, "--idle-timeout", "2", "--max-sessions", "1"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=REPO,
                )  # fmt: skip
            )
            if len(procs) == 1:  # the first one answers before the second starts
                procs[0].stdin.write(b'{"v":1,"id":1,"op":"status"}\n')
                procs[0].stdin.flush()
                assert json.loads(procs[0].stdout.readline())["ok"] is True
        second_out, second_err = procs[1].communicate(timeout=60)
        assert procs[1].returncode == 1, second_err
        assert "already has 1 sessions" in json.loads(second_out)["reason"]
        # the first, idle with its stdin still open, ends by itself
        assert procs[0].wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def test_coordinator_status_json_has_the_documented_shape(tmp_path):
    """docs/json.md shows every key of `coordinator status --json`."""
    from tests.test_output_escaping import assert_shape, documented

    db = tmp_path / "c.db"
    store = Store(db)
    counts = protocol.GroupCounts("web", 3, 3, 3)
    pol = load_policy_text(tmp_path, policy_text(max_concurrent=2, min_healthy=0, min_gap="0s"))
    first = store.acquire(pol, "web-a", "web", "pause", 30, counts)
    store.release("web-a", first.lease_id, first.token)
    store.acquire(pol, "web-b", "web", "kill", 30, counts)
    store.close()
    out = subprocess.run(
        [sys.executable, "-m", "agent.coordinator", "status", "--json", "--db", str(db)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    real = json.loads(out.stdout)
    assert real["live"] and real["recent"] and real["hosts"]
    assert_shape(real, documented("coordinator status --json"))


def load_policy_text(tmp_path, text: str):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(path)


def test_a_session_answers_at_most_rate_requests_per_second():
    """Item 2: a burst of 40, then 20 requests per second (fake clock: no timing)."""
    from agent.coordinator.session import BURST, RATE, RateLimit

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimit(clock=lambda: now[0], sleep=sleep)
    for _ in range(int(BURST)):
        limiter.wait()
    assert slept == []
    for _ in range(100):
        limiter.wait()
    assert len(slept) == 100 and now[0] == pytest.approx(100 / RATE)
