"""partition and loss: iptables chains in the target's own network namespace, tagged from the fault id."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

from agent.adapters import netns
from agent.adapters.docker_engine import group_of, own_container_id
from agent.errors import AgentError, FaultFailed
from agent.fault_params import choice_problem, missing_partner, param, percent_problem
from agent.faults.network.common import NetnsFault, networks_of
from agent.model import ActiveFault, Target


class _IptablesFault(NetnsFault):
    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        ingress, egress = netns.chain_names(fault_id)
        return (
            f"iptables:{ingress}",
            f"iptables:{egress}",
            f"comment:{netns.comment_of(fault_id)}",
        )

    def _apply(self, ns: netns.NetnsHandle, record: ActiveFault) -> dict[str, Any]:
        info = self.docker.inspect(record.target_id)
        caps = self.caps()
        families = ["iptables"]
        if caps.ip6tables is None and any(
            (n or {}).get("GlobalIPv6Address") for n in networks_of(info).values()
        ):
            families.append("ip6tables")
        exempt = self._exempt_ips()
        facts: dict[str, Any] = {"families": families}
        facts["preexisting_filter"] = [f for f in families if netns.filter_table_exists(ns, f)]
        for family in families:
            v6 = family == "ip6tables"
            plan = self._plan(
                record, info, v6=v6, exempt=[ip for ip in exempt if (":" in ip) == v6]
            )
            netns.install(ns, family, record.fault_id, plan)
        return facts

    def _undo(self, ns: netns.NetnsHandle, record: ActiveFault) -> list[str]:
        removed: list[str] = []
        keep = record.extra.get("preexisting_filter", [])
        for family in netns.FAMILIES:  # both, always: extra may be empty after a crash
            removed += netns.remove(ns, family, record.fault_id)
            if family not in keep:
                dropped = netns.drop_empty_filter_table(ns, family)
                if dropped and removed:
                    removed.append(dropped)
        return removed

    def _plan(
        self, record: ActiveFault, info: Mapping[str, Any], *, v6: bool, exempt: Sequence[str]
    ) -> netns.ChainPlan:
        raise NotImplementedError

    def _exempt_ips(self) -> list[str]:
        """The agent's control path: its own container's addresses and the coordinator."""
        ips: list[str] = []
        own = own_container_id()
        if own:
            try:
                for net in networks_of(self.docker.inspect(own)).values():
                    ips += [
                        a
                        for a in (
                            (net or {}).get("IPAddress"),
                            (net or {}).get("GlobalIPv6Address"),
                        )
                        if a
                    ]
            except AgentError:
                pass
        coord = self.config.coordinator if self.config else None
        if coord and coord.enabled and coord.host:
            try:
                for *_, addr in socket.getaddrinfo(
                    coord.host, coord.port, proto=socket.IPPROTO_TCP
                ):
                    ips.append(str(addr[0]))
            except OSError:
                pass
        return sorted(set(ips))


def _base(direction: str, exempt: Sequence[str]) -> list[netns.RuleSpec]:
    """Loopback and the agent's control path are never touched."""
    iface, addr = ("-i", "-s") if direction == "in" else ("-o", "-d")
    rules = [netns.RuleSpec((iface, "lo", "-j", "RETURN"))]
    rules += [netns.RuleSpec((addr, ip, "-j", "RETURN")) for ip in exempt]
    return rules


def _drop_peers(direction: str, peers: Sequence[str]) -> list[netns.RuleSpec]:
    addr = "-s" if direction == "in" else "-d"
    return [netns.RuleSpec((addr, ip, "-j", "DROP")) for ip in peers]


