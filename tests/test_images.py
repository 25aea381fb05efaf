"""The images scripts/build-images.sh builds: the contracts other tests and the examples
rely on, checked on real containers."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from typing import Any

import pytest

from tests.conftest import IN_CI, REPO, need

pytestmark = pytest.mark.docker

AGENT_IMAGE = os.environ.get("AGENT_IMAGE") or "chaos-agent:latest"


def _image(docker_api: Any, name: str) -> dict[str, Any]:
    try:
        return docker_api.inspect_image(name)
    except Exception:  # noqa: BLE001
        need(False, f"image {name} (build it with scripts/build-images.sh)")
        raise


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - a test container
            return resp.status, resp.read().decode(), resp.headers.get("X-Replica", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("X-Replica", "")


def test_web_image_serves_names_the_replica_and_stops_promptly(containers, docker_api) -> None:
    # an explicit command keeps the image's STOPSIGNAL (SIGTERM) in the containers fixture
    info = containers("web-image", command=["python3", "/usr/local/bin/chaos-web"])
    ip = info["NetworkSettings"]["IPAddress"]
    hostname = info["Config"]["Hostname"]
    deadline = time.monotonic() + 10
    while True:
        try:
            status, body, replica = _get(f"http://{ip}:8080/")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert (status, body, replica) == (200, f"hello from {hostname}\n", hostname)
    assert _get(f"http://{ip}:8080/health")[:2] == (200, "ok\n")
    assert _get(f"http://{ip}:8080/nope")[0] == 404

    # python3 is in the image, for probes run with `docker exec`
    out = docker_api.exec_start(
        docker_api.exec_create(info["Id"], ["python3", "-c", "print(6 * 7)"])["Id"]
    )
    assert out.strip() == b"42"

    # SIGTERM (docker stop) ends it at once with status 0, not after the 10 s grace period
    started = time.monotonic()
    docker_api.stop(info["Id"], timeout=10)
    elapsed = time.monotonic() - started
    state = docker_api.inspect_container(info["Id"])["State"]
    assert state["ExitCode"] == 0, state
    assert elapsed < 3, f"docker stop took {elapsed:.1f}s"


def test_agent_image_is_labelled_and_has_its_tools(docker_api) -> None:
    info = _image(docker_api, AGENT_IMAGE)
    assert info["Config"]["Labels"].get("chaos.agent") == "true"
    assert info["Config"]["Entrypoint"] == ["chaos-agent"]
    script = (
        "set -e; chaos-agent --help >/dev/null; "
        "for t in iptables tc ip nsenter; do command -v $t >/dev/null; done; "
        "test -e /usr/share/zoneinfo/Europe/Berlin; id -u chaos"
    )
    proc = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", AGENT_IMAGE, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "10001"


def test_build_images_second_run_is_cached(docker_api) -> None:
    _image(docker_api, "chaos-web:latest")
    need(os.geteuid() == 0 or not IN_CI, "root for scripts/build-images.sh")
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-images.sh"), "web"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "chaos-base:bookworm is up to date" in proc.stderr, proc.stderr
    assert "debootstrap" not in proc.stderr
    assert elapsed < 20, f"a cached run took {elapsed:.0f}s"
