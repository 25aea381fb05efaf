"""Identity pinning and the base of the faults that act inside a container's network namespace.

Identity is pinned: the namespace fd is opened from a freshly inspected PID, and the
container's id and State.StartedAt must equal the record. A restarted container has a
new namespace (our rules died with the old one): heal reports "environment" and
never touches the new instance. A vanished container is "gone".

Containers that share a network namespace (network_mode container:<id>, compose
`service:X`) are refused on both sides: a rule in X's namespace would hit all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.adapters import hostpid, netns
from agent.config import Config
from agent.errors import AgentError, IdentityChanged, TargetGone, Unsupported
from agent.faults.container import parse_started_at
from agent.faults.ports import NamespaceTargets
from agent.model import ActiveFault, HealOutcome, Target, TargetKind

# How a fault enters the target's namespace: open_pinned (nsenter on a pinned fd), or a
# helper container joining it (agent/faults/network/helper.py, Swarm tasks).
Opener = Callable[[NamespaceTargets, ActiveFault], netns.NetnsHandle]

# --- identity ------------------------------------------------------------------------------


def open_pinned(targets: NamespaceTargets, record: ActiveFault) -> netns.NetnsHandle:
    """The target's namespace, pinned; IdentityChanged if it is not the recorded instance.

    TargetGone if the container no longer exists. The PID comes from a fresh inspect,
    and a second inspect after opening the fd proves the fd is that instance's namespace.
    """
    st = targets.state(record.target_id)
    if not st.same_running_instance(record):
        raise IdentityChanged(st.changed_reason(record))
    pid = st.pid
    reason = netns.host_pid_visible(pid) or hostpid.identity_reason(
        pid, record.target_id, parse_started_at(st.started_at)
    )
    if reason:  # a PID from a remote engine may be an unrelated local process
        raise Unsupported(reason)
    handle = netns.NetnsHandle(pid)
    try:
        again = targets.state(record.target_id)
        if not again.same_running_instance(record) or again.pid != pid:
            raise IdentityChanged(again.changed_reason(record))
    except BaseException:
        handle.close()
        raise
    return handle


def shared_namespace_reason(target: Target) -> str | None:
    """Why a container sharing a network namespace (either side) is refused, or None.

    Pure: the sharers come with the target from discovery (agent/discovery.py)."""
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
    sharers = sorted(target.netns_sharers)
    if sharers:
        return (
            f"{len(sharers)} other container(s) share its network namespace "
            f"({', '.join(sharers[:3])}): they would be hit too"
        )
    return None


# --- base ------------------------------------------------------------------------------


class NetnsFault:
    """Shared plumbing for faults that act inside the target's namespace."""

    name = ""
    kind: TargetKind = "container"

    def __init__(self, targets: NamespaceTargets, config: Config | None = None) -> None:
        self.targets = targets
        self.config = config
        # the seam: how the namespace is entered, and what can be done there
        self.opener: Opener = open_pinned
        self.caps: Callable[[], netns.Capabilities] = netns.capabilities

    # protocol ------------------------------------------------------------------
    def unavailable(self) -> str | None:
        return self._capability() or pid_namespace_reason(self.targets)

    def _capability(self) -> str | None:
        raise NotImplementedError

    def refuse(self, target: Target) -> str | None:
        return shared_namespace_reason(target)

    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        raise NotImplementedError

    def describe(self, record: ActiveFault) -> str:
        seconds = max(0.0, record.deadline - record.injected_at)
        return f"{self.name} {record.target_name} ({record.group}) for {seconds:g}s"

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        netns.check_fault_id(record.fault_id)
        with self.opener(self.targets, record) as ns:
            facts = self._apply(ns, record)
            facts["netns_inode"] = ns.inode
            return facts

    def heal(self, record: ActiveFault) -> HealOutcome:
        netns.check_fault_id(record.fault_id)
        try:
            handle = self.opener(self.targets, record)
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


def pid_namespace_reason(targets: NamespaceTargets) -> str | None:
    """When the agent runs in a container it needs the host PID namespace."""
    own = targets.own_id()
    if not own:
        return None
    try:
        st = targets.state(own)
    except AgentError:
        return None
    if st.pid_mode != "host":
        return (
            "the agent's container is not in the host PID namespace: "
            "it cannot enter containers' namespaces (set pid: host)"
        )
    return None
