"""partition and loss: iptables chains in the target's own network namespace, tagged from the fault id."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

from agent.adapters import netns
from agent.errors import AgentError, FaultFailed
from agent.fault_params import choice_problem, missing_partner, param, percent_problem
from agent.faults.network.common import NetnsFault
from agent.model import ActiveFault, ContainerState, ListedContainer, Target


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
        st = self.targets.state(record.target_id)
        caps = self.caps()
        families = ["iptables"]
        if caps.ip6tables is None and any(ep.ipv6 for ep in st.networks.values()):
            families.append("ip6tables")
        exempt = self._exempt_ips()
        facts: dict[str, Any] = {"families": families}
        facts["preexisting_filter"] = [f for f in families if netns.filter_table_exists(ns, f)]
        for family in families:
            v6 = family == "ip6tables"
            plan = self._plan(record, st, v6=v6, exempt=[ip for ip in exempt if (":" in ip) == v6])
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
        self, record: ActiveFault, st: ContainerState, *, v6: bool, exempt: Sequence[str]
    ) -> netns.ChainPlan:
        raise NotImplementedError

    def _exempt_ips(self) -> list[str]:
        """The agent's control path: its own container's addresses and the coordinator."""
        ips: list[str] = []
        own = self.targets.own_id()
        if own:
            try:
                for ep in self.targets.state(own).networks.values():
                    ips += [a for a in (ep.ipv4, ep.ipv6) if a]
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


def _peer_ips(peers: Sequence[ListedContainer], *, v6: bool) -> list[str]:
    return sorted({ip for peer in peers for ip in (peer.ipv6 if v6 else peer.ipv4)})


def _keep_published_ports(plan: netns.ChainPlan, st: ContainerState, *, v6: bool) -> None:
    """host_ports = false: published ports stay reachable from the host and outside,
    not from the peers on the container's own networks."""
    addresses = [a for a in st.addresses if a.v6 == v6]
    gateways = sorted({a.gateway for a in addresses} - {""})
    subnets = [f"{a.ip}/{a.prefix}" for a in addresses if a.ip and a.prefix]
    ports = st.published
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
        self, record: ActiveFault, st: ContainerState, *, v6: bool, exempt: Sequence[str]
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
                _keep_published_ports(plan, st, v6=v6)
            plan.ingress.append(netns.RuleSpec(("-j", "DROP")))
            plan.egress.append(netns.RuleSpec(("-j", "DROP")))
            return plan
        if mode == "from":
            group = str(params["from_group"])
            peers = [c for c in self._running() if c.group == group]
        else:  # split
            peers = self._other_side(record)
        ips = [
            ip
            for ip in _peer_ips([p for p in peers if p.id != record.target_id], v6=v6)
            if ip not in exempt
        ]
        if not ips and not v6:
            raise FaultFailed(f"partition {mode}: no running peer to cut off")
        plan.ingress += _drop_peers("in", ips)
        plan.egress += _drop_peers("out", ips)
        return plan

    def _running(self) -> list[ListedContainer]:
        return [c for c in self.targets.containers() if c.running]

    def _other_side(self, record: ActiveFault) -> list[ListedContainer]:
        """The group's running members sorted by name, cut in two halves; the other half."""
        members = sorted(
            (c for c in self._running() if c.group == record.group), key=lambda c: (c.name, c.id)
        )
        if record.target_id not in [c.id for c in members] or len(members) < 2:
            raise FaultFailed(f"partition split: group {record.group} needs 2 running members")
        half = (len(members) + 1) // 2
        first, second = members[:half], members[half:]
        return second if record.target_id in [c.id for c in first] else first


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
        self, record: ActiveFault, st: ContainerState, *, v6: bool, exempt: Sequence[str]
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
