"""disconnect: take a container off a Docker network, heal by reconnecting the same endpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from agent.adapters.docker_ports import endpoint_of
from agent.errors import AgentError, FaultFailed, IdentityChanged, TargetGone
from agent.faults.ports import NetworkAttachments
from agent.model import ActiveFault, ContainerState, Endpoint, HealOutcome, Target, TargetKind

ENDPOINT_PREFIX = "endpoint:"

__all__ = ["ENDPOINT_PREFIX", "Disconnect", "endpoint_of"]


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

    def __init__(self, docker: NetworkAttachments) -> None:
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
        nets = self.docker.state(target.id).networks
        wanted = str(params.get("network") or "")
        if wanted and wanted not in nets:
            raise FaultFailed(f"{target.name} is not connected to network {wanted!r}")
        chosen = [wanted] if wanted else sorted(nets)
        if not chosen:
            raise FaultFailed(f"{target.name} is connected to no network")
        return tuple(
            ENDPOINT_PREFIX + json.dumps(nets[n].to_json(), sort_keys=True) for n in chosen
        )

    @staticmethod
    def endpoints(record: ActiveFault) -> list[Endpoint]:
        return [
            Endpoint.from_json(json.loads(item[len(ENDPOINT_PREFIX) :]))
            for item in record.artifacts
            if item.startswith(ENDPOINT_PREFIX)
        ]

    def describe(self, record: ActiveFault) -> str:
        nets = ", ".join(e.network for e in self.endpoints(record))
        seconds = record.deadline - record.injected_at
        return f"disconnect {record.target_name} from {nets} for {seconds:g}s"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        st = self.docker.state(record.target_id)
        if not st.same_running_instance(record):
            raise IdentityChanged(st.changed_reason(record))
        done = []
        for ep in self.endpoints(record):
            self.docker.disconnect(record.target_id, ep.network_id or ep.network)
            done.append(ep.network)
        return {"disconnected": done}

    def heal(self, record: ActiveFault) -> HealOutcome:
        try:
            st = self.docker.state(record.target_id)
            reconnected = []
            for ep in self.endpoints(record):
                if ep.network in st.networks:
                    continue
                self._connect(record.target_id, ep)
                reconnected.append(ep.network)
            st = self.docker.state(record.target_id)
            problems = [p for ep in self.endpoints(record) for p in _mismatch(st, ep)]
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

    def _connect(self, container: str, ep: Endpoint) -> None:
        try:
            self.docker.connect(container, ep)
        except FaultFailed:
            if ep.static_ipv4 or ep.static_ipv6:
                raise
            # A dynamic address can be re-requested only on networks with a user-configured
            # subnet (and the default bridge takes no aliases): let Docker allocate it again.
            aliases = () if ep.network == "bridge" else ep.aliases
            self.docker.connect(container, replace(ep, ipv4="", ipv6="", aliases=aliases))


def _mismatch(st: ContainerState, ep: Endpoint) -> list[str]:
    now = st.networks.get(ep.network)
    if now is None:
        return [f"not connected to {ep.network}"]
    out = []
    if ep.static_ipv4 and now.static_ipv4 != ep.static_ipv4:
        out.append(f"static IPv4 {ep.static_ipv4} not restored on {ep.network}")
    if ep.static_ipv6 and now.static_ipv6 != ep.static_ipv6:
        out.append(f"static IPv6 {ep.static_ipv6} not restored on {ep.network}")
    missing = set(ep.aliases) - set(now.aliases)
    if missing:
        out.append(f"aliases {sorted(missing)} not restored on {ep.network}")
    if st.running and ep.mac and now.mac and now.mac != ep.mac:
        out.append(f"MAC {ep.mac} not restored on {ep.network}")
    return out
