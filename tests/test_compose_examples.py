"""The compose examples, brought up for real with the locally built images.

Each stack gets a unique compose project name and is torn down (`down -v`) even when a test
fails. The agent in these stacks is scoped to the test's own containers (label
`chaos.scope=<project>`), so it never touches anything else on a shared engine.

Needs: a Docker engine, a compose tool (`docker compose` v2 or `docker-compose` 1.29) and
the images from `scripts/build-images.sh all`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, need, run_cli

pytestmark = pytest.mark.docker

EXAMPLES = REPO / "compose-examples"
# The locally built images (scripts/build-images.sh); each can be overridden from the
# environment, e.g. HAPROXY_IMAGE=haproxy:2.8 on a machine with a registry.
LOCAL_IMAGES = {
    key: os.environ.get(key) or default
    for key, default in {
        "WEB_IMAGE": "chaos-web:latest",
        "HAPROXY_IMAGE": "chaos-haproxy:latest",
        "PHP_IMAGE": "chaos-php:latest",
        "MARIADB_IMAGE": "chaos-mariadb:latest",
        "AGENT_IMAGE": "chaos-agent:latest",
    }.items()
}
SCOPE_LABEL = "chaos.scope"


def compose_command() -> list[str] | None:
    """`docker compose` (v2) when present, else `docker-compose` (1.29)."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return 0, str(exc)


