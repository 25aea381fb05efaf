"""The narrow ports the container faults depend on, one per family.

A fault sees typed facts (`ContainerState`, `Endpoint`, `ListedContainer`) and a few
verbs, never the Engine's JSON; the Docker adapter (agent/adapters/docker_ports.py)
implements every port, and a test can implement them in a few lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from agent.model import ContainerState, Endpoint, ListedContainer


class ContainerLifecycle(Protocol):
    """kill, stop, pause, restart and their heals."""

    def state(self, container: str) -> ContainerState:
        """The container now; TargetGone when it no longer exists."""
        ...

    def start(self, container: str) -> None: ...

    def stop(self, container: str, timeout: float) -> None: ...

    def kill(self, container: str, signal: str) -> None: ...

    def restart(self, container: str, timeout: float) -> None: ...

    def pause(self, container: str) -> None: ...

    def unpause(self, container: str) -> None: ...


class NetworkAttachments(Protocol):
    """disconnect and its heal: a container's endpoints, taken off and put back."""

    def state(self, container: str) -> ContainerState: ...

    def disconnect(self, container: str, network: str) -> None: ...

    def connect(self, container: str, endpoint: Endpoint) -> None:
        """Attach with the endpoint's addresses, aliases, links and MAC (those it has)."""
        ...


class NamespaceTargets(Protocol):
    """The faults inside a network namespace (partition, loss, latency, jitter,
    bandwidth), the start-up sweep and the helper route (agent/faults/network/)."""

    def state(self, container: str) -> ContainerState:
        """The container now (identity, PID, addresses); TargetGone when it no longer exists."""
        ...

    def containers(self, label: str | None = None) -> list[ListedContainer]:
        """Every container (running or not), or those carrying the label (key or key=value)."""
        ...

    def own_id(self) -> str:
        """The agent's own container id, "" when it runs on the host."""
        ...

    def run_helper(self, spec: dict[str, Any], about: str) -> str:
        """Create and start a helper container (its create body); its id."""
        ...

    def exec_run(self, container: str, argv: Sequence[str]) -> tuple[int, str, str]:
        """argv (never a shell) in a running container: exit code, stdout, stderr."""
        ...

    def remove(self, container: str) -> None: ...
