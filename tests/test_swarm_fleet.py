"""A three-node swarm on one machine (three Docker engines in containers: two managers and
a worker), one agent per node (each reaching only its node's engine; the worker's reads
the cluster through CHAOS_SWARM_MANAGER and faults only its own node's tasks), one
coordinator behind a real sshd with max_concurrent = 1 fleet-wide:

- the union of the three engines' event streams never shows two faulted tasks at once
  (a fault lasts from the agent's pause/kill/stop until the unpause, or until Swarm
  started the replacement task);
- no container is ever started again after it died (kill/stop heal by convergence);
- one node's agent SIGKILLed mid-fault: its watchdog still heals (dead-man), and the
  coordinator's lease expires so the others continue;
- each agent's report gives the time to converge per kill/stop.

And the agent as a container on a node (no pid: host, no capabilities) killed whole
(`docker kill`) mid-partition: its container dead-man, a sibling container in the node's
engine, removes the rules at the deadline through a namespace helper of its own.

Slow (about 4-5 minutes): `pytest -m slow tests/test_swarm_fleet.py`. The agent image
(CHAOS_TEST_AGENT_IMAGE, default chaos-agent:latest) must be built from this checkout.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.deadman import LABEL_DEADMAN
from agent.model import LABEL_NETNS_HELPER
from agent.swarm import MANAGER_ENV
from tests.conftest import SESSION, TEST_LABEL, WEB_IMAGE, need, run_cli, start_agent, wait_for
from tests.coordinator_sshd import SshdServer, sshd_available
from tests.swarm_nodes import NODE_IMAGE, SwarmNodes, netns_view

pytestmark = [pytest.mark.docker, pytest.mark.sshd, pytest.mark.slow]

HOSTS = ["node-1", "node-2", "node-3"]
STACK = "fl"
SERVICE = f"{STACK}_web"
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
      replicas: 6
      placement:
        max_replicas_per_node: 2
      restart_policy:
        condition: any
        delay: 1s
"""
POLICY = (
    "[fleet]\nmax_concurrent = 1\nmax_per_group = 1\nmin_healthy = 1\n"
    'min_gap = "0s"\nlease_ttl = "6s"\n'
)


