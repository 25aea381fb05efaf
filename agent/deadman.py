"""Arm the dead-man heal (agent.watchdog) outside the agent's lifetime.

One per agent run, armed before its first fault. Where it lives decides what it
survives, so the mode follows how the agent runs ([agent] deadman, default auto):

- process: a detached process in its own session. Survives SIGKILL of the agent
  and of its process group; not a kill of the container or unit it sits in.
- container: a sibling container started through the Engine API, same image,
  same volumes, its own cgroup: survives `docker kill`, `docker rm -f` and an OOM
  kill of the agent's container. It removes itself when nothing is left to heal.
- systemd: a transient unit (systemd-run), outside the agent unit's cgroup:
  survives `systemctl kill`, `systemctl stop` and KillMode=control-group.
- auto: systemd when the agent runs as a systemd service with systemd-run at hand,
  container when it runs in a container, process otherwise.
- off: no dead-man (`chaos-agent heal`, or the agent's next start, heals).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.errors import AgentError, ConfigError

DeadmanMode = Literal["auto", "process", "container", "systemd", "off"]
MODES: tuple[str, ...] = ("auto", "process", "container", "systemd", "off")
LABEL_DEADMAN = "chaos.deadman.owner"


@dataclass
class Armed:
    """An armed dead-man: what it is, and how to stand it down once nothing is left."""

    mode: str
    name: str
    _handle: Any = None

    def describe(self) -> str:
        return f"{self.mode} {self.name}"

    def terminate(self) -> None:
        """Stand down (nothing is left to heal). Best effort: it also exits on its own."""
        try:
            if self.mode == "process" and self._handle is not None:
                self._handle.terminate()
            elif self.mode == "container" and self._handle is not None:
                self._handle.remove(self.name)
            elif self.mode == "systemd":
                subprocess.run(
                    ["systemctl", "stop", "--no-block", self.name],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=5,
                    check=False,
                )
        except (OSError, AgentError, subprocess.SubprocessError):
            pass


def resolve(mode: str, *, in_container: bool, environ: dict[str, str] | None = None) -> str:
    """Which mode `auto` means here (pure over its inputs)."""
    if mode != "auto":
        return mode
    env = os.environ if environ is None else environ
    from agent.systemd import under_systemd

    # a unit first: systemd may itself run in a container, and outlives the agent's unit
    if under_systemd(env):
        return "systemd"
    if in_container:
        return "container"
    return "process"


def watchdog_args(state_dir: Path, owner: str, config_path: str | None, describe: str) -> list[str]:
    args = ["--state-dir", str(state_dir), "--owner", owner, "--describe", describe]
    if config_path:
        args += ["--config", str(Path(config_path).resolve())]
    return args


def short_name(owner: str) -> str:
    token = owner.split(" ")[-1] or "x"
    return f"chaos-deadman-{token[:12]}"


def arm(
    mode: str,
    *,
    state_dir: Path,
    owner: str,
    config_path: str | None,
    docker: Any = None,
    agent_container: str = "",
) -> Armed:
    """Start the dead-man for the agent run whose lock says `owner`."""
    asked = mode
    mode = resolve(mode, in_container=bool(agent_container))
    name = short_name(owner)
    if mode == "container":
        if docker is None or not agent_container:
            raise ConfigError(
                "[agent] deadman = container needs the agent to run in a container",
                hint='use deadman = "auto" (or "process" on a plain host)',
            )
        from agent.adapters.docker_engine import sibling_spec

        agent = docker.inspect(agent_container)
        spec = sibling_spec(
            agent,
            entrypoint=[sys.executable, "-m", "agent.watchdog"],
            args=watchdog_args(state_dir, owner, config_path, f"container {name}"),
            labels={"chaos.agent": "true", LABEL_DEADMAN: owner.split(" ")[-1]},
        )
        docker.run_sibling(name, spec)
        return Armed("container", name, docker)
    argv = [sys.executable, "-m", "agent.watchdog"]
    if mode == "systemd":
        from agent.systemd import systemd_transient_argv

        unit = f"{name}.service"
        argv = systemd_transient_argv(
            unit, [*argv, *watchdog_args(state_dir, owner, config_path, f"systemd {unit}")]
        )
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=15,
            check=False,
        )
        if done.returncode == 0:
            return Armed("systemd", unit)
        if asked != "auto":
            raise OSError(f"systemd-run failed: {done.stderr.decode(errors='replace').strip()}")
        # auto: a detached process still survives a SIGKILL of the agent alone
        mode, argv = "process", [sys.executable, "-m", "agent.watchdog"]
    if mode != "process":
        raise ConfigError(f"[agent] deadman: unknown mode {mode!r} (one of {', '.join(MODES)})")
    proc = subprocess.Popen(
        [*argv, *watchdog_args(state_dir, owner, config_path, f"process {name}")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # survives a SIGKILL of the agent's process group
        close_fds=True,
    )
    return Armed("process", f"{name} (pid {proc.pid})", proc)
