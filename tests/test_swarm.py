"""The agent on a real single-node swarm (a Docker engine in a container, so the host
engine never enters swarm mode): a stack deployed with `docker stack deploy
--resolve-image never`; groups are services, members are tasks; kill and stop are healed
by Swarm replacing the task (the agent never starts the dead container again, and says
how long the service took to converge); pause is healed by unpause; what Swarm would
not replace, or would not count, is refused with the reason.

One engine is booted per module (about 15 s, most of it `docker load`); the three-node
swarm with agents on every node is in test_swarm_fleet.py (slow).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.adapters.docker_engine import DockerEngine
from agent.adapters.docker_ports import DockerContainers
from agent.adapters.netns import capabilities, tc_handle
from agent.config import parse_toml_text
from agent.engine import Engine
from agent.errors import NotEligible, Unsupported
from agent.faults.network.common import open_pinned
from agent.faults.network.helper import (
    IMAGE_ENV,
    STALE_AFTER_S,
    helper_capabilities,
    remove_stale_helpers,
)
from agent.faults.network.route import NetnsRoute
from agent.faults.network.sweep import open_current_pinned
from agent.model import LABEL_NETNS_HELPER, ActiveFault
from agent.one_off import inject_now
from agent.swarm import SwarmCluster
from agent.wiring import build_engine
from tests.conftest import AGENT_IMAGE, SESSION, TEST_LABEL, WEB_IMAGE, need, run_cli, wait_for
from tests.swarm_nodes import NODE_IMAGE, SwarmNodes, netns_view

pytestmark = pytest.mark.docker

STACK = "cs"
STACK_FILE = """\
version: "3.8"
services:
  web:
    image: {image}
    labels:
      chaos.enable: "true"
    stop_grace_period: 2s
    deploy:
      endpoint_mode: dnsrr
      replicas: 3
      restart_policy:
        condition: any
        delay: 1s
  once:
    image: {image}
    labels:
      chaos.enable: "true"
    stop_grace_period: 2s
    deploy:
      endpoint_mode: dnsrr
      replicas: 2
      restart_policy:
        condition: on-failure
        delay: 1s
"""


@pytest.fixture(scope="module")
def swarm(docker_api: Any, web_image: str, agent_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNodes]:  # fmt: skip
    try:
        docker_api.inspect_image(NODE_IMAGE)
    except Exception:  # noqa: BLE001
        need(False, f"image {NODE_IMAGE} (scripts/build-images.sh swarmnode)")
    nodes = SwarmNodes(f"swarm1-{SESSION}", 1, (TEST_LABEL, SESSION))
    try:
        nodes.start([web_image, agent_image])  # the agent's image: namespace helpers
        stack = tmp_path_factory.mktemp("stack") / "stack.yml"
        stack.write_text(STACK_FILE.format(image=WEB_IMAGE))
        nodes.deploy(STACK, stack)
        nodes.wait_running(f"{STACK}_web", 3)
        nodes.wait_running(f"{STACK}_once", 2)
        yield nodes
    finally:
        nodes.close()


def config_text(state: Path) -> str:
    return f"""
