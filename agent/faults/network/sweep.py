"""The start-up sweep: tagged chains, rules and qdiscs that no ledger record owns."""

from __future__ import annotations

from collections.abc import Callable

from agent.adapters import hostpid, netns
from agent.adapters.docker_engine import DockerEngine
from agent.errors import IdentityChanged, TargetGone, Unsupported
from agent.faults.container import parse_started_at

# the namespace of the container's running instance, or None (how the sweep enters it)
CurrentOpener = Callable[[DockerEngine, str], netns.NetnsHandle | None]


def open_current_pinned(docker: DockerEngine, container_id: str) -> netns.NetnsHandle | None:
    """nsenter route: the running instance's namespace pinned by an fd, or None when its
    PID is not visible here or is not its process here (a remote engine's PID)."""
    info = docker.inspect(container_id)
    state = info.get("State") or {}
    pid = int(state.get("Pid") or 0)
    started = parse_started_at(str(state.get("StartedAt") or ""))
    if (
        pid <= 1
        or netns.host_pid_visible(pid)
        or hostpid.identity_reason(pid, container_id, started)
    ):
        return None
    handle = netns.NetnsHandle(pid)
    if int((docker.inspect(container_id).get("State") or {}).get("Pid") or 0) != pid:
        handle.close()
        return None
    return handle


def sweep_network_leftovers(
    docker: DockerEngine,
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
    for entry in docker.list_containers():
        mode = str((entry.get("HostConfig") or {}).get("NetworkMode", ""))
        if entry.get("State") != "running" or mode == "host" or mode.startswith("container:"):
            continue
        cid = str(entry.get("Id", ""))
        if only is not None and cid not in only:
            continue
        name = str((entry.get("Names") or [cid[:12]])[0]).lstrip("/")
        try:
            handle = open_current(docker, cid)
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
