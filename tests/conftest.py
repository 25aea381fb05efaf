"""Shared fixtures. Real engine, real containers; everything created is labelled
`chaos.test=<session id>` and removed at the end, even when a test fails.

Under CI (CI=true) a missing Docker engine, image or server is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SESSION = uuid.uuid4().hex[:8]
TEST_LABEL = "chaos.test"
WEB_IMAGE = os.environ.get("CHAOS_WEB_IMAGE", "chaos-web:latest")
AGENT_IMAGE = os.environ.get("CHAOS_TEST_AGENT_IMAGE", "chaos-agent:latest")


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until `predicate` returns something truthy; fail after `timeout` seconds."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def need(condition: bool, what: str) -> None:
    """Skip locally, fail under CI: a missing engine is never a silent pass."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {what}", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def docker_api() -> Iterator[Any]:
    import docker

    try:
        api = docker.APIClient(base_url="unix:///var/run/docker.sock", timeout=60)
        api.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        need(False, f"a Docker engine (scripts/docker-engine.sh): {exc}")
        raise
    yield api
    _cleanup(api)
    api.close()


def _cleanup(api: Any) -> None:
    for c in api.containers(all=True, filters={"label": f"{TEST_LABEL}={SESSION}"}):
        try:
            if c.get("State") == "paused":
                api.unpause(c["Id"])
            api.remove_container(c["Id"], force=True, v=True)
        except Exception:  # noqa: BLE001, S110 - best effort at teardown
            pass
    for n in api.networks(filters={"label": f"{TEST_LABEL}={SESSION}"}):
        try:
            api.remove_network(n["Id"])
        except Exception:  # noqa: BLE001, S110
            pass


@pytest.fixture(scope="session")
def web_image(docker_api: Any) -> str:
    try:
        docker_api.inspect_image(WEB_IMAGE)
    except Exception:  # noqa: BLE001
        need(False, f"image {WEB_IMAGE} (build it with scripts/build-images.sh)")
    return WEB_IMAGE


@pytest.fixture(scope="session")
def agent_image(docker_api: Any) -> str:
    """The agent's own image (CHAOS_TEST_AGENT_IMAGE overrides the tag)."""
    try:
        docker_api.inspect_image(AGENT_IMAGE)
    except Exception:  # noqa: BLE001
        need(False, f"image {AGENT_IMAGE} (scripts/build-images.sh agent)")
    return AGENT_IMAGE


@pytest.fixture
def containers(docker_api: Any, web_image: str) -> Iterator[Callable[..., dict[str, Any]]]:
    """Factory: start a container from the web image with labels; removed at test end.

    Returns the inspect dict. Names get a per-test suffix so runs never collide.
    """
    created: list[str] = []
    suffix = uuid.uuid4().hex[:6]

    def make(
        name: str,
        labels: dict[str, str] | None = None,
        *,
        image: str | None = None,
        command: list[str] | None = None,
        network: str | None = None,
        restart: str | None = None,
        healthcheck: dict[str, Any] | None = None,
        **host_config: Any,
    ) -> dict[str, Any]:
        all_labels = {TEST_LABEL: SESSION, **(labels or {})}
        hc_kwargs: dict[str, Any] = dict(host_config)
        if restart:
            hc_kwargs["restart_policy"] = {"Name": restart}
        if network:
            hc_kwargs["network_mode"] = network
        host_cfg = docker_api.create_host_config(**hc_kwargs)
        c = docker_api.create_container(
            image or web_image,
            command=command,
            name=f"{name}-{suffix}",
            labels=all_labels,
            host_config=host_cfg,
            healthcheck=healthcheck,
            stop_signal="SIGKILL" if not command else None,
        )
        created.append(c["Id"])
        docker_api.start(c["Id"])
        return docker_api.inspect_container(c["Id"])

    yield make
    for cid in created:
        try:
            info = docker_api.inspect_container(cid)
            if info["State"].get("Paused"):
                docker_api.unpause(cid)
            docker_api.remove_container(cid, force=True, v=True)
        except Exception:  # noqa: BLE001, S110
            pass


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, **kw: Any):
    """Run `python -m agent ARGS` as a real process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
        **kw,
    )


def python_out(code: str, timeout: float = 60) -> str:
    """What `python -c code` prints (run from the repository; it must exit 0)."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def start_agent(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """Start `python -m agent ARGS` in the background, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def ledger_faults(state_dir: Path) -> list[dict[str, Any]]:
    """The records in a state directory's ledger ([] when there is none)."""
    import json

    path = state_dir / "ledger.json"
    return json.loads(path.read_text())["faults"] if path.exists() else []


def journal_events(state_dir: Path) -> list[dict[str, Any]]:
    """The events of a state directory's journal, a torn line (a writer killed) skipped."""
    import json

    path = state_dir / "journal.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


def replica_probes(
    replicas: list[dict[str, Any]], prefix: str, interval: str, timeout: str
) -> list[str]:
    """One `[[probes]]` per replica container (its own IP, port 8080): pausing it is seen."""
    lines: list[str] = []
    for i, c in enumerate(replicas, 1):
        ip = c["NetworkSettings"]["IPAddress"]
        lines += ["[[probes]]", f'name = "{prefix}-{i}"', f'url = "http://{ip}:8080/"']
        lines += [f'interval = "{interval}"', f'timeout = "{timeout}"']
    return lines


def pause_run_config(
    tmp_path: Path, value: str, *, min_gap: str, first_after: str, duration: str, extra: list[str]
) -> tuple[Path, Path]:
    """An agent.toml that pauses the opted-in containers on a schedule; (config, state dir)."""
    state = tmp_path / "state"
    lines = ["[agent]", f'state_dir = "{state}"', "[targets]", f'value = "{value}"']
    lines += ["[schedule]", 'mean_interval = "1s"', f'min_gap = "{min_gap}"']
    lines += [f'first_after = "{first_after}"', f'duration = "{duration}"']
    lines += ["[faults]", 'enabled = ["pause"]', *extra]
    cfg = tmp_path / "agent.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg, state


_LAUNCHER = """
import subprocess, sys
p = subprocess.Popen(sys.argv[1:], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid)
"""


@contextlib.contextmanager
def detached_process(*argv: str) -> Iterator[Any]:
    """A process that is not our child (as if someone else started it), killed at the end."""
    import psutil

    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    proc = psutil.Process(int(out.stdout.strip()))
    try:
        yield proc
    finally:
        try:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)
        except psutil.NoSuchProcess:
            pass
