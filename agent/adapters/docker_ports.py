"""The container faults' ports over the Docker adapter: typed readers, verbs passed through.

`container_state` and `endpoint_of` read the Engine's inspect JSON once, here, into
agent.model's `ContainerState` and `Endpoint`; faults never see the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.adapters.docker_engine import DockerEngine
from agent.model import ContainerState, Endpoint


def endpoint_of(network: str, net: Mapping[str, Any]) -> Endpoint:
    """One entry of NetworkSettings.Networks."""
    ipam = net.get("IPAMConfig") or {}
    return Endpoint(
        network=network,
        network_id=str(net.get("NetworkID") or ""),
        static_ipv4=str(ipam.get("IPv4Address") or ""),
        static_ipv6=str(ipam.get("IPv6Address") or ""),
        ipv4=str(net.get("IPAddress") or ""),
        ipv6=str(net.get("GlobalIPv6Address") or ""),
        mac=str(net.get("MacAddress") or ""),
        aliases=tuple(sorted(net.get("Aliases") or [])),
        links=tuple(sorted(net.get("Links") or [])),
        link_local_ips=tuple(sorted(ipam.get("LinkLocalIPs") or [])),
        driver_opts=dict(net.get("DriverOpts") or {}),
    )


def container_state(info: Mapping[str, Any]) -> ContainerState:
    """An inspect answer as the faults read it."""
    state = info.get("State") or {}
    nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
    return ContainerState(
        id=str(info.get("Id") or ""),
        started_at=str(state.get("StartedAt") or ""),
        running=bool(state.get("Running")),
        paused=bool(state.get("Paused")),
        restarting=bool(state.get("Restarting")),
        status=str(state.get("Status") or ""),
        pid=int(state.get("Pid") or 0),
        networks={name: endpoint_of(name, net or {}) for name, net in nets.items()},
    )


def connect_args(ep: Endpoint) -> dict[str, Any]:
    """docker-py's connect_container_to_network keywords for an endpoint."""
    return {
        "ipv4_address": ep.static_ipv4 or ep.ipv4 or None,
        "ipv6_address": ep.static_ipv6 or ep.ipv6 or None,
        "aliases": list(ep.aliases) or None,
        "links": [tuple(link.split(":", 1)) for link in ep.links] or None,
        "link_local_ips": list(ep.link_local_ips) or None,
        "driver_opt": dict(ep.driver_opts) or None,
        "mac_address": ep.mac or None,
    }


class DockerContainers:
    """ContainerLifecycle and NetworkAttachments (agent/faults/ports.py) on a DockerEngine."""

    def __init__(self, docker: DockerEngine) -> None:
        self.docker = docker

    def state(self, container: str) -> ContainerState:
        return container_state(self.docker.inspect(container))

    def start(self, container: str) -> None:
        self.docker.start(container)

    def stop(self, container: str, timeout: float) -> None:
        self.docker.stop(container, timeout)

    def kill(self, container: str, signal: str) -> None:
        self.docker.kill(container, signal)

    def restart(self, container: str, timeout: float) -> None:
        self.docker.restart(container, timeout)

    def pause(self, container: str) -> None:
        self.docker.pause(container)

    def unpause(self, container: str) -> None:
        self.docker.unpause(container)

    def disconnect(self, container: str, network: str) -> None:
        self.docker.disconnect(container, network)

    def connect(self, container: str, endpoint: Endpoint) -> None:
        network = endpoint.network_id or endpoint.network
        self.docker.connect(container, network, **connect_args(endpoint))
