"""The faults' ports over the Docker adapter: typed readers, verbs passed through.

`container_state`, `endpoint_of` and `listed_container` read the Engine's inspect and
list JSON once, here, into agent.model's `ContainerState`, `Endpoint` and
`ListedContainer`; faults never see the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.adapters.docker_engine import DockerEngine, group_of, own_container_id
from agent.model import ContainerState, Endpoint, ListedContainer, NetAddress


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


def addresses_of(nets: Mapping[str, Any]) -> tuple[NetAddress, ...]:
    """Each network's IPv4 and global IPv6 address with prefix length and gateway."""
    out = []
    for name, net in nets.items():
        if not net:
            continue
        for v6, (ip_key, len_key, gw_key) in (
            (False, ("IPAddress", "IPPrefixLen", "Gateway")),
            (True, ("GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPv6Gateway")),
        ):
            ip, gateway = str(net.get(ip_key) or ""), str(net.get(gw_key) or "")
            if ip or gateway:
                out.append(NetAddress(name, v6, ip, int(net.get(len_key) or 0), gateway))
    return tuple(out)


def published_ports(info: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(port, protocol) of every port bound on the host, sorted."""
    ports = ((info.get("NetworkSettings") or {}).get("Ports")) or {}
    out = []
    for key, bindings in ports.items():
        if bindings and "/" in key:
            port, proto = key.split("/", 1)
            if port.isdigit() and proto in ("tcp", "udp", "sctp"):
                out.append((port, proto))
    return tuple(sorted(out))


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
        name=str(info.get("Name") or "").lstrip("/"),
        image=str(info.get("Image") or ""),
        labels=dict((info.get("Config") or {}).get("Labels") or {}),
        pid_mode=str((info.get("HostConfig") or {}).get("PidMode") or ""),
        addresses=addresses_of(nets),
        published=published_ports(info),
    )


def listed_container(entry: Mapping[str, Any]) -> ListedContainer:
    """A list entry (GET /containers/json) as the namespace faults read it."""
    cid = str(entry.get("Id") or "")
    labels = dict(entry.get("Labels") or {})
    name = str((entry.get("Names") or [cid[:12]])[0]).lstrip("/")
    nets = [n for n in ((entry.get("NetworkSettings") or {}).get("Networks") or {}).values() if n]
    return ListedContainer(
        id=cid,
        name=name,
        group=group_of(labels, name),
        running=entry.get("State") == "running",
        network_mode=str((entry.get("HostConfig") or {}).get("NetworkMode", "")),
        created=float(entry.get("Created") or 0),
        labels=labels,
        ipv4=tuple(str(n["IPAddress"]) for n in nets if n.get("IPAddress")),
        ipv6=tuple(str(n["GlobalIPv6Address"]) for n in nets if n.get("GlobalIPv6Address")),
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
    """ContainerLifecycle, NetworkAttachments and NamespaceTargets (agent/faults/ports.py)
    on a DockerEngine."""

    def __init__(self, docker: DockerEngine) -> None:
        self.docker = docker

    def state(self, container: str) -> ContainerState:
        return container_state(self.docker.inspect(container))

    def containers(self, label: str | None = None) -> list[ListedContainer]:
        return [listed_container(e) for e in self.docker.list_containers(label)]

    def own_id(self) -> str:
        return own_container_id()

    def run_helper(self, spec: dict[str, Any], about: str) -> str:
        return self.docker.run_helper(spec, about)

    def exec_run(self, container: str, argv: Sequence[str]) -> tuple[int, str, str]:
        return self.docker.exec_run(container, argv)

    def remove(self, container: str) -> None:
        self.docker.remove(container)

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
