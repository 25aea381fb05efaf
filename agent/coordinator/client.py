"""The agent side: CoordinatorLeases, a LeaseProvider that asks the fleet coordinator.

acquire/renew raise LeaseRefused for a "no" (halted, limits, stale token, expired)
and CoordinatorUnavailable when no valid answer came in time; release is best
effort. Each lease's local deadline is measured from *before* the request was
sent, and ends `renew_margin` before the coordinator's TTL, so the agent heals on
its own before the coordinator could hand the slot to another agent.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from agent.config import CoordinatorSection
from agent.coordinator import protocol
from agent.coordinator.protocol import ProtocolError
from agent.errors import CoordinatorUnavailable, LeaseRefused
from agent.leases import GroupReport, Lease
from agent.model import Plan

UNAVAILABLE_CODES = frozenset({"unavailable", "internal"})


class LineTransport(Protocol):
    def request(self, line: bytes, timeout: float | None = None) -> bytes: ...

    def close(self) -> None: ...


class CoordinatorLeases:
    remote = True

    def __init__(
        self,
        section: CoordinatorSection,
        host: str,
        *,
        transport: LineTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if transport is None:
            from agent.adapters.ssh import SshLine

            transport = SshLine(
                host=section.host,
                port=section.port,
                user=section.user,
                key_path=section.key,
                known_hosts=section.known_hosts,
                accept_new_host_key=section.accept_new_host_key,
                connect_timeout=section.connect_timeout,
                request_timeout=section.request_timeout,
            )
        self.host = host  # informational: the coordinator knows us by our key
        self.renew_margin = section.renew_margin
        self._transport = transport
        self._clock = clock
        self._ids = itertools.count(1)
        self.identity = ""  # the name the coordinator knows us by (from the key line)

    # -- wire ----------------------------------------------------------------------
    def _call(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        rid = next(self._ids)
        line = protocol.encode({"v": protocol.VERSION, "id": rid, "op": op, **fields})
        raw = self._transport.request(line, timeout)
        try:
            reply = protocol.parse_reply(raw)
        except ProtocolError as exc:
            self._transport.close()
            raise CoordinatorUnavailable(
                f"coordinator sent an invalid reply: {exc.message}"
            ) from None
        if reply.get("id") != rid:
            self._transport.close()
            raise CoordinatorUnavailable("coordinator reply does not match the request")
        if not reply["ok"]:
            code, reason = reply["error"][:40], _clean(reply["reason"])
            if code in UNAVAILABLE_CODES:
                raise CoordinatorUnavailable(f"coordinator cannot decide: {reason}")
            raise LeaseRefused(f"coordinator refused {op} ({code}): {reason}")
        return reply

    def _lease(self, reply: Mapping[str, Any], started: float, info: dict[str, Any]) -> Lease:
        lease_id, token, ttl = reply.get("lease_id"), reply.get("token"), reply.get("ttl")
        if (
            not isinstance(lease_id, str)
            or not protocol.LEASE_ID_RE.fullmatch(lease_id)
            or isinstance(token, bool)
            or not isinstance(token, int)
            or not 1 <= token <= protocol.MAX_TOKEN
            or isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not math.isfinite(ttl)
            or not 0 < ttl <= 86400
        ):
            raise CoordinatorUnavailable("coordinator sent a malformed lease")
        return Lease(
            lease_id=lease_id,
            token=token,
            ttl=float(ttl),
            local_deadline=started + float(ttl) - self.renew_margin,
            info=info,
        )

    # -- LeaseProvider -------------------------------------------------------------
    def acquire(self, plan: Plan, report: GroupReport, *, timeout: float | None = None) -> Lease:
        started = self._clock()
        reply = self._call(
            "acquire",
            timeout,
            group=plan.target.group,
            fault=plan.fault,
            duration=plan.duration_s,
            report={
                "members": report.members,
                "running": report.running,
                "healthy": report.healthy,
            },
        )
        host = reply.get("host")
        if isinstance(host, str) and protocol.valid_host(host):
            self.identity = host
        info = {"coordinator_host": self.identity, "group": plan.target.group}
        lease = self._lease(reply, started, info)
        if lease.local_deadline <= self._clock():
            self.release(lease)
            raise LeaseRefused(
                f"lease ttl {lease.ttl:g}s leaves nothing after renew_margin {self.renew_margin:g}s"
            )
        return lease

    def renew(self, lease: Lease, *, timeout: float | None = None) -> Lease:
        started = self._clock()
        reply = self._call("renew", timeout, lease_id=lease.lease_id, token=lease.token)
        renewed = self._lease(reply, started, dict(lease.info))
        if renewed.lease_id != lease.lease_id or renewed.token != lease.token:
            raise CoordinatorUnavailable("coordinator renewed a different lease")
        return renewed

    def release(self, lease: Lease, *, timeout: float | None = None) -> None:
        """Best effort: an unreachable coordinator lets the lease expire by its TTL."""
        try:
            self._call("release", timeout, lease_id=lease.lease_id, token=lease.token)
        except (LeaseRefused, CoordinatorUnavailable):
            pass

    def report(self, reports: Iterable[GroupReport]) -> None:
        groups = [
            {"group": r.group, "members": r.members, "running": r.running, "healthy": r.healthy}
            for r in reports
        ]
        self._call("report", groups=groups)

    def status(self) -> dict[str, Any]:
        return self._call("status")

    def close(self) -> None:
        self._transport.close()


def _clean(text: str) -> str:
    """Coordinator text is untrusted: printable ASCII only, bounded."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:300])
