"""Network faults on the real engine and kernel: real containers, real iptables rules in
their namespaces, real traffic. Every container/network is removed at the end (fixtures),
and every fault is healed in a finally; a container's rules die with its namespace.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.adapters import netns
from agent.adapters.docker_engine import DockerEngine, group_of
from agent.adapters.docker_ports import DockerContainers
from agent.config import load_config
from agent.discovery import with_netns_sharers
from agent.errors import FaultFailed, Unsupported
from agent.faults import network
from agent.model import ActiveFault, Target
from tests.conftest import SESSION, TEST_LABEL, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.host]

# --- helpers -----------------------------------------------------------------------------


def fid() -> str:
    return uuid.uuid4().hex[:12]


def target_of(info: dict[str, Any]) -> Target:
    labels = info["Config"].get("Labels") or {}
    name = info["Name"].lstrip("/")
    return Target(
        kind="container",
        id=info["Id"],
        name=name,
        group=group_of(labels, name),
        state="running",
        labels=labels,
        network_mode=info["HostConfig"]["NetworkMode"],
        pid=info["State"]["Pid"],
    )


def record_for(
    fault: Any, info: dict[str, Any], params: dict[str, Any], fault_id: str | None = None, **kw: Any
) -> ActiveFault:
    fault_id = fault_id or fid()
    target = target_of(info)
    now = time.time()
    return ActiveFault(
        fault_id=fault_id,
        fault=fault.name,
        target_kind="container",
        target_id=info["Id"],
        target_name=kw.pop("target_name", target.name),
        group=target.group,
        injected_at=now,
        deadline=now + 30,
        started_at=info["State"]["StartedAt"],
        pid=info["State"]["Pid"],
        params=params,
        artifacts=fault.artifacts(fault_id, target, params),
        **kw,
    )


def inject(fault: Any, record: ActiveFault) -> ActiveFault:
    extra = fault.inject(record)
    return record.evolve(extra={**record.extra, **extra}, status="active")


def ns_exec(pid: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True, check=check
    )


def snapshot(pid: int) -> str:
    """iptables-save + ip6tables-save + qdiscs of a namespace, counters and dates removed."""
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        text = ns_exec(pid, tool).stdout
        text = re.sub(r"^#.*\n", "", text, flags=re.M)
        out.append(re.sub(r"\[\d+:\d+\]", "[0:0]", text))
    out.append(ns_exec(pid, "tc", "qdisc", "show").stdout)
    return "".join(out)


def our_tags(pid: int) -> str:
    text = snapshot(pid)
    return "\n".join(
        line for line in text.splitlines() if "CHAOS-" in line or "chaos-agent:" in line
    )


TCP_SCRIPT = """
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    data = s.recv(200)
    sys.exit(0 if data.startswith(b"HTTP/1.1 200") else 3)
except OSError:
    sys.exit(1)
