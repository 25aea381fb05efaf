"""The start-up sweep: tagged chains, rules and qdiscs that no ledger record owns."""

from __future__ import annotations

from collections.abc import Callable

from agent.adapters import hostpid, netns
from agent.errors import IdentityChanged, TargetGone, Unsupported
from agent.faults.container import parse_started_at
from agent.faults.ports import NamespaceTargets

# the namespace of the container's running instance, or None (how the sweep enters it)
CurrentOpener = Callable[[NamespaceTargets, str], netns.NetnsHandle | None]


def open_current_pinned(targets: NamespaceTargets, container_id: str) -> netns.NetnsHandle | None:
    """nsenter route: the running instance's namespace pinned by an fd, or None when its
    PID is not visible here or is not its process here (a remote engine's PID)."""
    st = targets.state(container_id)
    pid = st.pid
    started = parse_started_at(st.started_at)
    if (
        pid <= 1
        or netns.host_pid_visible(pid)
        or hostpid.identity_reason(pid, container_id, started)
    ):
        return None
    handle = netns.NetnsHandle(pid)
    if targets.state(container_id).pid != pid:
        handle.close()
        return None
    return handle


def sweep_network_leftovers(
    targets: NamespaceTargets,
    owned_fault_ids: set[str],
    *,
    only: set[str] | None = None,
    open_current: CurrentOpener = open_current_pinned,
    caps: Callable[[], netns.Capabilities] = netns.capabilities,
) -> list[str]:
    """Remove tagged chains/rules/qdiscs that no ledger record owns, in every running
    container's namespace (or only those whose full id is in `only`). Returns one
    description per removed artifact."""
    found = caps()
    if found.iptables and found.tc:
        return []  # this host cannot have created any
    owned_handles = {netns.tc_handle(fid) for fid in owned_fault_ids}
    removed: list[str] = []
    seen: set[int] = set()
    for listed in targets.containers():
        mode = listed.network_mode
        if not listed.running or mode == "host" or mode.startswith("container:"):
            continue
        cid, name = listed.id, listed.name
        if only is not None and cid not in only:
            continue
        try:
            handle = open_current(targets, cid)
            if handle is None:
                continue
            with handle as ns:
                if ns.inode in seen:
                    continue
                seen.add(ns.inode)
                for family in netns.FAMILIES:
                    for fid in sorted(netns.tagged_ids(ns, family) - owned_fault_ids):
                        removed += [f"{name}: {d}" for d in netns.remove(ns, family, fid)]
                stray = [h for _, _, h in netns.our_qdiscs(ns) if h not in owned_handles]
                if stray:
                    removed += [f"{name}: {d}" for d in netns.remove_qdiscs(ns, stray)]
        except (TargetGone, IdentityChanged, Unsupported):
            continue
    return removed
