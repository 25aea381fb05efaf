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

import json
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from agent.adapters import netns
from agent.adapters.docker_engine import DockerEngine, group_of, own_container_id
from agent.config import Config
from agent.durations import parse_duration
from agent.errors import AgentError, FaultFailed, IdentityChanged, TargetGone, Unsupported
from agent.faults.base import Fault
from agent.model import ActiveFault, HealOutcome, Target, TargetKind

ENDPOINT_PREFIX = "endpoint:"


# --- identity ------------------------------------------------------------------------------


def _networks(info: Mapping[str, Any]) -> dict[str, Any]:
    return dict((info.get("NetworkSettings") or {}).get("Networks") or {})


def _is_same_instance(info: Mapping[str, Any], record: ActiveFault) -> bool:
    state = info.get("State") or {}
    return (
        info.get("Id") == record.target_id
        and bool(state.get("Running"))
        and (not record.started_at or state.get("StartedAt") == record.started_at)
        and int(state.get("Pid") or 0) > 1
    )


def open_pinned(docker: DockerEngine, record: ActiveFault) -> netns.NetnsHandle:
    """The target's namespace, pinned; IdentityChanged if it is not the recorded instance.

    TargetGone if the container no longer exists. The PID comes from a fresh inspect,
    and a second inspect after opening the fd proves the fd is that instance's namespace.
    """
    info = docker.inspect(record.target_id)
    if not _is_same_instance(info, record):
        raise IdentityChanged(_changed(info, record))
    pid = int(info["State"]["Pid"])
    reason = netns.host_pid_visible(pid)
    if reason:
        raise Unsupported(reason)
    handle = netns.NetnsHandle(pid)
    try:
        again = docker.inspect(record.target_id)
        if not _is_same_instance(again, record) or int(again["State"]["Pid"]) != pid:
            raise IdentityChanged(_changed(again, record))
    except BaseException:
        handle.close()
        raise
    return handle


def _changed(info: Mapping[str, Any], record: ActiveFault) -> str:
    state = info.get("State") or {}
    if not state.get("Running"):
        return f"{record.target_name} is not running ({state.get('Status', '?')})"
    return (
        f"{record.target_name} was restarted or recreated (started {state.get('StartedAt')}, "
        f"recorded {record.started_at})"
    )


def shared_namespace_reason(docker: DockerEngine, target: Target) -> str | None:
    """Why a container sharing a network namespace (either side) is refused, or None."""
    mode = target.network_mode
    if mode == "host":
        return "uses the host's network (network_mode: host): a rule would hit the host itself"
    if mode == "none":
        return "has no network (network_mode: none)"
    if mode.startswith("container:"):
        return (
            "shares the network namespace of another container "
            f"({mode[:22]}): a rule there would hit every container in it"
        )
    sharers = []
    for entry in docker.list_containers():
        other = str((entry.get("HostConfig") or {}).get("NetworkMode", ""))
        if not other.startswith("container:"):
            continue
        ref = other.split(":", 1)[1]
        name = target.name.lstrip("/")
        if ref and (target.id.startswith(ref) or ref == name):
            names = entry.get("Names") or [str(entry.get("Id", ""))[:12]]
            sharers.append(str(names[0]).lstrip("/"))
    if sharers:
        return (
            f"{len(sharers)} other container(s) share its network namespace "
            f"({', '.join(sorted(sharers)[:3])}): they would be hit too"
        )
    return None


# --- base ------------------------------------------------------------------------------


class _NetnsFault:
    """Shared plumbing for faults that act inside the target's namespace."""

    name = ""
    kind: TargetKind = "container"

    def __init__(self, docker: DockerEngine, config: Config | None = None) -> None:
        self.docker = docker
        self.config = config

    # protocol ------------------------------------------------------------------
    def unavailable(self) -> str | None:
        return self._capability() or _pid_namespace_reason(self.docker)

    def _capability(self) -> str | None:
        raise NotImplementedError

    def refuse(self, target: Target) -> str | None:
        return shared_namespace_reason(self.docker, target)

    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        raise NotImplementedError

    def describe(self, record: ActiveFault) -> str:
        seconds = max(0.0, record.deadline - record.injected_at)
        return f"{self.name} {record.target_name} ({record.group}) for {seconds:g}s"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        netns.check_fault_id(record.fault_id)
        with open_pinned(self.docker, record) as ns:
            facts = self._apply(ns, record)
            facts["netns_inode"] = ns.inode
            return facts

    def heal(self, record: ActiveFault) -> HealOutcome:
        netns.check_fault_id(record.fault_id)
        try:
            handle = open_pinned(self.docker, record)
        except TargetGone:
            return HealOutcome(True, "gone", f"{record.target_name} no longer exists")
        except IdentityChanged as exc:
            return HealOutcome(True, "environment", exc.message)
        try:
            with handle as ns:
                inode = record.extra.get("netns_inode")
                if inode and int(inode) != ns.inode:
                    return HealOutcome(True, "environment", "the container has a new namespace")
                removed = self._undo(ns, record)
        except AgentError as exc:
            return HealOutcome(False, "failed", exc.one_line())
        if removed:
            return HealOutcome(True, "healed", "; ".join(removed)[:500])
        return HealOutcome(True, "already", "no artifact of this fault was left")

    # per fault -------------------------------------------------------------------
    def _apply(self, ns: netns.NetnsHandle, record: ActiveFault) -> dict[str, Any]:
        raise NotImplementedError

    def _undo(self, ns: netns.NetnsHandle, record: ActiveFault) -> list[str]:
        raise NotImplementedError