"""


def http_from(container: str, ip: str, port: int = 8080, timeout: float = 1.5) -> bool:
    """An HTTP GET from inside `container` (argument list: no shell)."""
    result = subprocess.run(
        ["docker", "exec", container, "python3", "-c", TCP_SCRIPT, ip, str(port), str(timeout)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode == 0


def http_from_host(ip: str, port: int = 8080, timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(200).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def ip_of(info: dict[str, Any], net: str) -> str:
    return info["NetworkSettings"]["Networks"][net]["IPAddress"]


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    docker = DockerEngine()
    yield docker
    docker.close()


@pytest.fixture(scope="module")
def config() -> Any:
    return load_config(None)


@pytest.fixture
def net(docker_api: Any) -> Iterator[str]:
    """A user-defined bridge network with a configured subnet (static IPs allowed)."""
    import docker

    name = f"chaos-nf-{uuid.uuid4().hex[:6]}"
    for _ in range(10):
        subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"  # noqa: S311
        try:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
            docker_api.create_network(name, labels={TEST_LABEL: SESSION}, ipam=ipam)
            break
        except docker.errors.APIError:
            continue
    else:
        pytest.fail("could not create a test network")
    yield name
    for c in docker_api.inspect_network(name).get("Containers") or {}:
        try:
            docker_api.remove_container(c, force=True)
        except Exception:  # noqa: BLE001, S110
            pass
    docker_api.remove_network(name)


@pytest.fixture
def pair(containers: Callable[..., dict[str, Any]], net: str) -> tuple[dict, dict]:
    a = containers("nf-a", {"chaos.group": "app"}, network=net)
    b = containers("nf-b", {"chaos.group": "client"}, network=net)
    assert wait_until(lambda: http_from_host(ip_of(a, net)), 10), "web replica never answered"
    return a, b


# --- capabilities ---------------------------------------------------------------------------


def test_probe_names_what_is_missing() -> None:
    caps = netns.capabilities()
    assert caps.iptables is None, caps.iptables
    assert caps.statistic is None, caps.statistic
    assert caps.tbf is None, caps.tbf
    # netem: either usable, or one line that names the missing kernel module
    if caps.netem is not None:
        assert "sch_netem" in caps.netem and "\n" not in caps.netem


def test_latency_runs_where_netem_exists_else_is_reported_unavailable(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], net: str
) -> None:
    a, b = pair
    faults = {f.name: f for f in network.network_faults(engine, config)}
    caps = netns.capabilities()
    before = snapshot(a["State"]["Pid"])
    for name in ("latency", "jitter"):
        fault = faults[name]
        record = record_for(fault, a, {"delay": "150ms", "jitter": "10ms"})
        if caps.netem is not None:
            # this kernel cannot: the fault says why, in one line, and inject refuses
            assert fault.unavailable() == caps.netem
            assert "sch_netem" in fault.unavailable()
            with pytest.raises(Unsupported, match="sch_netem"):
                fault.inject(record)
            assert snapshot(a["State"]["Pid"]) == before
            continue
        record = inject(fault, record)
        try:
            start = time.monotonic()
            assert http_from(b["Name"].lstrip("/"), ip_of(a, net), timeout=5)
            assert time.monotonic() - start > 0.15
        finally:
            assert fault.heal(record).healed
        assert snapshot(a["State"]["Pid"]) == before


# --- partition -------------------------------------------------------------------------------


def test_partition_isolate_cuts_new_and_established_traffic_and_heals_exactly(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], net: str
) -> None:
    a, b = pair
    pid, a_ip, b_name = a["State"]["Pid"], ip_of(a, net), b["Name"].lstrip("/")
    ns_exec(pid, "iptables", "-A", "INPUT", "-s", "203.0.113.7", "-j", "DROP")  # the user's rule
    before = snapshot(pid)
    assert wait_until(lambda: http_from(b_name, a_ip), 10) and http_from_host(a_ip)

    # an established keep-alive connection from the host
    conn = socket.create_connection((a_ip, 8080), timeout=2)
    conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not (b"hello from" in first and first.endswith(b"\n")):  # the whole reply
        chunk = conn.recv(500)
        assert chunk, "connection closed before the first reply"
        first += chunk
    assert first.startswith(b"HTTP/1.1 200")

    fault = network.Partition(DockerContainers(engine), config)
    record = record_for(fault, a, {"mode": "isolate", "host_ports": True})
    try:
        record = inject(fault, record)
        assert not http_from(b_name, a_ip)
        assert not http_from_host(a_ip)
        assert not http_from(a["Name"].lstrip("/"), ip_of(b, net))  # outbound too
        conn.settimeout(1.5)
        try:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = conn.recv(500)
        except OSError:
            reply = b""
        assert reply == b"", "an established connection kept working during the partition"
    finally:
        conn.close()
        outcome = fault.heal(record)
    assert outcome.healed and outcome.how == "healed", outcome
    assert snapshot(pid) == before
    assert "-s 203.0.113.7/32 -j DROP" in before
    assert wait_until(lambda: http_from_host(a_ip)) and http_from(b_name, a_ip)
    again = fault.heal(record)  # idempotent
    assert again.healed and again.how == "already"


def test_partition_from_group_cuts_only_that_group(
    engine: DockerEngine, config: Any, containers: Callable[..., dict], net: str
) -> None:
    app = containers("nf-app", {"chaos.group": f"app-{SESSION}"}, network=net)
    db = containers("nf-db", {"chaos.group": f"db-{SESSION}"}, network=net)
    other = containers("nf-other", {"chaos.group": f"other-{SESSION}"}, network=net)
    app_name = app["Name"].lstrip("/")
    assert wait_until(lambda: http_from(app_name, ip_of(db, net)), 10)
    assert http_from(app_name, ip_of(other, net))
    before = snapshot(app["State"]["Pid"])
    fault = network.Partition(DockerContainers(engine), config)
    record = record_for(fault, app, {"mode": "from", "from_group": f"db-{SESSION}"})
    try:
        record = inject(fault, record)
        assert not http_from(app_name, ip_of(db, net))
        assert not http_from(db["Name"].lstrip("/"), ip_of(app, net))
        assert http_from(app_name, ip_of(other, net))
    finally:
        assert fault.heal(record).healed
    assert snapshot(app["State"]["Pid"]) == before
    assert http_from(app_name, ip_of(db, net))


def test_partition_host_ports_false_keeps_published_port(
    engine: DockerEngine, config: Any, containers: Callable[..., dict], net: str, docker_api: Any
) -> None:
    a = containers("nf-pub", {"chaos.group": "pub"}, network=net, port_bindings={8080: None})
    b = containers("nf-peer", {"chaos.group": "peer"}, network=net)
    a = docker_api.inspect_container(a["Id"])
    host_port = int(a["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
    assert wait_until(lambda: http_from_host("127.0.0.1", host_port), 10)
    fault = network.Partition(DockerContainers(engine), config)
    record = record_for(fault, a, {"mode": "isolate", "host_ports": False})
    try:
        record = inject(fault, record)
        assert http_from_host("127.0.0.1", host_port), "published port was cut"
        assert not http_from(b["Name"].lstrip("/"), ip_of(a, net)), "peer still reaches it"
    finally:
        assert fault.heal(record).healed


def test_heal_from_record_alone_after_crash_half_apply_and_duplicates(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], net: str
) -> None:
    a, b = pair
    pid = a["State"]["Pid"]
    ns_exec(pid, "iptables", "-A", "OUTPUT", "-d", "198.51.100.9", "-j", "REJECT")
    before = snapshot(pid)
    fault_id = fid()
    first = network.Partition(DockerContainers(engine), config)
    record = record_for(first, a, {"mode": "isolate"}, fault_id=fault_id)
    first.inject(record)  # the agent "crashes" here: extra never reaches the ledger
    ingress, egress = netns.chain_names(fault_id)
    # a duplicate jump, as a retried apply could leave
    ns_exec(pid, "iptables", "-I", "INPUT", "-m", "comment", "--comment",
            f"chaos-agent:{fault_id}", "-j", ingress)  # fmt: skip
    assert our_tags(pid).count(f"-j {ingress}") == 2
    fresh = network.Partition(
        DockerContainers(DockerEngine()), config
    )  # a new process, the ledger record only
    outcome = fresh.heal(record)
    assert outcome.healed and outcome.how == "healed", outcome
    assert snapshot(pid) == before
    assert http_from(b["Name"].lstrip("/"), ip_of(a, net))

    # half-applied: our chain exists, filled, but no jump yet
    half = fid()
    h_in, _ = netns.chain_names(half)
    ns_exec(pid, "iptables", "-N", h_in)
    ns_exec(pid, "iptables", "-A", h_in, "-j", "DROP")
    rec2 = record_for(fresh, a, {"mode": "isolate"}, fault_id=half)
    assert fresh.heal(rec2).healed
    assert snapshot(pid) == before


def test_heal_ignores_foreign_rules_it_cannot_parse(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], net: str
) -> None:
    """A user rule with an unbalanced quote in the target's namespace (issue 10, item 7)
    used to make every heal attempt raise; the heal must remove ours and keep theirs."""
    a, _b = pair
    pid = a["State"]["Pid"]
    ns_exec(pid, "iptables", "-A", "INPUT", "-i", "wg'0", "-j", "ACCEPT")
    ns_exec(pid, "iptables", "-A", "OUTPUT", "-m", "comment", "--comment", 'a"b', "-j", "ACCEPT")
    before = snapshot(pid)
    assert "wg'0" in before
    fault = network.Partition(DockerContainers(engine), config)
    record = inject(fault, record_for(fault, a, {"mode": "isolate"}))
    assert our_tags(pid), "the partition installed nothing"
    outcome = fault.heal(record)
    assert outcome.healed, outcome
    assert our_tags(pid) == ""
    assert snapshot(pid) == before


def test_sweep_removes_orphans_only(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], net: str
) -> None:
    a, b = pair
    pid = a["State"]["Pid"]
    ns_exec(pid, "iptables", "-A", "INPUT", "-s", "203.0.113.8", "-j", "DROP")
    before = snapshot(pid)
    fault = network.Loss(DockerContainers(engine), config)
    owned = record_for(fault, a, {"percent": 10.0})
    orphan = record_for(network.Partition(DockerContainers(engine), config), a, {"mode": "isolate"})
    orphan_qdisc = fid()
    scope = {a["Id"], b["Id"]}
    try:
        owned = inject(fault, owned)
        network.Partition(DockerContainers(engine), config).inject(orphan)
        ns_exec(pid, "tc", "qdisc", "add", "dev", "eth0", "root", "handle",
                netns.tc_handle(orphan_qdisc), "tbf", "rate", "10mbit", "burst", "20000",
                "latency", "100ms")  # fmt: skip
        # scoped to this test's containers: other sessions on this engine may have live faults
        removed = network.sweep_network_leftovers(
            DockerContainers(engine), {owned.fault_id}, only=scope
        )
        text = "\n".join(removed)
        assert orphan.fault_id in text and netns.tc_handle(orphan_qdisc) in text
        assert owned.fault_id not in text
        tags = our_tags(pid)
        assert owned.fault_id in tags and orphan.fault_id not in tags
        assert netns.tc_handle(orphan_qdisc) not in ns_exec(pid, "tc", "qdisc", "show").stdout
        assert "203.0.113.8" in snapshot(pid)  # the user's rule is untouched
    finally:
        assert fault.heal(owned).healed
    assert snapshot(pid) == before
    assert network.sweep_network_leftovers(DockerContainers(engine), set(), only=scope) == []


def test_a_one_off_inject_sweeps_leftovers_while_it_waits_but_not_detached(
    engine: DockerEngine, config: Any, containers: Callable[..., dict[str, Any]], net: str,
    tmp_path: Any,
) -> None:  # fmt: skip
    value = f"sw-{uuid.uuid4().hex[:8]}"
    a = containers("sw-a", {"chaos.enable": value, "chaos.group": "alone"}, network=net)
    b = [containers(f"sw-b{i}", {"chaos.enable": value, "chaos.group": "web"}) for i in (1, 2)]
    pid = a["State"]["Pid"]
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\ndeadman = "off"\n'
        f'[targets]\nvalue = "{value}"\n'
    )
    name = b[0]["Name"].lstrip("/")

    def orphan() -> str:
        record = record_for(
            network.Partition(DockerContainers(engine), config), a, {"mode": "isolate"}
        )
        network.Partition(DockerContainers(engine), config).inject(record)
        assert record.fault_id in our_tags(pid)
        return record.fault_id

    try:
        left = orphan()
        detached = run_cli("inject", "pause", name, "-d", "1s", "--detach", "--config", str(cfg))
        assert detached.returncode == 0, detached.stderr
        assert left in our_tags(pid)  # --detach leaves the sweep to `run`, `heal`, next start
        healed = run_cli("heal", "--config", str(cfg))
        assert healed.returncode == 0, healed.stderr
        assert our_tags(pid) == ""
        left = orphan()
        waited = run_cli("inject", "pause", name, "-d", "1s", "--config", str(cfg))
        assert waited.returncode == 0, waited.stderr
        assert (
            "healed pause" in waited.stderr
            and f"removed leftover {a['Name'].lstrip('/')}" in waited.stderr
        )
        assert left in waited.stderr and our_tags(pid) == ""
    finally:
        network.sweep_network_leftovers(DockerContainers(engine), set(), only={a["Id"]})


def test_restarted_target_is_left_alone(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], net: str, docker_api: Any
) -> None:
    a, b = pair
    fault = network.Partition(DockerContainers(engine), config)
    record = inject(fault, record_for(fault, a, {"mode": "isolate"}))
    docker_api.restart(a["Id"], timeout=1)
    after = docker_api.inspect_container(a["Id"])
    assert after["State"]["StartedAt"] != record.started_at
    new_before = snapshot(after["State"]["Pid"])
    outcome = fault.heal(record)
    assert outcome.healed and outcome.how == "environment", outcome
    assert snapshot(after["State"]["Pid"]) == new_before
    assert record.fault_id not in new_before
    assert wait_until(lambda: http_from(b["Name"].lstrip("/"), ip_of(after, net)), 10)


def test_inject_refuses_a_restarted_target(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], docker_api: Any
) -> None:
    a, _ = pair
    fault = network.Partition(DockerContainers(engine), config)
    record = record_for(fault, a, {"mode": "isolate"})
    docker_api.restart(a["Id"], timeout=1)
    with pytest.raises(Exception, match="restarted or recreated"):
        fault.inject(record)
    assert our_tags(docker_api.inspect_container(a["Id"])["State"]["Pid"]) == ""


def test_host_network_and_shared_namespaces_are_refused(
    engine: DockerEngine, config: Any, containers: Callable[..., dict], net: str
) -> None:
    host = containers("nf-host", {"chaos.group": "h"}, network="host",
                      command=["python3", "-c", "import time; time.sleep(300)"])  # fmt: skip
    owner = containers("nf-owner", {"chaos.group": "o"}, network=net)
    sharer = containers("nf-sharer", {"chaos.group": "s"}, network=f"container:{owner['Id']}",
                        command=["python3", "-c", "import time; time.sleep(300)"])  # fmt: skip
    for fault in network.network_faults(engine, config):
        assert "host" in (fault.refuse(target_of(host)) or ""), fault.name
        assert fault.refuse(target_of(sharer)), fault.name
    # the sharers come from discovery's one list of every container, not from refuse
    (owner_t,) = with_netns_sharers([target_of(owner)], engine.list_containers(None))
    for fault in (
        network.Partition(DockerContainers(engine), config),
        network.Loss(DockerContainers(engine), config),
    ):
        reason = fault.refuse(owner_t) or ""
        assert "share its network namespace" in reason and "nf-sharer" in reason
    a_ok = containers("nf-alone", {"chaos.group": "x"}, network=net)
    assert network.Partition(DockerContainers(engine), config).refuse(target_of(a_ok)) is None


def test_hostile_labels_and_names_are_never_executed(
    engine: DockerEngine, config: Any, containers: Callable[..., dict], net: str, tmp_path: Any
) -> None:
    pwned = tmp_path / "pwned"
    hostile = f"; $(touch {pwned}) `touch {pwned}` ' \" grüße\nx && rm -rf /nonexistent"
    a = containers("nf-evil", {"chaos.group": hostile}, network=net)
    b = containers("nf-good", {"chaos.group": "peer"}, network=net)
    assert target_of(a).group == hostile
    assert wait_until(lambda: http_from(b["Name"].lstrip("/"), ip_of(a, net)), 10)
    before = snapshot(a["State"]["Pid"])
    for fault, params in (
        (network.Partition(DockerContainers(engine), config), {"mode": "isolate"}),
        (network.Loss(DockerContainers(engine), config), {"percent": 100.0}),
    ):
        record = record_for(fault, a, params, target_name=hostile)
        try:
            record = inject(fault, record)
            assert not http_from(b["Name"].lstrip("/"), ip_of(a, net))
            tags = our_tags(a["State"]["Pid"])
            assert "grüße" not in tags and "touch" not in tags
        finally:
            assert fault.heal(record).healed
        assert snapshot(a["State"]["Pid"]) == before
    assert not pwned.exists()
    assert not os.path.exists("/tmp/pwned")
    with pytest.raises(FaultFailed):
        network.Partition(DockerContainers(engine), config).heal(
            record_for(
                network.Partition(DockerContainers(engine), config), a, {}, fault_id="$(touch x)ab"
            )
        )


# --- loss and bandwidth ---------------------------------------------------------------------

RECV = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999))
print("ready", flush=True); s.settimeout(3.0); n = 0
try:
    while True:
        s.recv(100); n += 1; s.settimeout(1.5)
except OSError:
    pass
print(n, flush=True)
"""
SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"x", (sys.argv[1], 9999)); time.sleep(0.001)
"""


def received_udp(receiver: str, sender: str, ip: str, count: int) -> int:
    rx = subprocess.Popen(
        ["docker", "exec", receiver, "python3", "-c", RECV], stdout=subprocess.PIPE, text=True
    )
    try:
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        subprocess.run(
            ["docker", "exec", sender, "python3", "-c", SEND, ip, str(count)],
            check=True,
            timeout=60,
        )
        out, _ = rx.communicate(timeout=30)
        return int(out.strip().splitlines()[-1])
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()


def test_loss_drops_about_the_asked_share(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], net: str
) -> None:
    a, b = pair
    a_name, b_name, a_ip = a["Name"].lstrip("/"), b["Name"].lstrip("/"), ip_of(a, net)
    before = snapshot(a["State"]["Pid"])
    count = 400
    assert received_udp(a_name, b_name, a_ip, count) == count  # no loss without the fault
    fault = network.Loss(DockerContainers(engine), config)
    record = record_for(fault, a, {"percent": 50.0})
    try:
        record = inject(fault, record)
        got = received_udp(a_name, b_name, a_ip, count)
    finally:
        assert fault.heal(record).healed
    rate = 1 - got / count
    print(f"loss asked 50%, measured {rate:.1%} over {count} packets")
    assert 0.35 <= rate <= 0.65, rate
    assert snapshot(a["State"]["Pid"]) == before
    assert received_udp(a_name, b_name, a_ip, 100) == 100


SINK = """
import socket
s = socket.socket(); s.bind(("0.0.0.0", 9998)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
print(n, flush=True)
"""
SOURCE = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9998), timeout=30); t = time.monotonic()
s.sendall(b"x" * int(sys.argv[2])); s.shutdown(socket.SHUT_WR); s.recv(1)
print(time.monotonic() - t)
"""


def send_seconds(sender: str, receiver: str, ip: str, size: int) -> float:
    rx = subprocess.Popen(
        ["docker", "exec", receiver, "python3", "-c", SINK], stdout=subprocess.PIPE, text=True
    )
    try:
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        out = subprocess.run(
            ["docker", "exec", sender, "python3", "-c", SOURCE, ip, str(size)],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        rx.communicate(timeout=30)
        return float(out.stdout.strip())
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()


def test_bandwidth_limits_egress_and_refuses_a_foreign_qdisc(
    engine: DockerEngine, config: Any, pair: tuple[dict, dict], net: str
) -> None:
    a, b = pair
    a_name, b_name = a["Name"].lstrip("/"), b["Name"].lstrip("/")
    before = snapshot(a["State"]["Pid"])
    size = 250_000  # 2 Mbit: about 1 s at 2mbit
    fast = send_seconds(a_name, b_name, ip_of(b, net), size)
    fault = network.Bandwidth(DockerContainers(engine), config)
    record = record_for(fault, a, {"rate": "2mbit"})
    try:
        record = inject(fault, record)
        assert netns.tc_handle(record.fault_id) in ns_exec(a["State"]["Pid"], "tc", "qdisc").stdout
        slow = send_seconds(a_name, b_name, ip_of(b, net), size)
    finally:
        assert fault.heal(record).healed
    print(f"bandwidth 2mbit: {size} bytes took {slow:.2f}s (unlimited {fast:.3f}s)")
    assert slow > 0.7 and slow > 5 * fast
    assert snapshot(a["State"]["Pid"]) == before

    # a root qdisc the user put there is never replaced
    pid_b = b["State"]["Pid"]
    ns_exec(pid_b, "tc", "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "tbf",
            "rate", "100mbit", "burst", "100000", "latency", "50ms")  # fmt: skip
    user_before = snapshot(pid_b)
    rec_b = record_for(fault, b, {"rate": "1mbit"})
    with pytest.raises(FaultFailed, match="did not add"):
        fault.inject(rec_b)
    assert fault.heal(rec_b).healed
    assert snapshot(pid_b) == user_before


# --- disconnect ------------------------------------------------------------------------------

RESOLVE = "import socket, sys; print(socket.gethostbyname(sys.argv[1]))"


def resolve_from(container: str, name: str) -> str:
    r = subprocess.run(
        ["docker", "exec", container, "python3", "-c", RESOLVE, name],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return r.stdout.strip() if r.returncode == 0 else ""


def test_disconnect_restores_aliases_static_ip_and_mac(
    engine: DockerEngine, docker_api: Any, net: str, web_image: str, containers: Callable
) -> None:
    subnet = docker_api.inspect_network(net)["IPAM"]["Config"][0]["Subnet"]
    static_ip = subnet.rsplit(".", 1)[0] + ".77"
    alias = f"svc-{uuid.uuid4().hex[:6]}"
    mac = "02:42:de:ad:be:ef"
    c = docker_api.create_container(
        web_image,
        name=f"nf-disc-{uuid.uuid4().hex[:6]}",
        labels={
            TEST_LABEL: SESSION,
            "com.docker.compose.project": "p",
            "com.docker.compose.service": alias,
        },  # fmt: skip
        host_config=docker_api.create_host_config(network_mode=net),
        networking_config=docker_api.create_networking_config(
            {
                net: docker_api.create_endpoint_config(
                    ipv4_address=static_ip, aliases=[alias], mac_address=mac
                )
            }  # fmt: skip
        ),
    )
    try:
        docker_api.start(c["Id"])
        info = docker_api.inspect_container(c["Id"])
        peer = containers("nf-resolver", {"chaos.group": "r"}, network=net)
        peer_name = peer["Name"].lstrip("/")
        assert resolve_from(peer_name, alias) == static_ip
        ep_before = info["NetworkSettings"]["Networks"][net]
        fault = network.Disconnect(DockerContainers(engine))
        record = record_for(fault, info, {"network": ""})
        try:
            record = inject(fault, record)
            assert resolve_from(peer_name, alias) == ""
            assert not http_from(peer_name, static_ip)
        finally:
            outcome = fault.heal(record)
        assert outcome.healed and outcome.how == "healed", outcome
        ep = docker_api.inspect_container(c["Id"])["NetworkSettings"]["Networks"][net]
        assert ep["IPAddress"] == static_ip == ep_before["IPAddress"]
        # API >= 1.44 honours a per-endpoint MAC on connect; older daemons derive it from
        # the IP. Either way the restored endpoint has the MAC it had before.
        assert ep["MacAddress"] == ep_before["MacAddress"]
        if engine.api.api_version >= "1.44":
            assert ep["MacAddress"] == mac
        assert sorted(ep["Aliases"]) == sorted(ep_before["Aliases"]), ep["Aliases"]
        assert ep["IPAMConfig"]["IPv4Address"] == static_ip
        assert wait_until(lambda: resolve_from(peer_name, alias) == static_ip)
        assert http_from(peer_name, alias)
        assert fault.heal(record).how == "already"
        # the endpoint is in the record's artifacts: enough to heal after a crash
        assert alias in json.loads(record.artifacts[0][len("endpoint:") :])["aliases"]
    finally:
        docker_api.remove_container(c["Id"], force=True)
