"""compose-examples/swarm/ deployed as documented (`docker stack deploy --resolve-image
never`) on a single-node swarm in a container: the site answers through the balancer's
host-mode port (no IPVS: dnsrr and `tasks.web`), the agent runs as a global service,
faults tasks, and Swarm-replaced tasks are healed by convergence with the time journaled.

The agent image inside the node is chaos-agent:latest with this checkout's `agent`
package copied over it, so the test always exercises the code under test (in CI the
image is built from the same checkout anyway).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO, SESSION, TEST_LABEL, need, wait_for
from tests.swarm_nodes import NODE_IMAGE, SwarmNodes

pytestmark = pytest.mark.docker

EXAMPLE = REPO / "compose-examples" / "swarm"
IMAGES = ["chaos-web:latest", "chaos-haproxy:latest", "chaos-agent:latest"]
SITE_PACKAGES = "/opt/chaos-agent/lib/python3.11/site-packages"
FAST = {
    'first_after = "10s"': 'first_after = "1s"',
    'mean_interval = "20s"': 'mean_interval = "2s"',
    'min_gap = "10s"': 'min_gap = "1s"',
    'duration = "15s"': 'duration = "3s"',
    # partition more often than the others: its test waits for one
    'enabled = ["kill", "stop", "pause", "partition"]': (
        'enabled = ["kill", "stop", "pause", "partition"]\nweights = { partition = 3 }'
    ),
}


@pytest.fixture(scope="module")
def example(docker_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNodes]:
    for image in [NODE_IMAGE, *IMAGES]:
        try:
            docker_api.inspect_image(image)
        except Exception:  # noqa: BLE001
            need(False, f"image {image} (scripts/build-images.sh all)")
    nodes = SwarmNodes(f"swarmex-{SESSION}", 1, (TEST_LABEL, SESSION))
    try:
        nodes.start(IMAGES)
        work = tmp_path_factory.mktemp("swarm-example")
        ctx = work / "agent-image"
        ctx.mkdir()
        shutil.copytree(REPO / "agent", ctx / "agent", ignore=shutil.ignore_patterns("__pycache__"))
        # the whole package and the entry point: the local image may hold another
        # branch's build with modules this checkout does not have
        (ctx / "chaos-agent").write_text(
            "#!/opt/chaos-agent/bin/python3\nimport sys\nfrom agent.cli import main\n"
            "sys.exit(main())\n"
        )
        (ctx / "Dockerfile").write_text(
            f"FROM chaos-agent:latest\nUSER root\nRUN rm -rf {SITE_PACKAGES}/agent\n"
            f"COPY agent {SITE_PACKAGES}/agent\n"
            "COPY chaos-agent /opt/chaos-agent/bin/chaos-agent\n"
            "RUN chmod 0755 /opt/chaos-agent/bin/chaos-agent\n"
        )
        nodes.cli(0, "build", "-q", "-t", "chaos-agent:latest", str(ctx), timeout=300)
        stack = work / "stack"
        shutil.copytree(EXAMPLE, stack)
        config = (stack / "agent.toml").read_text()
        for old, new in FAST.items():
            assert old in config, old
            config = config.replace(old, new)
        (stack / "agent.toml").write_text(config)
        nodes.deploy("demo", stack / "stack.yml")
        nodes.wait_running("demo_web", 3, timeout=180)
        nodes.wait_running("demo_balancer", 1, timeout=180)
        nodes.wait_running("demo_agent", 1, timeout=180)
        yield nodes
    finally:
        nodes.close()


def agent_journal(nodes: SwarmNodes) -> list[dict[str, Any]]:
    """The agent's journal, read in its running task ([] between two tasks: when the agent
    halts on its stop condition, Swarm starts a new task on the same state volume)."""
    import docker

    api = nodes.api(0)
    try:
        found = api.containers(filters={"label": "com.docker.swarm.service.name=demo_agent"})
        if not found:
            return []
        exe = api.exec_create(found[0]["Id"], ["cat", "/var/lib/chaos-agent/journal.jsonl"])
        text = api.exec_start(exe["Id"]).decode("utf-8", "replace")
    except docker.errors.APIError:
        return []  # the task ended between the list and the exec
    finally:
        api.close()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_site_answers_through_the_host_mode_port(example: SwarmNodes) -> None:
    url = f"http://{example.address(0)}:8080/"

    def hello() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - our node
                return b"hello from" in resp.read()
        except OSError:
            return False

    wait_for(hello, timeout=60, interval=0.5)


def test_the_global_agent_faults_tasks_and_reports_convergence(example: SwarmNodes) -> None:
    def replaced() -> dict[str, Any] | None:
        return next(
            (e for e in agent_journal(example) if e["event"] == "healed_by_environment"), None
        )

    heal = wait_for(replaced, timeout=240, interval=2)
    assert heal["fault"] in ("kill", "stop")
    assert heal["converged_s"] > 0
    events = wait_for(lambda: agent_journal(example), timeout=60, interval=1)
    injected = [e for e in events if e["event"] == "inject"]
    assert injected and all(e["group"] == "demo/web" for e in injected)
    # the probe reached the site through the balancer by its service name (dnsrr)
    probes = [e for e in events if e["event"] == "probe"]
    assert any(e.get("ok") for e in probes), probes[-3:]


def test_the_global_agent_partitions_a_task_through_a_helper_and_heals_it(
    example: SwarmNodes,
) -> None:
    """The agent as a global service has no pid: host and no capabilities: its partition
    runs iptables in a helper container the node's engine puts in the task's namespace."""

    def partitioned() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in agent_journal(example)
                if e["event"] == "heal" and e["fault"] == "partition"
            ),
            None,
        )

    heal = wait_for(partitioned, timeout=240, interval=2)
    assert heal["how"] == "healed" and f"CHAOS-{heal['fault_id']}-in" in heal["detail"]
