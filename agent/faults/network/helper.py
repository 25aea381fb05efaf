"""Entering a container's network namespace through a short-lived helper container.

A Swarm service cannot have `pid: host`, so an agent running as a global service cannot
nsenter a task's namespace. Its node's own engine can put a container *into* that
namespace, though: a helper created through the local Engine API with
`NetworkMode: container:<task container id>`, only CAP_NET_ADMIN and CAP_NET_RAW, the
agent's own image (it carries iptables, tc, ip, nft), running a bounded `sleep`. The
commands run in it with `exec`, as argument lists (never a shell), and it is removed
when the inject or heal is done; if the agent dies meanwhile the sleep ends and the
engine removes it (AutoRemove), and the start-up sweep removes stale ones by label.

Identity is pinned by the container id: the engine joins the namespace of exactly that
container, which must be running with the recorded StartedAt before and after the
helper starts. A replaced task is a new container with a new id, so the heal of a fault
on the old one finds it gone (or not running) and reports environment/gone.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from agent.adapters import netns
from agent.errors import AgentError, FaultFailed, IdentityChanged, TargetGone
from agent.faults.ports import NamespaceTargets
from agent.model import LABEL_AGENT, LABEL_NETNS_HELPER, ActiveFault

IMAGE_ENV = "CHAOS_NETNS_HELPER_IMAGE"
DEFAULT_IMAGE = "chaos-agent:latest"
LIFETIME_S = 300  # the helper's sleep: an inject or heal takes seconds
STALE_AFTER_S = 60.0  # a helper older than this belongs to no inject or heal in progress
_INODE = re.compile(r"net:\[(\d+)\]")


def helper_image(targets: NamespaceTargets) -> str:
    """$CHAOS_NETNS_HELPER_IMAGE, else the agent's own container's image, else the default."""
    if os.environ.get(IMAGE_ENV):
        return os.environ[IMAGE_ENV]
    own = targets.own_id()
    if own:
        try:
            return targets.state(own).image or DEFAULT_IMAGE
        except AgentError:
            pass
    return DEFAULT_IMAGE


def helper_spec(image: str, network_mode: str, purpose: str) -> dict[str, Any]:
    """Create-container body of a helper (pure). `purpose` is a fault id, `sweep` or `probe`."""
    return {
        "Image": image,
        "Entrypoint": ["sleep"],
        "Cmd": [str(LIFETIME_S)],
        "User": "0",
        "Labels": {LABEL_AGENT: "true", LABEL_NETNS_HELPER: purpose},
        "HostConfig": {
            "NetworkMode": network_mode,
            "CapDrop": ["ALL"],
            "CapAdd": ["NET_ADMIN", "NET_RAW"],
            "AutoRemove": True,
        },
    }


class HelperNetns(netns.NetnsHandle):
    """A namespace entered by `exec` in a helper container: the same `run(argv)` (and so
    every query of NetnsHandle) as the nsenter route. Close it to remove the helper."""

    def __init__(self, targets: NamespaceTargets, helper_id: str, where: str) -> None:
        # not NetnsHandle.__init__: there is no local PID or fd, the helper is the pin
        self.targets = targets
        self.helper_id = helper_id
        self.where = where
        self.pid = 0
        self.fd = -1
        try:
            text = self.run(["readlink", "/proc/self/ns/net"]).stdout
            match = _INODE.search(text)
            if not match:
                raise FaultFailed(f"netns of {where}: unexpected readlink output {text[:80]!r}")
            self.inode = int(match.group(1))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.helper_id:
            helper, self.helper_id = self.helper_id, ""
            try:
                self.targets.remove(helper)
            except AgentError:
                pass  # gone already, or the engine is away: its sleep ends, AutoRemove

    def run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        if not self.helper_id:
            raise FaultFailed("namespace helper already removed")
        code, out, err = self.targets.exec_run(self.helper_id, argv)
        result = subprocess.CompletedProcess(list(argv), code, out, err)
        return netns.checked(argv, result, self.where, check=check)


def _start(targets: NamespaceTargets, container_id: str, purpose: str, where: str) -> HelperNetns:
    spec = helper_spec(helper_image(targets), f"container:{container_id}", purpose)
    helper = targets.run_helper(spec, about=container_id)
    return HelperNetns(targets, helper, where)


def open_via_helper(targets: NamespaceTargets, record: ActiveFault) -> netns.NetnsHandle:
    """The recorded container's namespace through a helper; IdentityChanged if the
    container is not the recorded instance, TargetGone if it no longer exists."""
    st = targets.state(record.target_id)
    if not st.same_running_instance(record):
        raise IdentityChanged(st.changed_reason(record))
    try:
        handle = _start(targets, st.id, record.fault_id, record.target_name)
    except FaultFailed:
        again = targets.state(record.target_id)  # it stopped meanwhile: not ours any more
        if not again.same_running_instance(record):
            raise IdentityChanged(again.changed_reason(record)) from None
        raise
    try:
        again = targets.state(record.target_id)
        if not again.same_running_instance(record):
            raise IdentityChanged(again.changed_reason(record))
    except BaseException:
        handle.close()
        raise
    return handle


def open_current_via_helper(
    targets: NamespaceTargets, container_id: str
) -> netns.NetnsHandle | None:
    """The namespace of whatever instance of the container runs now (the sweep), or None."""
    try:
        return _start(targets, container_id, "sweep", container_id[:12])
    except (TargetGone, FaultFailed):
        return None  # gone, or stopped meanwhile: no namespace to sweep


def helper_capabilities(targets: NamespaceTargets) -> netns.Capabilities:
    """netns.capabilities' kernel checks, run in a helper with a namespace of its own."""
    try:
        spec = helper_spec(helper_image(targets), "none", "probe")
        helper = HelperNetns(targets, targets.run_helper(spec, about="probe"), "probe")
    except AgentError as exc:
        reason = f"cannot start a namespace helper container: {exc.one_line()}"
        return netns.probe_features(reason, lambda _argv: reason, lambda _tool: True)
    with helper:

        def scratch(argv: Sequence[str]) -> str | None:
            # one namespace for every check: undo each qdisc so the next can be added
            try:
                result = helper.run(argv, check=False)
                if result.returncode == 0 and argv[0] == "tc":
                    helper.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
            except AgentError as exc:
                return exc.one_line()
            if result.returncode == 0:
                return None
            text = (result.stderr or result.stdout).strip().splitlines()
            return text[0][:200] if text else f"exit {result.returncode}"

        return netns.probe_features(None, scratch, lambda _tool: True)


def remove_stale_helpers(targets: NamespaceTargets, now: float | None = None) -> list[str]:
    """Remove helper containers older than STALE_AFTER_S (left by an agent that died
    during an inject or heal). One description per removed helper."""
    now = time.time() if now is None else now
    removed = []
    for helper in targets.containers(LABEL_NETNS_HELPER):
        if now - helper.created < STALE_AFTER_S:
            continue
        cid = helper.id
        try:
            targets.remove(cid)
        except TargetGone:
            continue
        purpose = helper.labels.get(LABEL_NETNS_HELPER, "")
        removed.append(f"stale namespace helper {cid[:12]} ({purpose[:20]})")
    return removed
