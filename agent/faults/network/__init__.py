"""Network faults on containers: partition, loss, latency, jitter, bandwidth, disconnect.

partition/loss add iptables chains in the target's own network namespace; latency,
jitter and bandwidth add a root qdisc with our handle on its interfaces; disconnect
takes the container off a Docker network and reconnects it with the same endpoint.
Everything is tagged from the fault id (see agent.adapters.netns), so heal removes
exactly what was added, from the ledger record alone, and the start-up sweep finds
leftovers that no record owns.

Identity is pinned: the namespace fd is opened from a freshly inspected PID, and the
container's id and State.StartedAt must equal the record. A restarted container has a
new namespace (our rules died with the old one): heal reports "environment" and
never touches the new instance. A vanished container is "gone".

Containers that share a network namespace (network_mode container:<id>, compose
`service:X`) are refused on both sides: a rule in X's namespace would hit all of them.
"""

from __future__ import annotations

from agent.adapters.docker_engine import DockerEngine
from agent.adapters.docker_ports import DockerContainers
from agent.config import Config
from agent.faults.base import Fault
from agent.faults.network.common import NetnsFault, open_pinned, shared_namespace_reason
from agent.faults.network.disconnect import ENDPOINT_PREFIX, Disconnect, endpoint_of
from agent.faults.network.iptables import Loss, Partition
from agent.faults.network.qdisc import Bandwidth, Jitter, Latency
from agent.faults.network.sweep import sweep_network_leftovers

__all__ = [
    "ENDPOINT_PREFIX",
    "Bandwidth",
    "Disconnect",
    "Jitter",
    "Latency",
    "Loss",
    "NetnsFault",
    "Partition",
    "endpoint_of",
    "network_faults",
    "open_pinned",
    "shared_namespace_reason",
    "sweep_network_leftovers",
]


def network_faults(docker: DockerEngine, config: Config) -> list[Fault]:
    """Every network fault; `unavailable()` says which this host cannot do."""
    containers = DockerContainers(docker)
    return [
        Partition(containers, config),
        Loss(containers, config),
        Latency(containers, config),
        Jitter(containers, config),
        Bandwidth(containers, config),
        Disconnect(containers),
    ]
