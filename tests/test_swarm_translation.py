"""Swarm mode as pure data: the manager's services/tasks/nodes and a node's container
list -> groups `stack/service` with members on every node; convergence; refusals;
the coordinator report counts only this node's share. Shapes as the Engine API 1.41
returns them (recorded from a swarm of Docker 20.10 engines)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.adapters.hostpid import judge_identity
from agent.faults.network.helper import helper_spec
from agent.faults.network.route import NetnsRoute
from agent.selection import Policy, evaluate, group_targets
from agent.swarm import (
    convergence,
    refusal,
    service_from_json,
    snapshot_from_json,
    targets_from_snapshot,
)

pytestmark = pytest.mark.pure

T0 = "2026-12-06T10:00:00.000000000Z"
T5 = "2026-12-06T10:00:05.250000000Z"
T9 = "2026-12-06T10:00:09.500000000Z"
SINCE = 1796551202.0  # 10:00:02 UTC


def service(sid: str = "svc1", name: str = "shop_web", *, replicas: int | None = 3,
            condition: str | None = None, opted: bool = True) -> dict[str, Any]:  # fmt: skip
    mode: dict[str, Any] = (
        {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}}
    )
    template: dict[str, Any] = {
        "ContainerSpec": {"Labels": {"chaos.enable": "true"} if opted else {}}
    }
    if condition:
        template["RestartPolicy"] = {"Condition": condition}
    return {
        "ID": sid,
        "Spec": {
            "Name": name,
            "Labels": {"com.docker.stack.namespace": name.split("_")[0]},
            "Mode": mode,
            "TaskTemplate": template,
        },
        "ServiceStatus": {"RunningTasks": 3, "DesiredTasks": 3},
    }


def task(tid: str, slot: int, node: str, cid: str, *, state: str = "running",
         desired: str = "running", created: str = T0, at: str = T0,
         sid: str = "svc1") -> dict[str, Any]:  # fmt: skip
    return {
        "ID": tid,
        "ServiceID": sid,
        "Slot": slot,
        "NodeID": node,
        "DesiredState": desired,
        "CreatedAt": created,
        "Status": {
            "Timestamp": at,
            "State": state,
            "ContainerStatus": {"ContainerID": cid, "ExitCode": 0},
        },
    }


def node(nid: str, state: str = "ready", availability: str = "active") -> dict[str, Any]:
    return {"ID": nid, "Status": {"State": state}, "Spec": {"Availability": availability}}


def entry(cid: str, tid: str, state: str = "running", sid: str = "svc1") -> dict[str, Any]:
    return {
        "Id": cid,
        "Names": [f"/shop_web.1.{tid}"],
        "State": state,
        "Status": "Up 3 seconds",
        "Labels": {
            "chaos.enable": "true",
            "com.docker.swarm.service.id": sid,
            "com.docker.swarm.service.name": "shop_web",
            "com.docker.swarm.task.id": tid,
            "com.docker.stack.namespace": "shop",
        },
    }


NODES = [node("n1"), node("n2"), node("n3")]


def three_nodes(tasks: list[dict[str, Any]] | None = None, **svc: Any):
    tasks = tasks or [
        task("t1", 1, "n1", "c1"),
        task("t2", 2, "n2", "c2"),
        task("t3", 3, "n3", "c3"),
    ]
    return snapshot_from_json("n1", [service(**svc)], tasks, NODES)


def test_group_is_stack_slash_service_and_counts_every_node() -> None:
    snap = three_nodes()
    targets = targets_from_snapshot(snap, [entry("c1", "t1")], label="chaos.enable", value="true")
    groups = group_targets(targets)
    assert [g.name for g in groups] == ["shop/web"]
    assert groups[0].running == 3
    local = [t for t in targets if not t.remote]
    assert [t.id for t in local] == ["c1"]
    verdicts = {v.target.id: v for v in evaluate(targets, [], Policy())}
    assert verdicts["c1"].eligible
    # other nodes' tasks count for safety but are their own agents' to fault
    assert not verdicts["c2"].eligible and "runs on node n2" in verdicts["c2"].reason


def test_min_replicas_counts_the_whole_service_not_this_nodes_share() -> None:
    # one local task; two more on other nodes: min_replicas=2 is met fleet-wide
    snap = three_nodes()
    targets = targets_from_snapshot(snap, [entry("c1", "t1")], label="chaos.enable", value="true")
    assert evaluate(targets, [], Policy())[0].eligible
    # the other two on a node that is down: only one running replica is left
    down = snapshot_from_json(
        "n1", [service()],
        [task("t1", 1, "n1", "c1"), task("t2", 2, "n2", "c2"), task("t3", 3, "n2", "c3")],
        [node("n1"), node("n2", state="down")],
    )  # fmt: skip
    targets = targets_from_snapshot(down, [entry("c1", "t1")], label="chaos.enable", value="true")
    verdict = next(v for v in evaluate(targets, [], Policy()) if v.target.id == "c1")
    assert not verdict.eligible and "min_replicas" in verdict.reason


def test_a_container_that_is_not_a_current_task_is_an_orphan_never_counted() -> None:
    snap = three_nodes()
    entries = [entry("c1", "t1"), entry("c0", "t0")]  # c0: an old task's container restarted
    targets = targets_from_snapshot(snap, entries, label="chaos.enable", value="true")
    orphan = next(t for t in targets if t.id == "c0")
    assert orphan.state == "orphan" and not orphan.running
    assert "Swarm does not count it" in orphan.ineligible
    assert group_targets(targets)[0].running == 3  # not 4
    # an exited history container is not shown at all
    entries = [entry("c1", "t1"), entry("c0", "t0", state="exited")]
    targets = targets_from_snapshot(snap, entries, label="chaos.enable", value="true")
    assert "c0" not in {t.id for t in targets}


def test_services_without_the_opt_in_label_are_not_members() -> None:
    snap = three_nodes(opted=False)
    assert targets_from_snapshot(snap, [], label="chaos.enable", value="true") == []


def test_convergence_after_a_kill_reports_when_the_replacement_ran() -> None:
    killed = [
        task("t1", 1, "n1", "c1", state="failed", desired="shutdown"),
        task("t1b", 1, "n1", "c1b", state="starting", created=T5, at=T5),
        task("t2", 2, "n2", "c2"),
        task("t3", 3, "n3", "c3"),
    ]
    snap = snapshot_from_json("n1", [service()], killed, NODES)
    conv = convergence(snap, "svc1", SINCE)
    assert not conv.converged and conv.running == 2 and "not running yet (starting)" in conv.detail
    killed[1] = task("t1b", 1, "n1", "c1b", created=T5, at=T9)
    conv = convergence(snapshot_from_json("n1", [service()], killed, NODES), "svc1", SINCE)
    assert conv.converged and conv.running == conv.desired == 3
    assert conv.at is not None and abs((conv.at - SINCE) - 7.5) < 1e-6


def test_right_after_a_kill_the_stale_running_task_does_not_count() -> None:
    """The manager has not noticed the death yet: 3/3 'running', but one is our victim."""
    snap = three_nodes()
    assert convergence(snap, "svc1", SINCE).converged
    conv = convergence(snap, "svc1", SINCE, dead="c2")
    assert not conv.converged and conv.running == 2 and "(ended)" in conv.detail


def test_a_task_reported_running_on_a_down_node_does_not_count() -> None:
    tasks = [task("t1", 1, "n1", "c1"), task("t2", 2, "n2", "c2"), task("t3", 3, "n3", "c3")]
    snap = snapshot_from_json(
        "n1", [service()], tasks, [node("n1"), node("n2"), node("n3", "down")]
    )
    assert not convergence(snap, "svc1", SINCE).converged


def test_global_service_converges_per_node() -> None:
    tasks = [
        task("g1", 0, "n1", "c1", sid="g"),
        task("g2", 0, "n2", "c2", sid="g", state="pending"),
    ]
    snap = snapshot_from_json("n1", [service("g", "shop_agent", replicas=None)], tasks, NODES)
    conv = convergence(snap, "g", SINCE)
    assert (conv.converged, conv.running, conv.desired) == (False, 1, 2)
    assert service_from_json(service("g", "shop_agent", replicas=None)).mode == "global"


def test_refusals_name_the_reason() -> None:
    any_ = service_from_json(service())
    on_failure = service_from_json(service(condition="on-failure"))
    never = service_from_json(service(condition="none"))
    assert refusal("kill", any_) is None and refusal("stop", any_) is None
    assert refusal("pause", never) is None and refusal("partition", never) is None
    assert "orphan" in (refusal("restart", any_) or "")
    assert "belong to Swarm" in (refusal("disconnect", any_) or "")
    assert refusal("kill", on_failure) is None  # SIGKILL exits 137: a failure
    assert "never replaces a stopped task" in (refusal("stop", on_failure) or "")
    assert "never replace" in (refusal("kill", never) or "")


def test_group_name_outside_a_stack_is_the_service_name() -> None:
    data = service(name="solo")
    data["Spec"]["Labels"] = {}
    assert service_from_json(data).group == "solo"


def test_the_coordinator_hears_only_this_nodes_share(tmp_path: Any) -> None:
    """Each node reports its own tasks; the coordinator sums the nodes' reports, so the
    whole service is counted once fleet-wide (never once per node)."""
    from agent.config import parse_toml_text
    from agent.leases import GroupReport, Lease, LocalLeases
    from agent.model import Identity, Plan
    from agent.one_off import inject_now
    from agent.wiring import build_engine

    heard: list[GroupReport] = []

    class Listening(LocalLeases):
        def acquire(self, plan: Plan, report: GroupReport, timeout: Any = None) -> Lease:
            heard.append(report)
            return super().acquire(plan, report)

    snap = three_nodes()
    targets = targets_from_snapshot(snap, [entry("c1", "t1")], label="chaos.enable", value="true")
    config = parse_toml_text(f'[agent]\nstate_dir = "{tmp_path}"\n', source="test")
    engine = build_engine(config, dry_run=True, probes=False)
    engine.leases.provider = Listening()
    engine.discover = lambda: list(targets)
    engine.pin = lambda _t: Identity(started_at=T0, pid=0)
    inject_now(engine, "pause", "shop_web.1.t1", 5.0, force=False)
    assert [(r.group, r.members, r.running) for r in heard] == [("shop/web", 1, 1)]


class _Engine:
    """Pure stand-in for the Docker adapter's /info reader (SwarmCluster's only need)."""

    def __init__(self, swarm: dict[str, Any]) -> None:
        self.swarm = swarm

    def info(self) -> dict[str, Any]:
        return {"Swarm": self.swarm}


def test_a_worker_without_a_manager_endpoint_fails_discovery_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.errors import DockerUnavailable
    from agent.swarm import MANAGER_ENV, SwarmCluster

    monkeypatch.delenv(MANAGER_ENV, raising=False)
    worker = {"LocalNodeState": "active", "NodeID": "n2", "ControlAvailable": False}
    cluster = SwarmCluster(_Engine(worker))  # type: ignore[arg-type]
    assert cluster.active()
    with pytest.raises(DockerUnavailable, match="worker") as err:
        cluster.manager()
    assert MANAGER_ENV in err.value.one_line()
    monkeypatch.setenv(MANAGER_ENV, "unix:///run/manager.sock")
    cluster = SwarmCluster(_Engine(worker))  # type: ignore[arg-type]
    assert cluster.manager() is not cluster.local
    manager = {"LocalNodeState": "active", "NodeID": "n1", "ControlAvailable": True}
    local = _Engine(manager)
    assert SwarmCluster(local).manager() is local  # type: ignore[arg-type, comparison-overlap]
    assert not SwarmCluster(_Engine({"LocalNodeState": "inactive"})).active()  # type: ignore[arg-type]


def test_the_report_shows_convergence_only_where_swarm_replaced_a_task() -> None:
    from agent.report import build_report, report_to_json
    from agent.report_text import render_table

    def fault(fid: str, kind: str, t: float) -> dict[str, Any]:
        return {"fault_id": fid, "fault": kind, "container": f"shop_web.{fid}",
                "container_id": fid * 8, "group": "shop/web", "duration": 3.0}  # fmt: skip

    events = [
        {"event": "inject", "t": 100.0, **fault("a", "kill", 100.0)},
        {"event": "healed_by_environment", "t": 104.0, "how": "environment",
         "converged_s": 6.5, **fault("a", "kill", 100.0)},
        {"event": "inject", "t": 110.0, **fault("b", "pause", 110.0)},
        {"event": "heal", "t": 113.0, "how": "healed", **fault("b", "pause", 110.0)},
    ]  # fmt: skip
    report = build_report(events)
    faults = {f["fault"]: f for f in report_to_json(report)["faults"]}
    assert faults["kill"]["converged_s"] == 6.5 and faults["pause"]["converged_s"] is None
    table = render_table(report)
    assert "CONVERGED IN" in table
    assert any("kill" in line and "6.5s" in line for line in table.splitlines())
    assert "CONVERGED IN" not in render_table(build_report(events[2:]))


# --- entering a namespace: whose process is a PID, and the helper container ----------

TASK = "a" * 64
NODE = "b" * 64
STARTED = 1796551200.0


@pytest.mark.parametrize(
    ("cgroup", "created", "ours"),
    [
        (f"12:pids:/docker/{TASK}\n", None, True),  # cgroup v1, cgroupfs driver
        (f"0::/system.slice/docker-{TASK}.scope\n", None, True),  # systemd driver
        (f"0::/../libpod_parent/libpod-{TASK}\n", None, True),  # Podman, another cgroupns
        # an engine nested in a container: its PID means a process of the outer machine
        (f"12:pids:/docker/{NODE}/docker/{'c' * 64}\n", STARTED, False),
        (f"12:pids:/docker/{NODE}\n", STARTED, False),  # another container, same start
        ("0::/init.scope\n", STARTED - 3600, False),  # a host process, long before
        ("0::/init.scope\n", STARTED - 1.0, True),  # no container named: the start time
        ("", None, False),  # gone, nothing known
    ],
)
def test_a_pid_is_the_containers_process_only_when_its_cgroup_or_start_says_so(
    cgroup: str, created: float | None, ours: bool
) -> None:
    reason = judge_identity(4242, TASK, cgroup, created, STARTED)
    assert (reason is None) is ours
    if not ours:
        assert reason is not None and "not the container's process here" in reason


def test_the_helper_container_has_only_the_network_capabilities_and_goes_away() -> None:
    spec = helper_spec("img:1", f"container:{TASK}", "0123456789ab")
    host = spec["HostConfig"]
    assert host["NetworkMode"] == f"container:{TASK}"
    assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == ["NET_ADMIN", "NET_RAW"]
    assert host["AutoRemove"] is True
    assert "Privileged" not in host and "PidMode" not in host and "Binds" not in host
    assert spec["Entrypoint"] == ["sleep"] and int(spec["Cmd"][0]) > 0  # bounded life
    assert spec["Labels"] == {"chaos.agent": "true", "chaos.netns-helper": "0123456789ab"}


class _Cluster:
    def __init__(self, active: bool) -> None:
        self._active = active

    def active(self) -> bool:
        return self._active


@pytest.mark.parametrize(
    ("swarm", "local", "pinned", "route"),
    [
        (False, True, "ok", "nsenter"),  # outside Swarm: always nsenter
        (False, False, "refused", "refused"),  # ... and its refusal stands
        (True, True, "ok", "nsenter"),  # a Swarm node, agent with pid: host, its PID
        (True, True, "refused", "helper"),  # the PID is not the task's process here
        (True, False, "ok", "helper"),  # a global service: no pid: host, no capabilities
    ],
)
def test_the_namespace_route_nsenter_where_it_can_else_a_helper_on_swarm(
    monkeypatch: pytest.MonkeyPatch, swarm: bool, local: bool, pinned: str, route: str
) -> None:
    from agent.errors import Unsupported
    from agent.faults.network import route as swarm_faults

    def open_pinned(_docker: Any, _record: Any) -> str:
        if pinned == "refused":
            raise Unsupported("host PID 7 is not the container's process here")
        return "nsenter"

    monkeypatch.setattr(swarm_faults, "open_pinned", open_pinned)
    monkeypatch.setattr(swarm_faults, "open_via_helper", lambda _d, _r: "helper")
    chooser = NetnsRoute(targets=None, cluster=_Cluster(swarm))  # type: ignore[arg-type]
    chooser._local = local
    if route == "refused":
        with pytest.raises(Unsupported):
            chooser.open(None, None)  # type: ignore[arg-type]
    else:
        assert chooser.open(None, None) == route  # type: ignore[arg-type]