@pytest.fixture(scope="module")
def swarm3(docker_api: Any, web_image: str, agent_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNodes]:  # fmt: skip
    try:
        docker_api.inspect_image(NODE_IMAGE)
    except Exception:  # noqa: BLE001
        need(False, f"image {NODE_IMAGE} (scripts/build-images.sh swarmnode)")
    # node-3 is a worker: its agent reads the cluster through CHAOS_SWARM_MANAGER
    nodes = SwarmNodes(f"swarm3-{SESSION}", 3, (TEST_LABEL, SESSION), workers=1)
    try:
        nodes.start([web_image, agent_image])
        stack = tmp_path_factory.mktemp("stack") / "stack.yml"
        stack.write_text(STACK_FILE.format(image=WEB_IMAGE))
        nodes.deploy(STACK, stack)
        nodes.wait_running(SERVICE, 6, timeout=180)
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def coordinator() -> Iterator[SshdServer]:
    reason = sshd_available()
    need(not reason, reason)
    srv = SshdServer(list(HOSTS), POLICY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class EventLog:
    """Container events of the service from every node, collected in threads."""

    def __init__(self, nodes: SwarmNodes) -> None:
        self.events: list[tuple[float, str, str, str]] = []  # (t, node, action, id)
        self.lock = threading.Lock()
        self.apis = [nodes.api(i) for i in range(nodes.count)]
        self.streams: list[Any] = []
        self.threads = [
            threading.Thread(target=self._follow, args=(i,), daemon=True)
            for i in range(nodes.count)
        ]
        for t in self.threads:
            t.start()

    def _follow(self, i: int) -> None:
        stream = self.apis[i].events(
            decode=True,
            filters={"type": "container", "label": f"com.docker.swarm.service.name={SERVICE}"},
        )
        self.streams.append(stream)
        try:
            for e in stream:
                action = str(e.get("Action") or e.get("status") or "")
                with self.lock:
                    self.events.append((e["timeNano"] / 1e9, HOSTS[i], action, e["id"]))
        except Exception:  # noqa: BLE001, S110 - the stream ends when closed
            pass

    def close(self) -> list[tuple[float, str, str, str]]:
        time.sleep(1)
        for stream in self.streams:
            try:
                stream.close()
            except Exception:  # noqa: BLE001, S110
                pass
        for api in self.apis:
            api.close()
        with self.lock:
            return sorted(self.events)


def fault_intervals(events: list[tuple[float, str, str, str]]) -> list[tuple[float, float, str]]:
    """From the agent's pause/kill (a stop starts with a kill SIGTERM event) to the unpause,
    or to the next start of a new task of the service on any node."""
    out: list[tuple[float, float, str]] = []
    open_since: dict[str, tuple[float, str]] = {}
    waiting_start: list[tuple[float, str]] = []
    for t, _node, action, cid in events:
        if action in ("pause", "kill") and cid not in open_since:
            open_since[cid] = (t, action)
        elif action == "unpause" and cid in open_since:
            out.append((open_since.pop(cid)[0], t, cid))
        elif action == "die" and cid in open_since and open_since[cid][1] == "kill":
            waiting_start.append((open_since.pop(cid)[0], cid))
        elif action == "start" and waiting_start:
            begin, dead = waiting_start.pop(0)
            out.append((begin, t, dead))
    for begin, dead in waiting_start:
        out.append((begin, float("inf"), dead))
    for cid, (begin, _) in open_since.items():
        out.append((begin, float("inf"), cid))
    return sorted(out)


def agent_config(tmp: Path, srv: SshdServer, host: str, faults: str) -> Path:
    section = srv.section(host)
    text = f"""
[agent]
state_dir = "{tmp / host}"
host = "{host}"
heal_retries = 20
[schedule]
mean_interval = "1s"
min_gap = "0.5s"
first_after = "0s"
duration = "3s"
[faults]
enabled = [{faults}]
[coordinator]
enabled = true
host = "{section.host}"
port = {section.port}
user = "{section.user}"
key = "{section.key}"
known_hosts = "{section.known_hosts}"
connect_timeout = "3s"
request_timeout = "3s"
renew_margin = "0.5s"
"""
    path = tmp / f"{host}.toml"
    path.write_text(text)
    return path


def journal(tmp: Path, host: str) -> list[dict[str, Any]]:
    path = tmp / host / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_three_nodes_one_fault_at_a_time_fleet_wide(
    swarm3: SwarmNodes, coordinator: SshdServer, tmp_path: Path
) -> None:
    # the worker's agent discovers through the manager, and only with it
    cfg3 = agent_config(tmp_path, coordinator, "node-3", '"pause"')
    alone = run_cli("targets", "--config", str(cfg3), env={"DOCKER_HOST": swarm3.url(2)})
    assert alone.returncode != 0 and MANAGER_ENV in alone.stdout + alone.stderr
    seen = run_cli(
        "targets", "--config", str(cfg3), "--json",
        env={"DOCKER_HOST": swarm3.url(2), MANAGER_ENV: swarm3.url(0)},
    )  # fmt: skip
    assert seen.returncode == 0, seen.stderr
    web = [t for t in json.loads(seen.stdout)["targets"] if t["group"] == f"{STACK}/web"]
    assert len(web) == 6 and sum("runs on node" in t["reason"] for t in web) == 4, web
    api = swarm3.api(0)
    per_node: dict[str, int] = {}
    for t in api.tasks(filters={"service": SERVICE, "desired-state": "running"}):
        per_node[t["NodeID"]] = per_node.get(t["NodeID"], 0) + 1
    api.close()
    assert sorted(per_node.values()) == [2, 2, 2]  # spread over the three nodes

    log = EventLog(swarm3)
    procs: list[subprocess.Popen[str]] = []
    t0 = time.time()
    try:
        for i, host in enumerate(HOSTS):
            # node-2's agent only pauses, so killing it mid-fault leaves a paused task
            faults = '"pause"' if host == "node-2" else '"kill", "stop", "pause"'
            cfg = agent_config(tmp_path, coordinator, host, faults)
            env = {"DOCKER_HOST": swarm3.url(i)}
            if host == "node-3":  # a worker: only managers list services and tasks
                env[MANAGER_ENV] = swarm3.url(0)
            procs.append(
                start_agent(
                    "run",
                    "--config",
                    str(cfg),
                    "--for",
                    "70s",
                    "--no-live",
                    env={**os.environ, **env},
                )  # fmt: skip
            )
        # node-2's agent dies mid-fault (SIGKILL of the agent only: its watchdog lives on)
        inject = wait_for(
            lambda: next((e for e in journal(tmp_path, "node-2") if e["event"] == "inject"), None),
            timeout=120,
            interval=0.2,
        )
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(timeout=30)
        n2 = swarm3.api(1)
        try:
            wait_for(
                lambda: not n2.inspect_container(inject["container_id"])["State"]["Paused"],
                timeout=60,
                interval=0.3,
            )
        finally:
            n2.close()
        watchdog = wait_for(
            lambda: next(
                (e for e in journal(tmp_path, "node-2") if e["event"] == "watchdog"), None
            ),
            timeout=30,
        )
        assert watchdog["how"] in ("healed", "already")
        for i in (0, 2):
            out, err = procs[i].communicate(timeout=240)
            assert procs[i].returncode == 0, err[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        events = log.close()
    span = time.time() - t0

    intervals = fault_intervals(events)
    assert len(intervals) >= 3, events
    for (_b1, e1, c1), (b2, _, c2) in zip(intervals, intervals[1:], strict=False):
        assert b2 >= e1, f"{c1[:12]} and {c2[:12]} were faulted at the same time"
    # no container started again after it died (only new tasks start)
    died: set[str] = set()
    for _, _, action, cid in events:
        if action == "die":
            died.add(cid)
        elif action == "start":
            assert cid not in died, f"{cid[:12]} was started again after it died"
    # the service converged again, 2 per node
    wait_for(lambda: swarm3_running(swarm3) == 6, timeout=120, interval=0.5)
    # the worker's agent faulted only tasks of its own node
    worker = swarm3.api(2)
    try:
        local = {c["Id"] for c in worker.containers(all=True)}
    finally:
        worker.close()
    mine = [e["container_id"] for e in journal(tmp_path, "node-3") if e["event"] == "inject"]
    assert mine and set(mine) <= local, (mine, local)
    # each agent's report: kill/stop faults with their convergence time
    converged: list[float] = []
    for host in HOSTS:
        cfg = tmp_path / f"{host}.toml"
        rep = run_cli("report", "--config", str(cfg), "--json", timeout=60)
        assert rep.returncode == 0, rep.stderr
        for f in json.loads(rep.stdout)["faults"]:
            if f["fault"] in ("kill", "stop"):
                assert f["converged_s"] is not None, f
                converged.append(f["converged_s"])
    print(
        f"\n3-node swarm: {len(intervals)} faults in {span:.0f}s, none overlapping; "
        f"convergence after kill/stop: {sorted(round(c, 1) for c in converged)}"
    )


def swarm3_running(nodes: SwarmNodes) -> int:
    api = nodes.api(0)
    try:
        tasks = api.tasks(filters={"service": SERVICE, "desired-state": "running"})
    finally:
        api.close()
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


DEADMAN_CONFIG = """
[agent]
state_dir = "/var/lib/chaos-agent"
deadman = "container"
[schedule]
mean_interval = "1s"
min_gap = "1s"
first_after = "0s"
duration = "12s"
[faults]
enabled = ["partition"]
"""


def read_from(api: Any, container: str, path: str) -> str:
    """A file of a container, running or dead (the archive endpoint works on both);
    "" while it does not exist yet."""
    import docker

    try:
        stream, _ = api.get_archive(container, path)
    except docker.errors.NotFound:
        return ""
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        return member.read().decode("utf-8", "replace") if member else ""


def test_a_nodes_whole_agent_container_killed_mid_partition_is_healed_by_its_deadman(
    swarm3: SwarmNodes, agent_image: str
) -> None:
    """The agent as a container on node-2 (no pid: host, no capabilities: its partition
    runs through a helper container) arms a container dead-man through the node's
    engine; `docker kill` of the whole agent container mid-fault, and the dead-man
    removes the rules at the deadline, through a helper of its own."""
    api = swarm3.api(1)
    agent = api.create_container(
        agent_image,
        command=["run", "--config", "/var/lib/chaos-agent/agent.toml", "--no-live"],
        labels={TEST_LABEL: SESSION},
        host_config=api.create_host_config(binds=["/var/run/docker.sock:/var/run/docker.sock"]),
    )["Id"]
    try:
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as out:
            data = DEADMAN_CONFIG.encode()
            info = tarfile.TarInfo("agent.toml")
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        api.put_archive(agent, "/var/lib/chaos-agent", tar.getvalue())  # into its volume
        api.start(agent)

        def injected() -> dict[str, Any] | None:
            if not api.inspect_container(agent)["State"]["Running"]:
                logs = api.logs(agent, tail=30).decode("utf-8", "replace")
                raise AssertionError(f"the agent container ended: {logs}")
            text = read_from(api, agent, "/var/lib/chaos-agent/journal.jsonl")
            events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
            return next((e for e in events if e["event"] == "inject"), None)

        inject = wait_for(injected, timeout=120, interval=1)
        victim = inject["container_id"]
        assert f"CHAOS-{inject['fault_id']}-in" in netns_view(victim)
        deadmen = api.containers(filters={"label": LABEL_DEADMAN})
        assert len(deadmen) == 1
        api.kill(agent, "SIGKILL")  # the whole agent container, mid-fault
        assert api.inspect_container(agent)["State"]["ExitCode"] == 137

        def watchdog() -> dict[str, Any] | None:
            text = read_from(api, agent, "/var/lib/chaos-agent/journal.jsonl")
            events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
            return next((e for e in events if e["event"] == "watchdog"), None)

        healed = wait_for(watchdog, timeout=60, interval=0.5)  # journaled after the heal
        assert healed["how"] == "healed" and healed["fault_id"] == inject["fault_id"], healed
        assert "CHAOS-" not in netns_view(victim)
        # nothing left: the dead-man removes itself, helpers are gone
        wait_for(lambda: not api.containers(all=True, filters={"label": LABEL_DEADMAN}),
                 timeout=60, interval=0.5)  # fmt: skip
        assert not api.containers(all=True, filters={"label": LABEL_NETNS_HELPER})
    finally:
        for c in api.containers(all=True, filters={"label": LABEL_DEADMAN}):
            api.remove_container(c["Id"], force=True)
        api.remove_container(agent, force=True, v=True)
        api.close()
