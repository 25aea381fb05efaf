"""Docker Swarm on one machine for tests: Docker engines in containers (chaos-swarmnode,
Debian's docker.io, built without a registry by scripts/build-images.sh), joined into
one swarm. The host engine never enters swarm mode (that disturbs name resolution for
every other container on it).

The nodes run WITHOUT --privileged (it fails on our machines) with the measured set of
flags; each node's socket is bind-mounted to a host folder so host tools (docker-py, the
docker CLI, the agent in-process) can reach it. Images move in with `docker save | load`.
Everything is named from one prefix and removed by `close()`: node containers (with
their anonymous volumes), the named volumes, the network, the socket folders.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.adapters.netns import normalize_save

NODE_IMAGE = "chaos-swarmnode:latest"
NODE_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--device-cgroup-rule", "a *:* rwm",
    "--cgroupns", "private",
]  # fmt: skip


def _run(args: Sequence[str], *, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}...: {done.stderr.strip()[-600:]}")
    return done.stdout.strip()


class SwarmNodes:
    """`count` engines in containers; node 0 inits the swarm, the others join as
    managers (so every node's agent can read the cluster, as in a 3-manager swarm),
    except the last `workers` nodes, which join as workers."""

    def __init__(self, prefix: str, count: int, label: tuple[str, str], workers: int = 0) -> None:
        self.prefix = prefix
        self.count = count
        self.workers = workers
        self.label = f"{label[0]}={label[1]}"
        self.names = [f"{prefix}-n{i + 1}" for i in range(count)]
        self.folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        self.network = f"{prefix}-net"
        self.started: list[str] = []
        self.volumes: list[str] = []
        self.has_network = False

    # -- life ---------------------------------------------------------------------------
    def start(self, images: Sequence[str]) -> SwarmNodes:
        self.has_network = True  # first: close() must find it even if creating is interrupted
        _run(["docker", "network", "create", "--label", self.label, self.network])
        for name in self.names:
            sock_dir = self.folder / name
            sock_dir.mkdir()
            volume = f"{name}-lib"
            self.volumes.append(volume)
            _run(["docker", "volume", "create", "--label", self.label, volume])
            self.started.append(name)
            _run([
                "docker", "run", "-d", "--name", name, "--hostname", name,
                "--label", self.label, "--network", self.network, *NODE_FLAGS,
                "-v", f"{volume}:/var/lib/docker", "-v", f"{sock_dir}:/run/swarmnode",
                NODE_IMAGE,
            ])  # fmt: skip
        for i in range(self.count):
            self._wait_engine(i)
        tar = self.folder / "images.tar"
        _run(["docker", "save", "-o", str(tar), *images], timeout=300)
        loads = [
            subprocess.Popen(
                ["docker", "-H", self.url(i), "load", "-q", "-i", str(tar)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(self.count)
        ]
        for proc in loads:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"docker load into a node failed: {err.decode()[-400:]}")
        tar.unlink()
        addr = self.address(0)
        self.cli(0, "swarm", "init", "--advertise-addr", addr)
        tokens = {
            role: self.cli(0, "swarm", "join-token", "-q", role) for role in ("manager", "worker")
        }
        for i in range(1, self.count):
            role = "worker" if i >= self.count - self.workers else "manager"
            self.cli(i, "swarm", "join", "--token", tokens[role], f"{addr}:2377")
        return self

    def _wait_engine(self, i: int, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                ["docker", "-H", self.url(i), "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > end:
                logs = _run(["docker", "logs", "--tail", "20", self.names[i]], check=False)
                raise RuntimeError(f"engine in {self.names[i]} did not answer: {logs}")
            time.sleep(0.3)

    def close(self) -> None:
        for i, name in enumerate(self.names):
            if name in self.started:
                self._thaw(i)
        for name in self.started:
            _run(["docker", "rm", "-f", "-v", name], check=False)
        for volume in self.volumes:
            _run(["docker", "volume", "rm", "-f", volume], check=False)
        if self.has_network:
            _run(["docker", "network", "rm", self.network], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _thaw(self, i: int) -> None:
        """Unpause what is paused inside node i: a frozen task process outlives its node's
        dockerd and keeps the node container from being removed. Through the node's API,
        then (cgroup v1) by thawing every freezer cgroup below the node container."""
        try:
            api = self.api(i)
            try:
                for c in api.containers(filters={"status": "paused"}):
                    api.unpause(c["Id"])
            finally:
                api.close()
        except Exception:  # noqa: BLE001, S110 - the engine may be gone: thaw below
            pass
        node_id = _run(["docker", "inspect", "-f", "{{.Id}}", self.names[i]], check=False)
        root = Path("/sys/fs/cgroup/freezer/docker") / node_id
        if not node_id or not root.is_dir():
            return
        for state in root.rglob("freezer.state"):
            try:
                if state.read_text().strip() != "THAWED":
                    state.write_text("THAWED")
            except OSError:
                pass

    # -- access ---------------------------------------------------------------------------
    def url(self, i: int) -> str:
        return f"unix://{self.folder / self.names[i] / 'docker.sock'}"

    def address(self, i: int) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return _run(["docker", "inspect", "-f", fmt, self.names[i]])

    def cli(self, i: int, *args: str, timeout: float = 120) -> str:
        return _run(["docker", "-H", self.url(i), *args], timeout=timeout)

    def api(self, i: int) -> Any:
        import docker

        return docker.APIClient(base_url=self.url(i), timeout=60)

    def deploy(self, stack: str, compose_file: Path) -> None:
        self.cli(0, "stack", "deploy", "--resolve-image", "never", "-c", str(compose_file), stack)

    def wait_running(self, service: str, replicas: int, timeout: float = 120) -> None:
        """Until the service has `replicas` tasks running (from the manager's task list)."""
        api = self.api(0)
        end = time.monotonic() + timeout
        try:
            while True:
                tasks = api.tasks(filters={"service": service, "desired-state": "running"})
                running = [t for t in tasks if t["Status"]["State"] == "running"]
                if len(running) == replicas and len(tasks) == replicas:
                    return
                if time.monotonic() > end:
                    states = sorted(t["Status"]["State"] for t in tasks)
                    raise AssertionError(f"{service}: {states} after {timeout}s")
                time.sleep(0.3)
        finally:
            api.close()


def host_pid_of(container_id: str) -> int:
    """A nested container's process as this (outer) machine sees it, found by its cgroup:
    checks through it are independent of Docker and of the agent's own route."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"/docker/{container_id}" in (entry / "cgroup").read_text():
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"no host process in the cgroup of {container_id[:12]}")


def netns_view(container_id: str) -> str:
    """iptables-save (normalized) and the root qdiscs inside the task's namespace."""
    pid = host_pid_of(container_id)
    out = []
    for argv in (["iptables-save"], ["tc", "qdisc", "show"]):
        done = subprocess.run(["nsenter", "-t", str(pid), "-n", *argv],
                              capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
        out.append(normalize_save(done.stdout) if argv[0] == "iptables-save" else done.stdout)
    return "".join(out)
