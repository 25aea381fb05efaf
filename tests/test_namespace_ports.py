"""The namespace faults (partition, loss, the qdisc faults), the start-up sweep and the helper
route over their narrow port (`NamespaceTargets`, agent/faults/ports.py), with an in-memory
engine fed by the Docker adapter's typed readers (agent/adapters/docker_ports.py) on
recorded Engine JSON: typed state in, verbs out; no fault module reads the JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from agent.adapters import netns
from agent.adapters.docker_ports import container_state, listed_container
from agent.errors import FaultFailed, IdentityChanged, TargetGone
from agent.faults.network import Loss, Partition
from agent.faults.network.common import open_pinned, pid_namespace_reason
from agent.faults.network.helper import (
    DEFAULT_IMAGE,
    IMAGE_ENV,
    STALE_AFTER_S,
    open_via_helper,
    remove_stale_helpers,
)
from agent.faults.network.sweep import sweep_network_leftovers
from agent.faults.ports import NamespaceTargets
from agent.model import LABEL_NETNS_HELPER, ActiveFault, ContainerState, ListedContainer

pytestmark = pytest.mark.pure

CID = "a" * 64
AGENT = "e" * 64
STARTED = "2026-11-26T05:30:01.123456789Z"
ALL = netns.Capabilities(None, None, None, None, None, None)
NONE = netns.Capabilities(*(["missing"] * 6))


def net(ip: str, *, gw: str = "", plen: int = 16, ip6: str = "", gw6: str = "") -> dict:
    return {"IPAddress": ip, "IPPrefixLen": plen if ip else 0, "Gateway": gw,
            "GlobalIPv6Address": ip6, "GlobalIPv6PrefixLen": 64 if ip6 else 0,
            "IPv6Gateway": gw6, "NetworkID": "n", "MacAddress": "", "Aliases": None}  # fmt: skip


# what the Engine answered (abridged): the target, inspected, with a published port
INSPECT = {
    "Id": CID,
    "Name": "/shop-web-1",
    "Image": "sha256:" + "1" * 64,
    "Config": {
        "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}
    },  # fmt: skip
    "HostConfig": {"PidMode": "", "NetworkMode": "shop_default"},
    "State": {"Status": "running", "Running": True, "Pid": 4242, "StartedAt": STARTED},
    "NetworkSettings": {
        "Ports": {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
            "9000/tcp": None,
            "53/udp": [{"HostPort": "5353"}],
        },  # fmt: skip
        "Networks": {
            "shop_default": net("172.30.0.2", gw="172.30.0.1", ip6="fd00::2", gw6="fd00::1"),
            "shop_back": net("10.9.0.2", gw="10.9.0.1", plen=24),
        },
    },
}


def entry(n: int, service: str, ip: str, *, state: str = "running", mode: str = "") -> dict:
    return {"Id": f"{n:064x}", "Names": [f"/shop-{service}-{n}"], "State": state,
            "Created": 1_000_000 + n, "HostConfig": {"NetworkMode": mode or "shop_default"},
            "Labels": {"com.docker.compose.project": "shop",
                       "com.docker.compose.service": service},
            "NetworkSettings": {"Networks": {"shop_default": net(ip)}}}  # fmt: skip


# ... and its list: the target (web-1 is CID), four more replicas of web, two of db
LIST = [
    {**entry(1, "web", "172.30.0.2"), "Id": CID},
    entry(2, "web", "172.30.0.3"),
    entry(3, "web", "172.30.0.4"),
    entry(4, "web", "172.30.0.5", state="exited"),
    entry(5, "web", "172.30.0.6"),
    entry(6, "db", "172.30.0.7"),
    entry(7, "db", "172.30.0.8"),
    entry(8, "db", "172.30.0.9", mode="host"),
]


class FakeTargets:
    """NamespaceTargets in memory; records every verb."""

    def __init__(self) -> None:
        self.states: dict[str, list[ContainerState]] = {CID: [container_state(INSPECT)]}
        self.listed: list[ListedContainer] = [listed_container(e) for e in LIST]
        self.own = ""
        self.calls: list[tuple[str, Any]] = []
        self.readlink = "net:[4026532001]\n"
        self.vanished: set[str] = set()  # listed, then gone before the remove

    def state(self, container: str) -> ContainerState:
        seq = self.states.get(container)
        if not seq:
            raise TargetGone(f"{container[:12]} is gone")
        return seq.pop(0) if len(seq) > 1 else seq[0]  # a sequence plays the changes out

    def containers(self, label: str | None = None) -> list[ListedContainer]:
        return [c for c in self.listed if label is None or label in c.labels]

    def own_id(self) -> str:
        return self.own

    def run_helper(self, spec: dict[str, Any], about: str) -> str:
        self.calls.append(("run_helper", spec))
        return "h" * 64

    def exec_run(self, container: str, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(("exec", list(argv)))
        return 0, self.readlink, ""

    def remove(self, container: str) -> None:
        self.calls.append(("remove", container))
        if container in self.vanished:
            raise TargetGone("gone")


def record(fault: str, **params: Any) -> ActiveFault:
    return ActiveFault("0123456789ab", fault, "container", CID, "shop-web-1", "shop/web", 0.0,
                       30.0, started_at=STARTED, pid=4242, params=params)  # fmt: skip


def plan(fault: Partition | Loss, rec: ActiveFault, *, v6: bool = False) -> list[tuple[str, ...]]:
    targets: NamespaceTargets = fault.targets
    st = targets.state(CID)
    built = fault._plan(rec, st, v6=v6, exempt=["172.30.0.100"] if not v6 else [])
    return [("in", *r.args) for r in built.ingress] + [("out", *r.args) for r in built.egress]


def drops(rules: list[tuple[str, ...]]) -> list[str]:
    return [r[2] for r in rules if r[0] == "in" and r[-1] == "DROP" and len(r) == 5]


def test_the_readers_type_what_the_namespace_faults_read() -> None:
    st = container_state(INSPECT)
    assert (st.name, st.pid, st.pid_mode, st.image) == ("shop-web-1", 4242, "", INSPECT["Image"])
    assert st.labels["com.docker.compose.service"] == "web"
    assert st.published == (("53", "udp"), ("80", "tcp"))  # 9000 is exposed, not published
    assert [(a.network, a.v6, a.ip, a.prefix, a.gateway) for a in st.addresses] == [
        ("shop_default", False, "172.30.0.2", 16, "172.30.0.1"),
        ("shop_default", True, "fd00::2", 64, "fd00::1"),
        ("shop_back", False, "10.9.0.2", 24, "10.9.0.1"),
    ]
    listed = [listed_container(e) for e in LIST]
    assert [c.group for c in listed[:7]] == ["shop/web"] * 5 + ["shop/db"] * 2
    assert listed[1].name == "shop-web-2" and listed[1].ipv4 == ("172.30.0.3",)
    assert not listed[3].running and listed[7].network_mode == "host"
    bare = listed_container({"Id": "f" * 64, "State": "running", "HostConfig": None})
    assert (bare.name, bare.group, bare.network_mode, bare.ipv4) == ("f" * 12, "f" * 12, "", ())


def test_split_cuts_the_group_in_two_by_name_and_drops_the_other_half() -> None:
    fault = Partition(FakeTargets())
    # running web members by name: web-1 (target), web-2 | web-3, web-5 (web-4 exited)
    assert drops(plan(fault, record("partition", mode="split"))) == ["172.30.0.4", "172.30.0.6"]
    lonely = FakeTargets()
    lonely.listed = lonely.listed[:1]
    with pytest.raises(FaultFailed, match="needs 2 running members"):
        plan(Partition(lonely), record("partition", mode="split"))


def test_from_drops_the_running_members_of_the_other_group_except_the_exempt() -> None:
    targets = FakeTargets()
    targets.listed[5] = replace(targets.listed[5], ipv4=("172.30.0.100",))  # the agent's IP
    rules = plan(Partition(targets), record("partition", mode="from", from_group="shop/db"))
    assert drops(rules) == ["172.30.0.8", "172.30.0.9"]  # host-mode members count as peers
    assert ("in", "-s", "172.30.0.100", "-j", "RETURN") in rules
    assert plan(Partition(targets), record("partition", mode="from", from_group="shop/db"),
                v6=True) == [("in", "-i", "lo", "-j", "RETURN"),
                             ("out", "-o", "lo", "-j", "RETURN")]  # fmt: skip
    with pytest.raises(FaultFailed, match="no running peer"):
        plan(Partition(targets), record("partition", mode="from", from_group="nobody"))


def test_isolate_keeps_published_ports_reachable_from_the_gateways_only() -> None:
    rules = plan(Partition(FakeTargets()), record("partition", mode="isolate", host_ports=False))
    ingress = [r[1:] for r in rules if r[0] == "in"]
    assert ingress == [
        ("-i", "lo", "-j", "RETURN"),
        ("-s", "172.30.0.100", "-j", "RETURN"),
        ("-s", "10.9.0.1", "-p", "udp", "--dport", "53", "-j", "RETURN"),
        ("-s", "10.9.0.1", "-p", "tcp", "--dport", "80", "-j", "RETURN"),
        ("-s", "172.30.0.1", "-p", "udp", "--dport", "53", "-j", "RETURN"),
        ("-s", "172.30.0.1", "-p", "tcp", "--dport", "80", "-j", "RETURN"),
        ("-s", "172.30.0.2/16", "-j", "DROP"),
        ("-s", "10.9.0.2/24", "-j", "DROP"),
        ("-p", "udp", "--dport", "53", "-j", "RETURN"),
        ("-p", "tcp", "--dport", "80", "-j", "RETURN"),
        ("-j", "DROP"),
    ]
    v6 = plan(Partition(FakeTargets()), record("partition", mode="isolate", host_ports=False),
              v6=True)  # fmt: skip
    assert ("in", "-s", "fd00::2/64", "-j", "DROP") in v6
    assert ("out", "-d", "fd00::1", "-p", "tcp", "--sport", "80", "-j", "RETURN") in v6
    default = plan(Partition(FakeTargets()), record("partition", mode="isolate"))
    assert [r[1:] for r in default if r[0] == "in"][-1] == ("-j", "DROP") and len(default) == 6


def test_the_control_path_is_exempt_from_the_agents_own_endpoints() -> None:
    targets = FakeTargets()
    fault = Loss(targets)
    assert fault._exempt_ips() == []  # on the host: no container of its own
    targets.own = AGENT
    targets.states[AGENT] = [container_state({**INSPECT, "Id": AGENT})]
    assert fault._exempt_ips() == ["10.9.0.2", "172.30.0.2", "fd00::2"]
    del targets.states[AGENT]  # its inspect fails: nothing exempt, no crash
    assert fault._exempt_ips() == []


def test_the_agent_in_a_container_needs_the_host_pid_namespace() -> None:
    targets = FakeTargets()
    assert pid_namespace_reason(targets) is None
    targets.own = AGENT
    assert pid_namespace_reason(targets) is None  # its own inspect fails: not the reason
    targets.states[AGENT] = [replace(container_state(INSPECT), id=AGENT)]
    assert "set pid: host" in (pid_namespace_reason(targets) or "")
    targets.states[AGENT] = [replace(container_state(INSPECT), id=AGENT, pid_mode="host")]
    assert pid_namespace_reason(targets) is None
    fault = Partition(targets)
    fault.caps = lambda: NONE
    assert fault.unavailable() == "missing"
    fault.caps = lambda: ALL
    assert fault.unavailable() is None


def test_open_pinned_refuses_an_instance_that_is_not_the_recorded_one() -> None:
    targets = FakeTargets()
    st = targets.states[CID][0]
    targets.states[CID] = [replace(st, started_at="2026-11-26T06:00:00Z")]
    with pytest.raises(IdentityChanged, match="restarted or recreated"):
        open_pinned(targets, record("loss"))
    targets.states[CID] = [replace(st, running=False, status="exited", pid=0)]
    with pytest.raises(IdentityChanged, match=r"not running \(exited\)"):
        open_pinned(targets, record("loss"))
    targets.states[CID] = []
    with pytest.raises(TargetGone):
        open_pinned(targets, record("loss"))


class FakeNs:
    def __init__(self, inode: int) -> None:
        self.inode = inode

    def __enter__(self) -> FakeNs:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_heal_through_the_opener_seam_says_why_nothing_was_touched() -> None:
    fault = Loss(FakeTargets())
    seen: list[NamespaceTargets] = []

    def gone(targets: NamespaceTargets, _rec: ActiveFault) -> Any:
        seen.append(targets)
        raise TargetGone("gone")

    def changed(_targets: NamespaceTargets, _rec: ActiveFault) -> Any:
        raise IdentityChanged("shop-web-1 was restarted")

    fault.opener = gone
    assert fault.heal(record("loss")).how == "gone" and seen == [fault.targets]
    fault.opener = changed
    assert fault.heal(record("loss")).detail == "shop-web-1 was restarted"
    fault.opener = lambda _t, _r: FakeNs(7)  # type: ignore[assignment, return-value]
    moved = fault.heal(record("loss").evolve(extra={"netns_inode": 6}))
    assert moved.how == "environment" and "new namespace" in moved.detail


def test_the_helper_route_joins_the_recorded_instance_and_removes_its_helper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    targets = FakeTargets()
    targets.own = AGENT
    targets.states[AGENT] = [replace(container_state(INSPECT), id=AGENT, image="agent:7")]
    with open_via_helper(targets, record("loss")) as ns:
        assert ns.inode == 4026532001
    (_, spec), (_, argv), removed = targets.calls
    assert spec["Image"] == "agent:7" and spec["HostConfig"]["NetworkMode"] == f"container:{CID}"
    assert spec["Labels"][LABEL_NETNS_HELPER] == "0123456789ab"
    assert argv == ["readlink", "/proc/self/ns/net"] and removed == ("remove", "h" * 64)
    # the target restarts while the helper starts: the helper goes, nothing is entered
    st = targets.states[CID][0]
    targets.states[CID] = [st, replace(st, started_at="2026-11-26T06:00:00Z")]
    targets.calls.clear()
    del targets.states[AGENT]
    with pytest.raises(IdentityChanged):
        open_via_helper(targets, record("loss"))
    assert targets.calls[0][1]["Image"] == DEFAULT_IMAGE and targets.calls[-1][0] == "remove"


def test_stale_helpers_are_removed_young_ones_kept() -> None:
    targets = FakeTargets()
    helper = ListedContainer("1" * 64, "h", "h", True, created=1000.0,
                             labels={LABEL_NETNS_HELPER: "0123456789ab"})  # fmt: skip
    targets.listed = [helper, replace(helper, id="2" * 64, created=1000.0 + STALE_AFTER_S)]
    assert remove_stale_helpers(targets, now=1000.0 + STALE_AFTER_S) == [
        "stale namespace helper 111111111111 (0123456789ab)"
    ]
    assert targets.calls == [("remove", "1" * 64)]
    targets.listed, targets.vanished = [helper], {helper.id}  # gone meanwhile: skipped
    assert remove_stale_helpers(targets, now=1e9) == []


def test_the_sweep_enters_each_running_namespace_once_through_the_seam() -> None:
    targets = FakeTargets()
    opened: list[str] = []

    def open_current(_t: NamespaceTargets, cid: str) -> netns.NetnsHandle | None:
        opened.append(cid)
        return None

    assert sweep_network_leftovers(targets, set(), caps=lambda: NONE) == []
    assert opened == []  # this host could not have created any
    sweep_network_leftovers(targets, set(), open_current=open_current, caps=lambda: ALL)
    running = [c.id for c in targets.listed if c.running and c.network_mode != "host"]
    assert opened == running and len(running) == 6
    opened.clear()
    only = {f"{2:064x}"}
    sweep_network_leftovers(targets, set(), only=only, open_current=open_current, caps=lambda: ALL)
    assert opened == [f"{2:064x}"]
