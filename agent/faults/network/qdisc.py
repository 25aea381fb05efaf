"""latency, jitter and bandwidth: a root qdisc with our handle on each of the target's interfaces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.adapters import netns
from agent.durations import parse_duration
from agent.errors import FaultFailed, Unsupported
from agent.fault_params import param, rate_bits, rate_problem
from agent.faults.network.common import NetnsFault
from agent.model import ActiveFault, Target


class _QdiscFault(NetnsFault):
    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        return (f"tc:root handle {netns.tc_handle(fault_id)}",)

    def _qdisc(self, params: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def _apply(self, ns: netns.NetnsHandle, record: ActiveFault) -> dict[str, Any]:
        reason = self._capability()
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
        return self.caps().netem

    def _qdisc(self, params: Mapping[str, Any]) -> list[str]:
        return ["netem", "delay", _ms(param(params, "latency", "delay"), "latency.delay")]


class Jitter(_QdiscFault):
    name = "jitter"

    def _capability(self) -> str | None:
        return self.caps().netem

    def _qdisc(self, params: Mapping[str, Any]) -> list[str]:
        return [
            "netem",
            "delay",
            _ms(param(params, "jitter", "delay"), "jitter.delay"),
            _ms(param(params, "jitter", "jitter"), "jitter.jitter"),
            "distribution",
            "normal",
        ]


class Bandwidth(_QdiscFault):
    """Egress rate limit with tbf on each of the container's interfaces."""

    name = "bandwidth"

    def _capability(self) -> str | None:
        return self.caps().tbf

    def _qdisc(self, params: Mapping[str, Any]) -> list[str]:
        rate = str(param(params, "bandwidth", "rate"))
        bits = rate_bits(rate)
        if bits is None:
            raise FaultFailed(f"bandwidth rate: {rate_problem(rate)}")
        burst = max(4096, int(bits / 8 / 50))  # at least 20 ms worth of bytes
        return ["tbf", "rate", rate, "burst", str(burst), "latency", "100ms"]
