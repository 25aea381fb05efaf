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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.adapters.docker_engine import DockerEngine
from agent.config import parse_toml_text
from agent.engine import Engine
from agent.errors import NotEligible, Unsupported
from agent.one_off import inject_now
from agent.wiring import build_engine
from tests.conftest import SESSION, TEST_LABEL, WEB_IMAGE, need, run_cli, wait_for
from tests.swarm_nodes import NODE_IMAGE, SwarmNodes

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
def swarm(docker_api: Any, web_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNodes]:  # fmt: skip
    try:
        docker_api.inspect_image(NODE_IMAGE)
    except Exception:  # noqa: BLE001
        need(False, f"image {NODE_IMAGE} (scripts/build-images.sh swarmnode)")
    nodes = SwarmNodes(f"swarm1-{SESSION}", 1, (TEST_LABEL, SESSION))
    try:
        nodes.start([web_image])
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


def test_network_fault_refused_when_the_tasks_pid_is_not_ours(
    swarm: SwarmNodes, tmp_path: Path
) -> None:
    """The agent on this host reaches the node's engine from outside the node's PID
    namespace: the task's PID means nothing here, so `partition` is refused (never an
    nsenter into whatever local process has that number)."""
    text = config_text(tmp_path / "state").replace('"restart"]', '"restart", "partition"]')
    config = parse_toml_text(text, source="test")
    docker = DockerEngine(base_url=swarm.url(0))
    eng = build_engine(config, docker=docker, probes=False)
    try:
        wait_for(lambda: converged(swarm, f"{STACK}_web", 3), timeout=90, interval=0.3)
        web = local_member(eng, f"{STACK}/web")
        with pytest.raises(Unsupported, match="is not its process here"):
            inject_now(eng, "partition", web.name, 1.0, force=True)
        assert not eng.active
        events = [e["event"] for e in journal(eng)]
        assert "inject" not in events and "inject_failed" in events
    finally:
        eng.heal_all("test end")
        docker.close()


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
