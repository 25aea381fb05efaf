"""disconnect: take a container off a Docker network, heal by reconnecting the same endpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent.adapters.docker_engine import DockerEngine
from agent.errors import AgentError, FaultFailed, IdentityChanged, TargetGone
from agent.faults.network.common import changed_reason, is_same_instance, networks_of
from agent.model import ActiveFault, HealOutcome, Target, TargetKind

ENDPOINT_PREFIX = "endpoint:"


def endpoint_of(network: str, net: Mapping[str, Any]) -> dict[str, Any]:
    ipam = net.get("IPAMConfig") or {}
    return {
        "network": network,
        "network_id": net.get("NetworkID", ""),
        "static_ipv4": ipam.get("IPv4Address") or "",
        "static_ipv6": ipam.get("IPv6Address") or "",
        "ipv4": net.get("IPAddress") or "",
        "ipv6": net.get("GlobalIPv6Address") or "",
        "mac": net.get("MacAddress") or "",
        "aliases": sorted(net.get("Aliases") or []),
        "links": sorted(net.get("Links") or []),
        "link_local_ips": sorted(ipam.get("LinkLocalIPs") or []),
        "driver_opts": dict(net.get("DriverOpts") or {}),
    }


class Disconnect:
    """`docker network disconnect`, healed by a connect with the exact endpoint.

    The endpoint (aliases incl. the compose service name, static and current
    addresses, MAC, links) is captured by `artifacts()`, i.e. written to the ledger
    before the disconnect, so heal works after a crash. A restart does not undo a
    disconnect (it is container configuration), so heal reconnects a restarted
    container too; a recreated one (new id) is "gone".
    """

    name = "disconnect"
    kind: TargetKind = "container"

    def __init__(self, docker: DockerEngine) -> None:
        self.docker = docker

    def unavailable(self) -> str | None:
        return None

    def refuse(self, target: Target) -> str | None:
        mode = target.network_mode
        if mode in ("host", "none") or mode.startswith("container:"):
            return f"network_mode {mode.split(':')[0]}: no own endpoint to disconnect"
        return None

    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        nets = networks_of(self.docker.inspect(target.id))
        wanted = str(params.get("network") or "")
        if wanted and wanted not in nets:
            raise FaultFailed(f"{target.name} is not connected to network {wanted!r}")
        chosen = [wanted] if wanted else sorted(nets)
        if not chosen:
            raise FaultFailed(f"{target.name} is connected to no network")
        return tuple(
            ENDPOINT_PREFIX + json.dumps(endpoint_of(n, nets[n]), sort_keys=True) for n in chosen
        )

    @staticmethod
    def endpoints(record: ActiveFault) -> list[dict[str, Any]]:
        out = []
        for item in record.artifacts:
            if item.startswith(ENDPOINT_PREFIX):
                out.append(json.loads(item[len(ENDPOINT_PREFIX) :]))
        return out

    def describe(self, record: ActiveFault) -> str:
        nets = ", ".join(e["network"] for e in self.endpoints(record))
        seconds = record.deadline - record.injected_at
        return f"disconnect {record.target_name} from {nets} for {seconds:g}s"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        info = self.docker.inspect(record.target_id)
        if not is_same_instance(info, record):
            raise IdentityChanged(changed_reason(info, record))
        done = []
        for ep in self.endpoints(record):
            self.docker.disconnect(record.target_id, ep["network_id"] or ep["network"])
            done.append(ep["network"])
        return {"disconnected": done}

    def heal(self, record: ActiveFault) -> HealOutcome:
        try:
            info = self.docker.inspect(record.target_id)
            reconnected = []
            for ep in self.endpoints(record):
                if ep["network"] in networks_of(info):
                    continue
                self._connect(record.target_id, ep)
                reconnected.append(ep["network"])
            info = self.docker.inspect(record.target_id)
            problems = [p for ep in self.endpoints(record) for p in _mismatch(info, ep)]
            notes = [p for p in problems if p.startswith("MAC")]
            problems = [p for p in problems if not p.startswith("MAC")]
        except TargetGone:
            return HealOutcome(True, "gone", f"{record.target_name} no longer exists")
        except AgentError as exc:
            return HealOutcome(False, "failed", exc.one_line())
        if problems:
            return HealOutcome(False, "failed", "; ".join(problems))
        if reconnected:
            # A MAC the daemon cannot set again (Engine API < 1.44 derives it from the IP)
            # is reported, not retried: a retry could not change it.
            note = f" ({'; '.join(notes)})" if notes else ""
            return HealOutcome(True, "healed", f"reconnected to {', '.join(reconnected)}{note}")
        return HealOutcome(True, "already", "already connected")

    def _connect(self, container: str, ep: Mapping[str, Any]) -> None:
        network = ep["network_id"] or ep["network"]
        static = bool(ep["static_ipv4"] or ep["static_ipv6"])
        kwargs: dict[str, Any] = {
            "ipv4_address": ep["static_ipv4"] or ep["ipv4"] or None,
            "ipv6_address": ep["static_ipv6"] or ep["ipv6"] or None,
            "aliases": list(ep["aliases"]) or None,
            "links": [tuple(link.split(":", 1)) for link in ep["links"]] or None,
            "link_local_ips": list(ep["link_local_ips"]) or None,
            "driver_opt": dict(ep["driver_opts"]) or None,
            "mac_address": ep["mac"] or None,
        }
        try:
            self.docker.connect(container, network, **kwargs)
        except FaultFailed:
            if static:
                raise
            # A dynamic address can be re-requested only on networks with a user-configured
            # subnet (and the default bridge takes no aliases): let Docker allocate it again.
            kwargs["ipv4_address"] = kwargs["ipv6_address"] = None
            if ep["network"] == "bridge":
                kwargs["aliases"] = None
            self.docker.connect(container, network, **kwargs)


def _mismatch(info: Mapping[str, Any], ep: Mapping[str, Any]) -> list[str]:
    net = networks_of(info).get(ep["network"])
    if net is None:
        return [f"not connected to {ep['network']}"]
    ipam = net.get("IPAMConfig") or {}
    out = []
    if ep["static_ipv4"] and ipam.get("IPv4Address") != ep["static_ipv4"]:
        out.append(f"static IPv4 {ep['static_ipv4']} not restored on {ep['network']}")
    if ep["static_ipv6"] and ipam.get("IPv6Address") != ep["static_ipv6"]:
        out.append(f"static IPv6 {ep['static_ipv6']} not restored on {ep['network']}")
    missing = set(ep["aliases"]) - set(net.get("Aliases") or [])
    if missing:
        out.append(f"aliases {sorted(missing)} not restored on {ep['network']}")
    running = bool((info.get("State") or {}).get("Running"))
    if running and ep["mac"] and net.get("MacAddress") and net.get("MacAddress") != ep["mac"]:
        out.append(f"MAC {ep['mac']} not restored on {ep['network']}")
    return out