[agent]
state_dir = "{state}"
watchdog = false
heal_retries = 20
[schedule]
mean_interval = "2s"
min_gap = "1s"
first_after = "0s"
duration = "1s"
[faults]
enabled = ["kill", "stop", "pause", "restart"]
"""


@pytest.fixture
def engine(swarm: SwarmNodes, tmp_path: Path) -> Iterator[Engine]:
    config = parse_toml_text(config_text(tmp_path / "state"), source="test")
    docker = DockerEngine(base_url=swarm.url(0))
    eng = build_engine(config, docker=docker, probes=False)
    yield eng
    eng.heal_all("test end", passes=3)
    docker.close()


def journal(engine: Engine) -> list[dict[str, Any]]:
    path = engine.config.agent.journal
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def running_tasks(swarm: SwarmNodes, service: str) -> list[dict[str, Any]]:
    api = swarm.api(0)
    try:
        tasks = api.tasks(filters={"service": service, "desired-state": "running"})
    finally:
        api.close()
    return [t for t in tasks if t["Status"]["State"] == "running"]


def converged(swarm: SwarmNodes, service: str, replicas: int) -> bool:
    return len(running_tasks(swarm, service)) == replicas


def started_after_dying(swarm: SwarmNodes, since: float) -> set[str]:
    """Containers on the node that were started again after they died (since `since`):
    what `docker start` of a dead task container looks like. Swarm never does it."""
    api = swarm.api(0)
    try:
        events = api.events(
            since=int(since) - 1, until=int(time.time()) + 2, decode=True,
            filters={"type": "container"},
        )  # fmt: skip
        died: set[str] = set()
        again: set[str] = set()
        for e in events:
            if e["timeNano"] / 1e9 < since:
                continue  # `since` of the API is whole seconds
            action = e.get("Action") or e.get("status")
            if action == "die":
                died.add(e["id"])
            elif action == "start" and e["id"] in died:
                again.add(e["id"])
        return again
    finally:
        api.close()


def local_member(engine: Engine, group: str) -> Any:
    verdicts = engine.evaluate()
    return next(v.target for v in verdicts if v.target.group == group and v.eligible)


def heal_when_due(engine: Engine, timeout: float = 90) -> None:
    def done() -> bool:
        engine.heal_due()
        return not engine.active

    wait_for(done, timeout=timeout, interval=0.2)


def test_groups_are_services_and_members_are_tasks(engine: Engine, swarm: SwarmNodes) -> None:
    verdicts = engine.evaluate()
    groups: dict[str, int] = {}
    for v in verdicts:
        groups[v.target.group] = groups.get(v.target.group, 0) + 1
        assert not v.target.remote
    assert groups == {f"{STACK}/web": 3, f"{STACK}/once": 2}
    # the task's own faults: stop is refused on the on-failure service, restart everywhere
    once = [v for v in verdicts if v.target.group == f"{STACK}/once"]
    assert all("stop" not in v.faults and "kill" in v.faults for v in once)
    assert all("restart" not in v.faults for v in verdicts)


@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_kill_and_stop_heal_by_convergence_never_by_starting_the_task(
    engine: Engine, swarm: SwarmNodes, fault: str
) -> None:
    service = f"{STACK}_web"
    wait_for(lambda: converged(swarm, service, 3), timeout=90, interval=0.3)
    victim = local_member(engine, f"{STACK}/web")
    api = swarm.api(0)
    before = api.inspect_container(victim.id)["State"]["StartedAt"]
    t0 = time.time()
    record = inject_now(engine, fault, victim.name, 1.0, force=False)
    assert record.extra.get("via") == "swarm"
    heal_when_due(engine)
    heal = next(
        e
        for e in journal(engine)
        if e["event"] == "healed_by_environment" and e.get("fault") == fault
    )
    assert heal["how"] == "environment"
    assert "Swarm replaced the task" in heal["detail"]
    assert 0 < heal["converged_s"] < 60
    # the dead task container was never started again: Swarm ran a new task instead
    state = api.inspect_container(victim.id)["State"]
    api.close()
    assert not state["Running"] and state["StartedAt"] == before
    assert not started_after_dying(swarm, t0)
    tasks = running_tasks(swarm, service)
    assert len(tasks) == 3
    assert victim.id not in {t["Status"]["ContainerStatus"]["ContainerID"] for t in tasks}


def test_pause_heals_by_unpause_and_swarm_keeps_the_task(engine: Engine, swarm: SwarmNodes) -> None:
    service = f"{STACK}_web"
    wait_for(lambda: converged(swarm, service, 3), timeout=90, interval=0.3)
    victim = local_member(engine, f"{STACK}/web")
    tasks_before = {t["ID"] for t in running_tasks(swarm, service)}
    inject_now(engine, "pause", victim.name, 1.0, force=False)
    api = swarm.api(0)
    assert api.inspect_container(victim.id)["State"]["Paused"]
    heal_when_due(engine)
    state = api.inspect_container(victim.id)["State"]
    api.close()
    assert state["Running"] and not state["Paused"]
    assert {t["ID"] for t in running_tasks(swarm, service)} == tasks_before


def test_refusals_say_why_and_touch_nothing(engine: Engine, swarm: SwarmNodes) -> None:
    wait_for(lambda: converged(swarm, f"{STACK}_web", 3), timeout=90, interval=0.3)
    wait_for(lambda: converged(swarm, f"{STACK}_once", 2), timeout=90, interval=0.3)
    web = local_member(engine, f"{STACK}/web")
    once = local_member(engine, f"{STACK}/once")
    with pytest.raises(NotEligible, match="orphan"):
        inject_now(engine, "restart", web.name, 1.0, force=True)
    with pytest.raises(NotEligible, match="never replaces a stopped task"):
        inject_now(engine, "stop", once.name, 1.0, force=True)
    assert not engine.active
    # refused before the ledger: no intent was ever written
    path = engine.config.agent.journal
    assert not path.exists() or '"intent"' not in path.read_text()
    api = swarm.api(0)
    for target in (web, once):
        state = api.inspect_container(target.id)["State"]
        assert state["Running"] and not state["Paused"]
    api.close()


def test_a_restarted_dead_task_container_is_an_orphan_never_counted(
    engine: Engine, swarm: SwarmNodes
) -> None:
    """What `docker start` of a dead task does (and why the agent never does it)."""
    api = swarm.api(0)
    dead = [
        c
        for c in api.containers(
            all=True, filters={"label": f"com.docker.swarm.service.name={STACK}_web"}
        )
        if c["State"] == "exited"
    ]
    if not dead:  # make one: stop a task the way a crash would, and let Swarm replace it
        victim = local_member(engine, f"{STACK}/web")
        api.kill(victim.id, "SIGKILL")
        wait_for(lambda: converged(swarm, f"{STACK}_web", 3), timeout=90, interval=0.3)
        dead = [api.inspect_container(victim.id)]
    orphan_id = dead[0]["Id"]
    api.start(orphan_id)
    try:
        verdicts = engine.evaluate()
        orphan = next(v for v in verdicts if v.target.id == orphan_id)
        assert orphan.target.state == "orphan" and not orphan.eligible
        assert "Swarm does not count it" in orphan.reason
        web = [v for v in verdicts if v.target.group == f"{STACK}/web"]
        assert sum(1 for v in web if v.target.running) == 3  # Swarm's three, not four
        assert len(running_tasks(swarm, f"{STACK}_web")) == 3
    finally:
        api.remove_container(orphan_id, force=True)
        api.close()


def test_agent_run_against_the_swarm_reports_convergence(swarm: SwarmNodes, tmp_path: Path) -> None:
    """`chaos-agent run` on the node: several faults, no container ever started twice,
    every kill/stop healed by Swarm, the report shows the time to converge."""
    wait_for(lambda: converged(swarm, f"{STACK}_web", 3), timeout=90, interval=0.3)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(config_text(tmp_path / "state").replace("watchdog = false", "watchdog = true"))
    env = {"DOCKER_HOST": swarm.url(0)}
    t0 = time.time()
    done = run_cli("run", "--config", str(cfg), "--for", "15s", "--no-live", "--seed", "3",
                   env=env, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = run_cli("report", "--config", str(cfg), "--json", env=env, timeout=60)
    assert report.returncode == 0, report.stderr[-2000:]
    data = json.loads(report.stdout)
    faults = data["faults"]
    assert faults, done.stderr[-2000:]
    replaced = [f for f in faults if f["fault"] in ("kill", "stop")]
    assert all(f["converged_s"] is not None and f["heal_how"] == "environment" for f in replaced), [
        (f["fault"], f["target"], f["heal_how"], f["converged_s"], f["notes"]) for f in replaced
    ]
    assert all(not f["open"] for f in faults)
    # never a `docker start` of an existing container: every start is a new task's
    assert not started_after_dying(swarm, t0)
    table = run_cli("report", "--config", str(cfg), env=env, timeout=60)
    if replaced:
        assert "CONVERGED IN" in table.stdout
    wait_for(lambda: converged(swarm, f"{STACK}_web", 3), timeout=90, interval=0.3)
    wait_for(lambda: converged(swarm, f"{STACK}_once", 2), timeout=90, interval=0.3)


# --- network faults on tasks: through a helper container in the task's namespace ----------

TCP_SCRIPT = """
import socket, sys
s = socket.socket(); s.settimeout(1.5)
try:
    s.connect((sys.argv[1], 8080))
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    sys.exit(0 if s.recv(200).startswith(b"HTTP/1.1 200") else 3)
except OSError:
    sys.exit(1)
