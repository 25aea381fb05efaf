"""Faults on Swarm tasks: the container faults with Swarm-correct heals and refusals.

`SwarmAware` wraps a fault of the registry. On a container that is not a Swarm task
it is the wrapped fault, unchanged. On a task:

- kill (SIGKILL through the Engine API: exit 137, so `on-failure` replaces it too) and
  stop: Swarm starts a new task; the heal is "the service converged again", verified
  from the manager's task and node lists and reported with the time it took. The dead
  task container is never started again (that would be an orphan Swarm does not count);
- pause and the namespace network faults: the wrapped fault's heal (unpause, rules removed).
  A global service cannot have `pid: host`: on a Swarm node the namespace is entered by
  nsenter only when the task's PID is provably its process here, else through a helper
  container joining the task's namespace (`NetnsRoute`, agent/faults/network/helper.py);
- restart, disconnect, and kill/stop where the restart policy means Swarm would never
  replace the task: refused with the reason (`agent.swarm.refusal`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.adapters.docker_engine import DockerEngine
from agent.adapters.docker_ports import DockerContainers
from agent.errors import NotEligible, TargetGone
from agent.faults.base import Fault
from agent.faults.ports import ContainerLifecycle
from agent.model import SWARM_SERVICE_ID, ActiveFault, HealOutcome, Target
from agent.swarm import SwarmCluster, convergence, is_task, refusal

if TYPE_CHECKING:
    from agent.faults.network.route import NetnsRoute

REPLACED_BY_SWARM = ("kill", "stop")
CONVERGE_WAIT_S = 10.0  # per heal attempt; a later attempt (backoff) checks again


class SwarmAware:
    """A registry fault that knows Swarm tasks."""

    def __init__(
        self,
        inner: Fault,
        containers: ContainerLifecycle,
        cluster: SwarmCluster,
        route: NetnsRoute | None = None,
    ) -> None:
        self.inner = inner
        self.containers = containers
        self.cluster = cluster
        self.name = inner.name
        self.kind = inner.kind
        self._route = route
        # a namespace fault (agent.faults.network.common.NetnsFault): enters through the route
        self._netns = hasattr(inner, "opener")
        if self._netns and route is not None:
            inner.opener = route.open  # type: ignore[attr-defined]
            inner.caps = route.caps  # type: ignore[attr-defined]

    def unavailable(self) -> str | None:
        if self._netns and self._route is not None and self._route.swarm():
            # no pid: host needed: helpers enter namespaces
            return self.inner._capability()  # type: ignore[attr-defined, no-any-return]
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

    def _task_labels(self, record: ActiveFault) -> dict[str, str] | None:
        """The task container's labels, None when it is not a task (or gone)."""
        if record.target_kind != "container":
            return None
        try:
            labels = dict(self.containers.state(record.target_id).labels)
        except TargetGone:
            return None
        return labels if is_task(labels) else None

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        labels = self._task_labels(record) if self.name in REPLACED_BY_SWARM else None
        if labels is None:
            return self.inner.inject(record)
        service_id = self.cluster.service_of_container(record.target_id, labels)
        snap = self.cluster.snapshot()  # refuse on fresh facts, not the last discovery's
        reason = refusal(self.name, snap.services.get(service_id))
        if reason:
            raise NotEligible(reason)
        if self.name == "kill":
            self.containers.kill(record.target_id, str(record.params.get("signal", "SIGKILL")))
        else:
            self.containers.stop(record.target_id, float(record.params.get("timeout", 10)))
        return {"via": "swarm", "swarm_service": service_id}

    def heal(self, record: ActiveFault) -> HealOutcome:
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


def swarm_aware(
    faults: list[Fault],
    docker: DockerEngine,
    cluster: SwarmCluster,
    route: NetnsRoute | None = None,
) -> list[Fault]:
    """Wrap the container faults (process faults are left as they are)."""
    containers = DockerContainers(docker)
    if route is None and any(hasattr(f, "opener") for f in faults):
        from agent.faults.network.route import NetnsRoute  # network faults only: imported late

        route = NetnsRoute(containers, cluster)
    return [
        SwarmAware(f, containers, cluster, route) if f.kind == "container" else f for f in faults
    ]