def _pid_namespace_reason(docker: DockerEngine) -> str | None:
    """When the agent runs in a container it needs the host PID namespace."""
    own = own_container_id()
    if not own:
        return None
    try:
        info = docker.inspect(own)
    except AgentError:
        return None
    if (info.get("HostConfig") or {}).get("PidMode") != "host":
        return (
            "the agent's container is not in the host PID namespace: "
            "it cannot enter containers' namespaces (set pid: host)"
        )
    return None


class _IptablesFault(_NetnsFault):
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
        caps = netns.probe()
        families = ["iptables"]
        if caps.ip6tables is None and any(
            (n or {}).get("GlobalIPv6Address") for n in _networks(info).values()
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
                for net in _networks(self.docker.inspect(own)).values():
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
        return netns.probe().iptables

    def describe(self, record: ActiveFault) -> str:
        mode = record.params.get("mode", "isolate")
        extra = f" from {record.params.get('from_group')}" if mode == "from" else ""
        seconds = record.deadline - record.injected_at
        return f"partition {record.target_name} ({mode}{extra}) for {seconds:g}s"

    def _plan(
        self, record: ActiveFault, info: Mapping[str, Any], *, v6: bool, exempt: Sequence[str]
    ) -> netns.ChainPlan:
        mode = str(record.params.get("mode", "isolate"))
        plan = netns.ChainPlan(_base("in", exempt), _base("out", exempt))
        if mode == "isolate":
            if not record.params.get("host_ports", True):
                self._keep_published_ports(plan, info, v6=v6)
            plan.ingress.append(netns.RuleSpec(("-j", "DROP")))
            plan.egress.append(netns.RuleSpec(("-j", "DROP")))
            return plan
        if mode == "from":
            group = str(record.params.get("from_group", ""))
            if not group:
                raise FaultFailed("partition mode 'from' needs from_group")
            peers = [e for e in self._running() if self._group(e) == group]
        elif mode == "split":
            peers = self._other_side(record)
        else:
            raise FaultFailed(f"unknown partition mode {mode!r}")
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
        nets = _networks(info).values()
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
        return netns.probe().statistic

    def describe(self, record: ActiveFault) -> str:
        return (
            f"drop {float(record.params.get('percent', 30.0)):g}% of packets of "
            f"{record.target_name} for {record.deadline - record.injected_at:g}s"
        )

    def _plan(
        self, record: ActiveFault, info: Mapping[str, Any], *, v6: bool, exempt: Sequence[str]
    ) -> netns.ChainPlan:
        percent = float(record.params.get("percent", 30.0))
        if not 0.0 <= percent <= 100.0:
            raise FaultFailed(f"loss percent must be between 0 and 100, got {percent:g}")
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


# --- tc faults ------------------------------------------------------------------------------


class _QdiscFault(_NetnsFault):
    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        return (f"tc:root handle {netns.tc_handle(fault_id)}",)

    def _qdisc(self, params: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def _apply(self, ns: netns.NetnsHandle, record: ActiveFault) -> dict[str, Any]:
        reason = self.unavailable()
        if reason:
            raise Unsupported(reason)
        args = self._qdisc(record.params)
        devs = ns.interfaces()
        if not devs:
            raise FaultFailed(f"{record.target_name} has no network interface besides lo")
        for dev in devs:  # refuse before changing anything if one is taken
            kind, handle = ns.root_qdisc(dev)
            if kind not in ("", "noqueue") and handle != netns.tc_handle(record.fault_id):
                raise FaultFailed(
                    f"{dev} of {record.target_name} already has a root qdisc {kind} {handle} "
                    "that chaos-agent did not add: not replacing it"
                )
        for dev in devs:
            netns.add_qdisc(ns, dev, record.fault_id, args)
        return {"devices": devs}

    def _undo(self, ns: netns.NetnsHandle, record: ActiveFault) -> list[str]:
        return netns.remove_qdiscs(ns, [netns.tc_handle(record.fault_id)])


def _ms(value: Any, where: str) -> str:
    return f"{parse_duration(value, where=where) * 1000:.3f}ms"


class Latency(_QdiscFault):
    name = "latency"

    def _capability(self) -> str | None:
        return netns.probe().netem

    def _qdisc(self, params: Mapping[str, Any]) -> list[str]:
        return ["netem", "delay", _ms(params.get("delay", "200ms"), "latency.delay")]


class Jitter(_QdiscFault):
    name = "jitter"

    def _capability(self) -> str | None:
        return netns.probe().netem

    def _qdisc(self, params: Mapping[str, Any]) -> list[str]:
        return [
            "netem",
            "delay",
            _ms(params.get("delay", "100ms"), "jitter.delay"),
            _ms(params.get("jitter", "50ms"), "jitter.jitter"),
            "distribution",
            "normal",
        ]


_RATE = re.compile(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps)")
_RATE_BITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3, "mbps": 8e6}


class Bandwidth(_QdiscFault):
    """Egress rate limit with tbf on each of the container's interfaces."""

    name = "bandwidth"

    def _capability(self) -> str | None:
        return netns.probe().tbf

    def _qdisc(self, params: Mapping[str, Any]) -> list[str]:
        rate = str(params.get("rate", "1mbit"))
        match = _RATE.fullmatch(rate)
        if not match:
            raise FaultFailed(f"bandwidth rate {rate!r} is not like '1mbit'")
        bits = float(match.group(1)) * _RATE_BITS[match.group(2)]
        burst = max(4096, int(bits / 8 / 50))  # at least 20 ms worth of bytes
        return ["tbf", "rate", rate, "burst", str(burst), "latency", "100ms"]


# --- disconnect -----------------------------------------------------------------------------


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
        nets = _networks(self.docker.inspect(target.id))
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
        if not _is_same_instance(info, record):
            raise IdentityChanged(_changed(info, record))
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
                if ep["network"] in _networks(info):
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
    net = _networks(info).get(ep["network"])
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


# --- factory and sweep ---------------------------------------------------------------------


def network_faults(docker: DockerEngine, config: Config) -> list[Fault]:
    """Every network fault; `unavailable()` says which this host cannot do."""
    return [
        Partition(docker, config),
        Loss(docker, config),
        Latency(docker, config),
        Jitter(docker, config),
        Bandwidth(docker, config),
        Disconnect(docker),
    ]


def sweep_network_leftovers(
    docker: DockerEngine, owned_fault_ids: set[str], *, only: set[str] | None = None
) -> list[str]:
    """Remove tagged chains/rules/qdiscs that no ledger record owns, in every running
    container's namespace (or only those whose full id is in `only`). Returns one
    description per removed artifact."""
    caps = netns.probe()
    if caps.iptables and caps.tc:
        return []  # this host cannot have created any
    owned_handles = {netns.tc_handle(fid) for fid in owned_fault_ids}
    removed: list[str] = []
    seen: set[int] = set()
    for entry in docker.list_containers():
        mode = str((entry.get("HostConfig") or {}).get("NetworkMode", ""))
        if entry.get("State") != "running" or mode == "host" or mode.startswith("container:"):
            continue
        cid = str(entry.get("Id", ""))
        if only is not None and cid not in only:
            continue
        name = str((entry.get("Names") or [cid[:12]])[0]).lstrip("/")
        try:
            info = docker.inspect(cid)
            pid = int((info.get("State") or {}).get("Pid") or 0)
            if pid <= 1 or netns.host_pid_visible(pid):
                continue
            with netns.NetnsHandle(pid) as ns:
                again = docker.inspect(cid)
                if int((again.get("State") or {}).get("Pid") or 0) != pid or ns.inode in seen:
                    continue
                seen.add(ns.inode)
                for family in netns.FAMILIES:
                    for fid in sorted(netns.tagged_ids(ns, family) - owned_fault_ids):
                        removed += [f"{name}: {d}" for d in netns.remove(ns, family, fid)]
                stray = [h for _, _, h in netns.our_qdiscs(ns) if h not in owned_handles]
                if stray:
                    removed += [f"{name}: {d}" for d in netns.remove_qdiscs(ns, stray)]
        except (TargetGone, IdentityChanged):
            continue
    return removed
