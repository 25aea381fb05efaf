"""How namespace faults enter a container's network namespace on this engine.

nsenter on a pinned fd (`open_pinned`) where the agent can, or a short-lived helper
container joining the namespace through the node's own engine (Swarm tasks; see
agent/faults/network/helper.py and docs/swarm.md). Faults and the start-up sweep use the
same route.
"""

from __future__ import annotations

from agent.adapters import netns
from agent.errors import AgentError, Unsupported
from agent.faults.network.common import open_pinned, pid_namespace_reason
from agent.faults.network.helper import (
    helper_capabilities,
    open_current_via_helper,
    open_via_helper,
    remove_stale_helpers,
)
from agent.faults.network.sweep import open_current_pinned, sweep_network_leftovers
from agent.faults.ports import NamespaceTargets
from agent.model import ActiveFault
from agent.swarm import SwarmCluster


class NetnsRoute:
    """How namespace faults enter a container's network namespace on this engine.

    Outside Swarm: nsenter on a pinned fd (`open_pinned`), as always. On a Swarm node:
    nsenter when this agent can (host PID namespace, tools, capabilities) *and* the
    container's PID is its process here; otherwise a helper container joining the
    container's namespace through the node's own engine. The capabilities are then
    probed in a helper too (the agent's own container may have none of them).
    """

    def __init__(self, targets: NamespaceTargets, cluster: SwarmCluster) -> None:
        self.targets = targets
        self.cluster = cluster
        self._swarm: bool | None = None
        self._local: bool | None = None
        self._caps: netns.Capabilities | None = None

    def swarm(self) -> bool:
        if self._swarm is None:
            try:
                self._swarm = self.cluster.active()
            except AgentError:
                return False  # the engine is away: ask again next time
        return self._swarm

    def local(self) -> bool:
        """Can this agent enter namespaces itself (nsenter route)?"""
        if self._local is None:
            found = netns.capabilities()
            usable = found.iptables is None or found.tc is None
            self._local = usable and pid_namespace_reason(self.targets) is None
        return self._local

    def caps(self) -> netns.Capabilities:
        if not self.swarm() or self.local():
            return netns.capabilities()
        if self._caps is None:
            self._caps = helper_capabilities(self.targets)
        return self._caps

    def open(self, targets: NamespaceTargets, record: ActiveFault) -> netns.NetnsHandle:
        if not self.swarm():
            return open_pinned(targets, record)
        if self.local():
            try:
                return open_pinned(targets, record)
            except Unsupported:
                pass  # its PID is not its process here: through the node's engine
        return open_via_helper(targets, record)

    def open_current(
        self, targets: NamespaceTargets, container_id: str
    ) -> netns.NetnsHandle | None:
        handle = open_current_pinned(targets, container_id) if self.local() else None
        if handle is None and self.swarm():
            handle = open_current_via_helper(targets, container_id)
        return handle

    def sweep(self, owned: set[str], only: set[str]) -> list[str]:
        """The start-up sweep through the same route (plus stale helper containers)."""
        removed = remove_stale_helpers(self.targets) if self.swarm() else []
        return removed + sweep_network_leftovers(
            self.targets, owned, only=only, open_current=self.open_current, caps=self.caps
        )