def toml_dumps(data: dict[str, Any]) -> str:
    """Enough TOML for an agent config: tables, arrays of tables, scalars, string lists."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r}")

    out: list[str] = []
    for name, section in data.items():
        entries = section if isinstance(section, list) else [section]
        for entry in entries:
            out.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            out.extend(f"{k} = {value(v)}" for k, v in entry.items())
            out.append("")
    return "\n".join(out)


class Stack:
    """One compose project: up, wait, exec, down."""

    def __init__(self, example: str, tmp: Path, compose: list[str]) -> None:
        self.dir = EXAMPLES / example
        self.project = f"cxt{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.tmp = tmp
        self.compose = compose
        self.files = [self.dir / "docker-compose.yml"]
        self.env = {
            **os.environ,
            **LOCAL_IMAGES,
            "WEB_BIND": "127.0.0.1",
            "WEB_PORT": str(self.port),
            "AGENT_CONFIG": str(tmp / "agent.toml"),
            "AGENT_ARGS": "",
        }
        self.url = f"http://127.0.0.1:{self.port}/"

    def scope(self, services: list[str]) -> None:
        """An override that labels the opted-in services with this project's scope."""
        override = self.tmp / "scope.yml"
        lines = ["services:"]
        for s in services:
            lines += [f"  {s}:", "    labels:", f'      {SCOPE_LABEL}: "{self.project}"']
        override.write_text("\n".join(lines) + "\n")
        self.files.append(override)

    def agent_config(self, **changes: dict[str, Any]) -> Path:
        """The example's own agent.toml, scoped to this project, with `changes` merged in."""
        with (self.dir / "agent.toml").open("rb") as f:
            config: dict[str, Any] = tomllib.load(f)
        config.setdefault("targets", {}).update(label=SCOPE_LABEL, value=self.project)
        for section, values in changes.items():
            config.setdefault(section, {}).update(values)
        path = Path(self.env["AGENT_CONFIG"])
        path.write_text(toml_dumps(config))
        return path

    def run(self, *args: str, timeout: float = 240, check: bool = True) -> str:
        cmd = [*self.compose, "-p", self.project]
        for f in self.files:
            cmd += ["-f", str(f)]
        proc = subprocess.run(
            [*cmd, *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.dir,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc.stdout

    def up(self, *services: str) -> None:
        self.run("up", "-d", "--no-build", *services)

    def container(self, service: str) -> str:
        ids = self.run("ps", "-q", service).split()
        assert ids, f"no container for service {service}"
        return ids[0]

    def exec(self, service: str, *argv: str, timeout: float = 30) -> str:
        proc = subprocess.run(
            ["docker", "exec", self.container(service), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"exec {argv} in {service}: {proc.stderr}"
        return proc.stdout

    def wait_ok(self, deadline_s: float = 90, body: str = "") -> str:
        end = time.monotonic() + deadline_s
        last: tuple[int, str] = (0, "")
        while time.monotonic() < end:
            last = http_get(self.url)
            if last[0] == 200 and body in last[1]:
                return last[1]
            time.sleep(0.5)
        logs = self.run("logs", "--no-color", "--tail", "30", check=False)
        raise AssertionError(f"{self.url} never answered 200 (last: {last}); logs:\n{logs}")

    def sample(self, seconds: float, pause: float = 0.2) -> tuple[int, int, list[str]]:
        ok = bad = 0
        failures: list[str] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            status, text = http_get(self.url, timeout=3)
            if status == 200:
                ok += 1
            else:
                bad += 1
                failures.append(f"{status} {text[:80]!r}")
            time.sleep(pause)
        return ok, bad, failures

    def down(self) -> None:
        self.run("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=180)
        # Belt and braces: nothing of this project may outlive the test.
        leftovers = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        for cid in leftovers:
            subprocess.run(["docker", "rm", "-fv", cid], capture_output=True, check=False)
        for kind in ("network", "volume"):
            names = subprocess.run(
                ["docker", kind, "ls", "-q", "--filter", f"name={self.project}_"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            for name in names:
                subprocess.run(["docker", kind, "rm", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def compose(docker_api: Any) -> list[str]:
    cmd = compose_command()
    need(cmd is not None, "a compose tool (docker compose v2 or docker-compose)")
    assert cmd is not None
    return cmd


def need_images(docker_api: Any, *names: str) -> None:
    for name in names:
        try:
            docker_api.inspect_image(name)
        except Exception:  # noqa: BLE001
            need(False, f"image {name} (build it with scripts/build-images.sh all)")


@contextmanager
def stack(example: str, tmp: Path, compose: list[str]) -> Iterator[Stack]:
    s = Stack(example, tmp, compose)
    try:
        yield s
    finally:
        s.down()


def run_agent(
    s: Stack, seconds: int, seed: int, state_dir: str = "/var/lib/chaos-agent"
) -> tuple[int, dict[str, Any], str]:
    """Run the example's agent service for `seconds`; return (exit code, report, logs)."""
    s.env["AGENT_ARGS"] = f"--for {seconds}s --seed {seed} --no-live"
    s.run("up", "-d", "--no-build", "--no-deps", "agent")
    cid = s.container("agent")
    waited = subprocess.run(
        ["docker", "wait", cid], capture_output=True, text=True, timeout=seconds + 90, check=False
    )
    code = int(waited.stdout.strip() or "-1")
    logs = subprocess.run(
        ["docker", "logs", "--tail", "60", cid], capture_output=True, text=True, check=False
    )
    journal = s.tmp / f"journal-{seed}.jsonl"
    subprocess.run(
        ["docker", "cp", f"{cid}:{state_dir}/journal.jsonl", str(journal)],
        check=True,
        capture_output=True,
    )
    rep = run_cli("report", "--journal", str(journal), "--json")
    assert rep.returncode == 0, rep.stderr
    return code, json.loads(rep.stdout), logs.stdout + logs.stderr


# --- web-replicas ---------------------------------------------------------------------


def test_web_replicas_balance_over_three_replicas_and_hide_a_paused_one(
    docker_api: Any, compose: list[str], tmp_path: Path
) -> None:
    need_images(docker_api, LOCAL_IMAGES["WEB_IMAGE"], LOCAL_IMAGES["HAPROXY_IMAGE"])
    with stack("web-replicas", tmp_path, compose) as s:
        s.up("web", "balancer")
        s.wait_ok(body="hello from")

        # the three replicas: one compose service, so one replica group for the agent
        ids = s.run("ps", "-q", "web").split()
        assert len(ids) == 3
        labels = [docker_api.inspect_container(i)["Config"]["Labels"] for i in ids]
        assert all(lab.get("chaos.enable") == "true" for lab in labels)
        assert len({lab["com.docker.compose.service"] for lab in labels}) == 1

        names: set[str] = set()
        for _ in range(60):
            status, text = http_get(s.url)
            assert status == 200, text
            names.add(text.strip().removeprefix("hello from "))
            if len(names) == 3:
                break
        hostnames = {docker_api.inspect_container(i)["Config"]["Hostname"] for i in ids}
        assert names == hostnames, f"served by {names}, replicas are {hostnames}"

        # a frozen replica is taken out by the balancer's health checks and retries
        victim = ids[1]
        docker_api.pause(victim)
        try:
            ok, bad, failures = s.sample(6)
        finally:
            docker_api.unpause(victim)
        # every request answered (a stalled one is retried on another replica); how
        # many fit in the window depends on the machine's load: only a loose floor
        assert bad == 0 and ok >= 5, (ok, failures)


def test_web_replicas_agent_faults_and_the_site_survives(
    docker_api: Any, compose: list[str], tmp_path: Path
) -> None:
    need_images(
        docker_api, *(LOCAL_IMAGES[k] for k in ("WEB_IMAGE", "HAPROXY_IMAGE", "AGENT_IMAGE"))
    )
    with stack("web-replicas", tmp_path, compose) as s:
        s.scope(["web"])
        s.agent_config(
            schedule={"first_after": "5s", "mean_interval": "8s", "min_gap": "5s", "duration": "8s"}
        )
        s.up("web", "balancer")
        s.wait_ok(body="hello from")
        # the replicas must be healthy before the agent may fault them (min_healthy)
        _wait_healthy(docker_api, s.run("ps", "-q", "web").split())
        code, report, logs = run_agent(s, seconds=45, seed=7)
        assert code == 0, logs
        assert report["faults"], f"no fault in 45 s:\n{logs}"
        groups = {g["group"]: g for g in report["groups"]}
        assert set(groups) == {f"{s.project}/web"}, groups
        assert groups[f"{s.project}/web"]["verdict"] != "outage", json.dumps(report, indent=1)
        site = next(p for p in report["probes"] if p["name"] == "site")
        assert site["overall"]["availability"] >= 0.9, site


# --- php-mysql ------------------------------------------------------------------------

PHP_LINE = re.compile(r"served by (\S+); wrote visit (\d+) on (\S+); read it back from (\S+)")


def test_php_mysql_serves_writes_replicates_and_the_weak_balancer_fails(
    docker_api: Any, compose: list[str], tmp_path: Path
) -> None:
    need_images(
        docker_api,
        *(LOCAL_IMAGES[k] for k in ("PHP_IMAGE", "MARIADB_IMAGE", "HAPROXY_IMAGE")),
    )
    with stack("php-mysql", tmp_path, compose) as s:
        s.up("php1", "php2", "php3", "balancer", "db-replica")
        s.wait_ok(deadline_s=120, body="served by")

        # every PHP replica serves, each request writes a row and reads it back
        served: set[str] = set()
        read_from: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(served) < 3 or "db-replica" not in read_from):
            status, text = http_get(s.url)
            assert status == 200, text
            m = PHP_LINE.search(text)
            assert m, text
            assert m.group(3) == "db-primary"
            served.add(m.group(1))
            read_from.add(m.group(4))
            time.sleep(0.2)
        assert served == {"php1", "php2", "php3"}
        assert "db-replica" in read_from, f"the replica never had the row: {read_from}"

        # real replication: the replica's threads run and it holds the primary's rows
        sql = ["mariadb", "-uroot", "-proot-password", "--batch", "--skip-column-names"]
        status = s.exec("db-replica", *sql[:3], "-e", "SHOW SLAVE STATUS\\G")
        assert re.search(r"Slave_IO_Running: Yes", status), status
        assert re.search(r"Slave_SQL_Running: Yes", status), status
        count_sql = "SELECT COUNT(*) FROM app.visits"
        primary_rows = int(s.exec("db-primary", *sql, "-e", count_sql))
        assert primary_rows >= 3
        replica_rows = -1
        for _ in range(20):
            replica_rows = int(s.exec("db-replica", *sql, "-e", count_sql))
            if replica_rows >= primary_rows:
                break
            time.sleep(0.5)
        assert replica_rows >= primary_rows

        # health checks: a paused PHP replica does not cost a single request
        php2 = s.container("php2")
        docker_api.pause(php2)
        try:
            ok, bad, failures = s.sample(6)
        finally:
            docker_api.unpause(php2)
        assert bad == 0 and ok >= 3, (ok, failures)  # a loose floor: load-dependent

        # the weak variant: same stack, a balancer without health checks
        s.files.append(s.dir / "docker-compose.weak.yml")
        s.up("balancer")
        s.wait_ok(body="served by")
        docker_api.pause(php2)
        try:
            ok, bad, failures = s.sample(6)
        finally:
            docker_api.unpause(php2)
        assert bad >= 2, f"the weak balancer hid the paused replica: ok={ok} bad={bad}"


def test_php_mysql_agent_good_stack_survives_weak_stack_shows_outage(
    docker_api: Any, compose: list[str], tmp_path: Path
) -> None:
    need_images(docker_api, *LOCAL_IMAGES.values())
    with stack("php-mysql", tmp_path, compose) as s:
        s.scope(["php1", "php2", "php3"])
        schedule = {"first_after": "5s", "mean_interval": "8s", "min_gap": "5s", "duration": "10s"}
        s.agent_config(schedule=schedule, agent={"state_dir": "/var/lib/chaos-agent/good"})
        s.up("php1", "php2", "php3", "balancer", "db-replica")
        s.wait_ok(deadline_s=120, body="served by")
        _wait_healthy(docker_api, [s.container(p) for p in ("php1", "php2", "php3")])

        code, report, logs = run_agent(s, 45, 11, "/var/lib/chaos-agent/good")
        assert code == 0, logs
        assert report["faults"], f"no fault in 45 s:\n{logs}"
        groups = {g["group"]: g["verdict"] for g in report["groups"]}
        assert set(groups) == {"php"}, groups
        assert groups["php"] != "outage", json.dumps(report, indent=1)

        # the weak variant: pause and stop only (a killed replica may come back too fast
        # to make a clear point); the report must name the outage and its group
        s.files.append(s.dir / "docker-compose.weak.yml")
        s.agent_config(
            schedule=schedule,
            agent={"state_dir": "/var/lib/chaos-agent/weak"},
            faults={"enabled": ["pause", "stop"]},
            stop={"min_availability": 0.0},
        )
        s.run("rm", "-fsv", "agent")
        s.up("balancer")
        s.wait_ok(body="served by")
        _wait_healthy(docker_api, [s.container(p) for p in ("php1", "php2", "php3")])
        code, report, logs = run_agent(s, 45, 11, "/var/lib/chaos-agent/weak")
        assert report["faults"], f"no fault in 45 s:\n{logs}"
        groups = {g["group"]: g["verdict"] for g in report["groups"]}
        assert groups.get("php") == "outage", json.dumps(report, indent=1)
        spofs = report["single_points_of_failure"]
        assert any("'php'" in line for line in spofs), spofs


def _wait_healthy(docker_api: Any, ids: list[str], deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        states = [docker_api.inspect_container(i)["State"].get("Health", {}) for i in ids]
        if all(h.get("Status") == "healthy" for h in states):
            return
        time.sleep(0.5)
    raise AssertionError(f"replicas never all healthy: {states}")
