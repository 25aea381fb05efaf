"""How the extension talks to chaos-agent: its CLI, as an argument list, never a shell.

Which agent: the experiment's configuration `chaos_agent_command` (a path, or a list such
as ["/opt/venv/bin/chaos-agent"]), else $CHAOS_AGENT_BIN, else `chaos-agent` on PATH.
Which config: `chaos_agent_config` in the configuration, else the agent's own default
($CHAOS_AGENT_CONFIG, then its embedded default).
"""

import json
import os
import shutil
import subprocess
from typing import Any

from chaoslib.exceptions import ActivityFailed, InvalidActivity
from chaoslib.types import Configuration

TIMEOUT_S = 120.0


def command(configuration: Configuration | None) -> list[str]:
    configured = (configuration or {}).get("chaos_agent_command") or os.environ.get(
        "CHAOS_AGENT_BIN", ""
    )
    if isinstance(configured, list) and configured and all(isinstance(a, str) for a in configured):
        return list(configured)
    if isinstance(configured, str) and configured:
        return [configured]
    if configured:
        raise InvalidActivity("chaos_agent_command must be a path or a list of strings")
    found = shutil.which("chaos-agent")
    if not found:
        raise InvalidActivity(
            "chaos-agent not found: put it on PATH, set $CHAOS_AGENT_BIN, or set "
            "chaos_agent_command in the experiment's configuration"
        )
    return [found]


def run(
    configuration: Configuration | None, *args: str, timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run `chaos-agent ARGS [--config PATH]`; a non-zero exit is ActivityFailed."""
    argv = [*command(configuration), *args]
    config_path = (configuration or {}).get("chaos_agent_config")
    if config_path:
        argv += ["--config", str(config_path)]
    try:
        proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
            argv, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ActivityFailed(f"chaos-agent {args[0]}: {exc}") from None
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise ActivityFailed(f"chaos-agent {' '.join(args[:1])} failed: {line}")
    return proc


def run_json(configuration: Configuration | None, *args: str) -> Any:
    out = run(configuration, *args, "--json").stdout
    try:
        return json.loads(out)
    except ValueError:
        raise ActivityFailed(f"chaos-agent {args[0]} --json: not JSON: {out[:200]!r}") from None


def config_json(configuration: Configuration | None) -> dict[str, Any]:
    """The agent's effective configuration (`chaos-agent config show`)."""
    out = run(configuration, "config", "show").stdout
    try:
        return json.loads(out)
    except ValueError:
        raise ActivityFailed(f"chaos-agent config show: not JSON: {out[:200]!r}") from None
