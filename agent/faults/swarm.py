"""Faults on Swarm tasks: the container faults with Swarm-correct heals and refusals.

`SwarmAware` wraps a fault of the registry. On a container that is not a Swarm task
it is the wrapped fault, unchanged. On a task:

- kill (SIGKILL through the Engine API: exit 137, so `on-failure` replaces it too) and
  stop: Swarm starts a new task; the heal is "the service converged again", verified
  from the manager's task and node lists and reported with the time it took. The dead
  task container is never started again (that would be an orphan Swarm does not count);
- pause and the namespace network faults: the wrapped fault's heal (unpause, rules removed);
  a network fault is refused when the task's PID is not its process as seen from here
  (an agent outside the node's PID namespace would enter an unrelated namespace);
- restart, disconnect, and kill/stop where the restart policy means Swarm would never
  replace the task: refused with the reason (`agent.swarm.refusal`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agent.adapters.docker_engine import DockerEngine
from agent.errors import NotEligible, TargetGone, Unsupported
from agent.faults.base import Fault
from agent.model import NETWORK_FAULTS, SWARM_SERVICE_ID, ActiveFault, HealOutcome, Target
from agent.swarm import SwarmCluster, convergence, is_task, refusal

REPLACED_BY_SWARM = ("kill", "stop")
CONVERGE_WAIT_S = 10.0  # per heal attempt; a later attempt (backoff) checks again


class SwarmAware:
    """A registry fault that knows Swarm tasks."""

    def __init__(self, inner: Fault, docker: DockerEngine, cluster: SwarmCluster) -> None:
        self.inner = inner
        self.docker = docker
        self.cluster = cluster
        self.name = inner.name
        self.kind = inner.kind

    def unavailable(self) -> str | None:
        return self.inner.unavailable()

    def refuse(self, target: Target) -> str | None:
        if target.kind == "container" and is_task(target.labels):
            snap = self.cluster.last
            service = None
            if snap is not None:
                sid = target.labels.get(SWARM_SERVICE_ID, "")
                service = snap.services.get(sid)
            reason = refusal(self.name, service)
            if reason:
                return reason
        return self.inner.refuse(target)

    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        return self.inner.artifacts(fault_id, target, params)

    def describe(self, record: ActiveFault) -> str:
        return self.inner.describe(record)

    def _task_info(self, record: ActiveFault) -> dict[str, Any] | None:
        """The task container's inspect, None when it is not a task (or gone)."""
        if record.target_kind != "container":
            return None
        try:
            info = self.docker.inspect(record.target_id)
        except TargetGone:
            return None
        return info if is_task((info.get("Config") or {}).get("Labels") or {}) else None

    def _task_labels(self, record: ActiveFault) -> dict[str, str] | None:
        info = self._task_info(record)
        return None if info is None else dict(info["Config"]["Labels"])

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        if self.name in NETWORK_FAULTS:
            reason = self._foreign(record)
            if reason:
                raise Unsupported(reason)
        labels = self._task_labels(record) if self.name in REPLACED_BY_SWARM else None
        if labels is None:
            return self.inner.inject(record)
        service_id = self.cluster.service_of_container(record.target_id, labels)
        snap = self.cluster.snapshot()  # refuse on fresh facts, not the last discovery's
        reason = refusal(self.name, snap.services.get(service_id))
        if reason:
            raise NotEligible(reason)
        if self.name == "kill":
            self.docker.kill(record.target_id, str(record.params.get("signal", "SIGKILL")))
        else:
            self.docker.stop(record.target_id, float(record.params.get("timeout", 10)))
        return {"via": "swarm", "swarm_service": service_id}

    def _foreign(self, record: ActiveFault) -> str | None:
        info = self._task_info(record)
        if info is None:
            return None
        return foreign_pid_reason(int((info.get("State") or {}).get("Pid") or 0), record.target_id)

    def heal(self, record: ActiveFault) -> HealOutcome:
        if self.name in NETWORK_FAULTS:
            reason = self._foreign(record)
            if reason:  # this agent could not have entered it either: nothing to undo
                return HealOutcome(True, "already", f"nothing injected: {reason}")
        if self.name not in REPLACED_BY_SWARM or record.target_kind != "container":
            return self.inner.heal(record)
        if record.extra.get("via") not in (None, "swarm"):
            return self.inner.heal(record)  # injected on a container that is not a task
        service_id = str(record.extra.get("swarm_service", ""))
        if not service_id:  # a crash before inject's facts were recorded
            labels = self._task_labels(record)
            if labels is None:
                # not a task, or gone (a pruned task is gone too): the plain heal decides,
                # and it never starts a container that no longer exists
                return self.inner.heal(record)
            service_id = self.cluster.service_of_container(record.target_id, labels)
        # Swarm starts the new task after its restart delay (5 s by default): wait a
        # little here (on the heal pool) rather than journal a failed heal per poll
        end = time.monotonic() + CONVERGE_WAIT_S
        while True:
            conv = convergence(
                self.cluster.snapshot(), service_id, record.injected_at, dead=record.target_id
            )
            if conv.converged or time.monotonic() >= end:
                break
            time.sleep(0.5)
        if not conv.converged:
            return HealOutcome(False, "failed", f"not converged yet: {conv.detail}")
        took = None if conv.at is None else max(0.0, conv.at - record.injected_at)
        detail = f"Swarm replaced the task; {conv.detail}"
        if took is not None:
            detail += f", converged {took:.1f}s after the fault"
        return HealOutcome(True, "environment", detail, converged_s=took)


def foreign_pid_reason(pid: int, container_id: str) -> str | None:
    """None if host PID `pid` is this container's process as seen from here; else why not.

    An agent reaching a node's engine from outside that node's PID namespace (another
    machine's socket, an engine in a container) gets PIDs that mean nothing here: the
    same number may be an unrelated local process, whose namespace must never be entered.
    """
    try:
        with open(f"/proc/{int(pid)}/cgroup", encoding="utf-8", errors="replace") as fh:
            if pid > 0 and container_id and container_id in fh.read():
                return None
    except OSError:
        pass
    return (
        f"the task's PID {pid} is not its process here: run the agent on the task's node, "
        "in the host PID namespace (docs/swarm.md)"
    )


def swarm_aware(faults: list[Fault], docker: DockerEngine, cluster: SwarmCluster) -> list[Fault]:
    """Wrap the container faults (process faults are left as they are)."""
    return [SwarmAware(f, docker, cluster) if f.kind == "container" else f for f in faults]