"""


def http_from(swarm: SwarmNodes, peer: str, ip: str) -> bool:
    done = subprocess.run(
        ["docker", "-H", swarm.url(0), "exec", peer, "python3", "-c", TCP_SCRIPT, ip],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return done.returncode == 0


def overlay_ip(swarm: SwarmNodes, container_id: str) -> str:
    api = swarm.api(0)
    try:
        nets = api.inspect_container(container_id)["NetworkSettings"]["Networks"]
    finally:
        api.close()
    return str(nets[f"{STACK}_default"]["IPAddress"])


def helpers_on(swarm: SwarmNodes) -> list[str]:
    api = swarm.api(0)
    try:
        found = api.containers(all=True, filters={"label": LABEL_NETNS_HELPER})
    finally:
        api.close()
    return [c["Id"] for c in found]


@pytest.fixture
def net_engine(swarm: SwarmNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:  # fmt: skip
    monkeypatch.setenv(IMAGE_ENV, AGENT_IMAGE)  # the image loaded into the node
    text = config_text(tmp_path / "state").replace(
        '["kill", "stop", "pause", "restart"]', '["partition", "loss", "bandwidth"]'
    )
    docker = DockerEngine(base_url=swarm.url(0))
    eng = build_engine(parse_toml_text(text, source="test"), docker=docker, probes=False)
    yield eng
    eng.heal_all("test end", passes=3)
    docker.close()


@pytest.mark.parametrize("fault", ["partition", "loss", "bandwidth"])
def test_network_fault_on_a_task_enters_its_namespace_through_a_helper(
    net_engine: Engine, swarm: SwarmNodes, fault: str
) -> None:
    """The agent reaches the node's engine from outside the node's PID namespace (as a
    global service without pid: host would): the rules land in the task's own namespace
    through a helper container, traffic is cut, and heal leaves the namespace as it was;
    no helper container is left at any point between operations."""
    wait_for(lambda: converged(swarm, f"{STACK}_web", 3), timeout=90, interval=0.3)
    web = [v.target for v in net_engine.evaluate() if v.target.group == f"{STACK}/web"]
    victim, peer = web[0], web[1]
    ip = overlay_ip(swarm, victim.id)
    before = netns_view(victim.id)
    assert "CHAOS-" not in before and http_from(swarm, peer.id, ip)
    record = inject_now(net_engine, fault, victim.name, 2.0, force=True)
    assert not helpers_on(swarm)
    during = netns_view(victim.id)
    if fault == "bandwidth":
        assert f"qdisc tbf {tc_handle(record.fault_id)} dev eth0 root" in during
    else:
        assert f"CHAOS-{record.fault_id}-in" in during and "chaos-agent:" in during
    if fault == "partition":
        assert not http_from(swarm, peer.id, ip)
    heal_when_due(net_engine)
    healed = next(e for e in journal(net_engine) if e["event"] == "heal")
    assert healed["fault"] == fault and healed["how"] == "healed"
    assert netns_view(victim.id) == before
    assert http_from(swarm, peer.id, ip)
    assert not helpers_on(swarm)


def test_a_replaced_task_is_left_alone_and_the_sweep_finds_leftovers_through_helpers(
    net_engine: Engine, swarm: SwarmNodes
) -> None:
    wait_for(lambda: converged(swarm, f"{STACK}_web", 3), timeout=90, interval=0.3)
    web = [v.target for v in net_engine.evaluate() if v.target.group == f"{STACK}/web"]
    docker = DockerEngine(base_url=swarm.url(0))
    try:
        # an agent that died mid-fault: rules no ledger owns, found by the start-up sweep
        before = netns_view(web[0].id)
        orphan = inject_now(net_engine, "partition", web[0].name, 60.0, force=True)
        route = NetnsRoute(DockerContainers(docker), SwarmCluster(docker))
        removed = route.sweep(set(), {web[0].id})  # as if no ledger record owned it
        assert any(f"CHAOS-{orphan.fault_id}" in r for r in removed), removed
        after = netns_view(web[0].id)  # (iptables-nft's empty filter table may stay)
        assert "CHAOS-" not in after and "chaos-agent:" not in after and not helpers_on(swarm)
        assert after.split("*nat")[1] == before.split("*nat")[1]  # Docker's DNS rules intact
        # a task killed mid-fault is replaced by a new container: heal touches nothing
        record = inject_now(net_engine, "loss", web[1].name, 60.0, force=True)
        api = swarm.api(0)
        api.kill(web[1].id, "SIGKILL")
        api.close()
        outcome = net_engine.fault_for("container", "loss").heal(record)
        assert outcome.healed and outcome.how in ("environment", "gone"), outcome
        assert not helpers_on(swarm)
        # a helper left by an agent killed during an inject or heal: removed when stale
        api = swarm.api(0)
        stale = api.create_container(AGENT_IMAGE, entrypoint=["sleep"], command=["300"],
                                     labels={LABEL_NETNS_HELPER: "0123456789ab"})  # fmt: skip
        api.start(stale["Id"])
        api.close()
        assert (
            remove_stale_helpers(DockerContainers(docker)) == []
        )  # young: an operation may be running
        gone = remove_stale_helpers(DockerContainers(docker), now=time.time() + STALE_AFTER_S + 5)
        assert len(gone) == 1 and not helpers_on(swarm)
    finally:
        for cid in helpers_on(swarm):
            docker.remove(cid)
        docker.close()
    wait_for(lambda: converged(swarm, f"{STACK}_web", 3), timeout=90, interval=0.3)


class PidCoincidence(DockerEngine):
    """The node's engine, whose PIDs live in the node's PID namespace, with one twist:
    the number it reports for a container is also a live process here (the node
    container's own init, in another container's cgroup). That is the coincidence an
    agent pointed at a remote engine meets sooner or later; it is made certain here."""

    def __init__(self, base_url: str, local_pid: int) -> None:
        super().__init__(base_url=base_url)
        self.local_pid = local_pid

    def inspect(self, container: str) -> dict[str, Any]:
        info = super().inspect(container)
        info["State"]["Pid"] = self.local_pid
        return info


def test_outside_swarm_a_pid_from_a_remote_engine_is_never_entered(
    swarm: SwarmNodes, docker_api: Any
) -> None:
    """An agent pointed at another machine's engine gets PIDs that may name unrelated
    local processes: the nsenter route refuses them by identity (cgroup, start time),
    not only because `/proc/PID` exists."""
    api = swarm.api(0)
    plain = api.create_container(WEB_IMAGE, labels={TEST_LABEL: SESSION})
    api.start(plain["Id"])
    local_pid = int(docker_api.inspect_container(swarm.names[0])["State"]["Pid"])
    docker = PidCoincidence(swarm.url(0), local_pid)
    try:
        info = docker.inspect(plain["Id"])
        record = ActiveFault(
            fault_id="0123456789ab", fault="partition", target_kind="container",
            target_id=info["Id"], target_name="plain", group="plain",
            injected_at=time.time(), deadline=time.time() + 5,
            started_at=info["State"]["StartedAt"],
        )  # fmt: skip
        assert Path(f"/proc/{local_pid}/ns/net").exists()  # the old check would enter it
        with pytest.raises(Unsupported, match="not the container's process here"):
            open_pinned(DockerContainers(docker), record)
        assert (
            open_current_pinned(DockerContainers(docker), info["Id"]) is None
        )  # nor the start-up sweep
    finally:
        api.remove_container(plain["Id"], force=True)
        api.close()
        docker.close()


def test_the_kernels_features_are_probed_in_a_helper(
    swarm: SwarmNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an agent without capabilities learns about the node's kernel: the same
    probe as nsenter's, run in a helper with a namespace of its own, then removed."""
    monkeypatch.setenv(IMAGE_ENV, AGENT_IMAGE)
    docker = DockerEngine(base_url=swarm.url(0))
    try:
        caps = helper_capabilities(DockerContainers(docker))
    finally:
        docker.close()
    assert caps.iptables is None and caps.statistic is None and caps.tbf is None, caps
    local = capabilities()  # the same kernel, seen from here
    assert (caps.netem is None) == (local.netem is None), (caps.netem, local.netem)
    assert not helpers_on(swarm)
