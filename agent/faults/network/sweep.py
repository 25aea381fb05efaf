"""The start-up sweep: tagged chains, rules and qdiscs that no ledger record owns."""

from __future__ import annotations

from agent.adapters import netns
from agent.adapters.docker_engine import DockerEngine
from agent.errors import IdentityChanged, TargetGone


def sweep_network_leftovers(
    docker: DockerEngine, owned_fault_ids: set[str], *, only: set[str] | None = None
) -> list[str]:
    """Remove tagged chains/rules/qdiscs that no ledger record owns, in every running
    container's namespace (or only those whose full id is in `only`). Returns one
    description per removed artifact."""
    caps = netns.capabilities()
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
