"""The narrow ports the container faults depend on, one per family.

A fault sees typed facts (`ContainerState`, `Endpoint`) and a few verbs, never the
Engine's JSON; the Docker adapter (agent/adapters/docker_ports.py) implements both
ports, and a test can implement them in a few lines.
"""

from __future__ import annotations

from typing import Protocol

from agent.model import ContainerState, Endpoint


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