def _published_ports(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    ports = ((info.get("NetworkSettings") or {}).get("Ports")) or {}
    out = []
    for key, bindings in ports.items():
        if bindings and "/" in key:
            port, proto = key.split("/", 1)
            if port.isdigit() and proto in ("tcp", "udp", "sctp"):
                out.append((port, proto))
    return sorted(out)


def _peer_ips(entries: Sequence[Mapping[str, Any]], *, v6: bool) -> list[str]:
    ips = []
    for entry in entries:
        for net in ((entry.get("NetworkSettings") or {}).get("Networks") or {}).values():
            addr = (net or {}).get("GlobalIPv6Address" if v6 else "IPAddress")
            if addr:
                ips.append(str(addr))
    return sorted(set(ips))


class Partition(_IptablesFault):
    """Cut the target off: `isolate` (everything), `from` (one group), `split` (its group in two).

    Every packet to and from the cut-off peers is dropped, established connections
    included (the chains match every packet, not only new ones).
    """

    name = "partition"

    def _capability(self) -> str | None:
        return self.caps().iptables

    def describe(self, record: ActiveFault) -> str:
        mode = param(record.params, "partition", "mode")
        extra = f" from {record.params.get('from_group')}" if mode == "from" else ""
        seconds = record.deadline - record.injected_at
        return f"partition {record.target_name} ({mode}{extra}) for {seconds:g}s"

    def _plan(
        self, record: ActiveFault, info: Mapping[str, Any], *, v6: bool, exempt: Sequence[str]
    ) -> netns.ChainPlan:
        params = {k: param(record.params, "partition", k) for k in ("mode", "from_group")}
        mode = str(params["mode"])
        partner = missing_partner("partition", params)
        why = choice_problem("partition", "mode", mode) or (partner[1] if partner else "")
        if why:
            raise FaultFailed(f"partition: {why}")
        plan = netns.ChainPlan(_base("in", exempt), _base("out", exempt))
        if mode == "isolate":
            if not param(record.params, "partition", "host_ports"):
                self._keep_published_ports(plan, info, v6=v6)
            plan.ingress.append(netns.RuleSpec(("-j", "DROP")))
            plan.egress.append(netns.RuleSpec(("-j", "DROP")))
            return plan
        if mode == "from":
            group = str(params["from_group"])
            peers = [e for e in self._running() if self._group(e) == group]
        else:  # split
            peers = self._other_side(record)
        ips = [
            ip
            for ip in _peer_ips([p for p in peers if p.get("Id") != record.target_id], v6=v6)
            if ip not in exempt
        ]
        if not ips and not v6:
            raise FaultFailed(f"partition {mode}: no running peer to cut off")
        plan.ingress += _drop_peers("in", ips)
        plan.egress += _drop_peers("out", ips)
        return plan

    def _keep_published_ports(
        self, plan: netns.ChainPlan, info: Mapping[str, Any], *, v6: bool
    ) -> None:
        """host_ports = false: published ports stay reachable from the host and outside,
        not from the peers on the container's own networks."""
        nets = networks_of(info).values()
        gateways = sorted(
            {n.get("IPv6Gateway" if v6 else "Gateway") for n in nets if n} - {None, ""}
        )
        subnets = []
        for n in nets:
            addr = (n or {}).get("GlobalIPv6Address" if v6 else "IPAddress")
            plen = (n or {}).get("GlobalIPv6PrefixLen" if v6 else "IPPrefixLen")
            if addr and plen:
                subnets.append(f"{addr}/{plen}")
        ports = _published_ports(info)
        for gw in gateways:
            for port, proto in ports:
                plan.ingress.append(
                    netns.RuleSpec(("-s", gw, "-p", proto, "--dport", port, "-j", "RETURN"))
                )
                plan.egress.append(
                    netns.RuleSpec(("-d", gw, "-p", proto, "--sport", port, "-j", "RETURN"))
                )
        for subnet in subnets:
            plan.ingress.append(netns.RuleSpec(("-s", subnet, "-j", "DROP")))
            plan.egress.append(netns.RuleSpec(("-d", subnet, "-j", "DROP")))
        for port, proto in ports:
            plan.ingress.append(netns.RuleSpec(("-p", proto, "--dport", port, "-j", "RETURN")))
            plan.egress.append(netns.RuleSpec(("-p", proto, "--sport", port, "-j", "RETURN")))

    def _running(self) -> list[dict[str, Any]]:
        return [e for e in self.docker.list_containers() if e.get("State") == "running"]

    @staticmethod
    def _group(entry: Mapping[str, Any]) -> str:
        names = entry.get("Names") or [str(entry.get("Id", ""))[:12]]
        return group_of(dict(entry.get("Labels") or {}), str(names[0]).lstrip("/"))

    def _other_side(self, record: ActiveFault) -> list[dict[str, Any]]:
        """The group's running members sorted by name, cut in two halves; the other half."""
        members = sorted(
            (e for e in self._running() if self._group(e) == record.group),
            key=lambda e: (str((e.get("Names") or [""])[0]), str(e.get("Id"))),
        )
        ids = [e.get("Id") for e in members]
        if record.target_id not in ids or len(members) < 2:
            raise FaultFailed(f"partition split: group {record.group} needs 2 running members")
        half = (len(members) + 1) // 2
        first, second = members[:half], members[half:]
        return second if record.target_id in [e.get("Id") for e in first] else first


class Loss(_IptablesFault):
    """Drop `percent` % of the packets in each direction (iptables statistic, random mode)."""

    name = "loss"

    def _capability(self) -> str | None:
        return self.caps().statistic

    def describe(self, record: ActiveFault) -> str:
        return (
            f"drop {float(param(record.params, 'loss', 'percent')):g}% of packets of "
            f"{record.target_name} for {record.deadline - record.injected_at:g}s"
        )

    def _plan(
        self, record: ActiveFault, info: Mapping[str, Any], *, v6: bool, exempt: Sequence[str]
    ) -> netns.ChainPlan:
        percent = float(param(record.params, "loss", "percent"))
        problem = percent_problem(percent)
        if problem:
            raise FaultFailed(f"loss percent: {problem}")
        drop = (
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            f"{percent / 100:.5f}",
            "-j",
            "DROP",
        )
        plan = netns.ChainPlan(_base("in", exempt), _base("out", exempt))
        plan.ingress.append(netns.RuleSpec(drop))
        plan.egress.append(netns.RuleSpec(drop))
        return plan
