"""Docker Swarm mode: groups are services, members are tasks on every node.

Pure translation (services, tasks, nodes and local container list entries ->
Targets; "has the service converged again?") plus `SwarmCluster`, which reads the
cluster through a manager's Engine API (only managers answer /services, /tasks,
/nodes). Facts this module is built on (measured, see docs/swarm.md):

- a task runs once: when its container stops, Swarm starts a *new* task; starting
  the dead container again makes an orphan Swarm does not count. So victims are
  chosen from the manager's task list, and the heal of kill/stop is "the service
  converged again", never `docker start`;
- a paused task is not replaced (unpause is its heal); a stopped task (exit 0) is
  never replaced under `restart_policy: on-failure`, and nothing is under `none`;
- the replica counts in `ServiceStatus` are wrong while a node is down: convergence
  is measured from /tasks and /nodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent import model
from agent.adapters.docker_engine import DockerEngine, target_from_list_entry
from agent.errors import DockerUnavailable
from agent.faults.container import parse_started_at
from agent.model import Target

MANAGER_ENV = "CHAOS_SWARM_MANAGER"  # a manager's Engine API URL, for agents on workers


@dataclass(frozen=True)
class Service:
    id: str
    name: str  # the Swarm name, e.g. shop_web
    stack: str  # com.docker.stack.namespace, "" outside a stack
    mode: str  # replicated | global
    replicas: int | None  # desired replicas (None for global)
    restart_condition: str  # any | on-failure | none
    container_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """`stack/service` (`shop/web`), or the Swarm name outside a stack."""
        prefix = f"{self.stack}_"
        if self.stack and self.name.startswith(prefix):
            return f"{self.stack}/{self.name[len(prefix) :]}"
        return self.name


@dataclass(frozen=True)
class Task:
    id: str
    service_id: str
    slot: int
    node_id: str
    desired: str  # running | shutdown | ...
    state: str  # new, pending, ..., starting, running, complete, failed, shutdown, ...
    container_id: str
    created_at: float
    state_at: float  # when it reached its current state
    exit_code: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """One read of the cluster from a manager (plus the local node's id)."""

    node_id: str
    services: Mapping[str, Service]
    tasks: tuple[Task, ...]
    ready_nodes: frozenset[str]  # Status.State ready and Spec.Availability active


@dataclass(frozen=True)
class Convergence:
    converged: bool
    running: int
    desired: int
    at: float | None  # when the last replacement task started running (None: none replaced)
    detail: str


# --- pure translation ----------------------------------------------------------------


def _ts(text: Any) -> float:
    try:
        return parse_started_at(str(text or ""))
    except ValueError:
        return 0.0


def service_from_json(data: Mapping[str, Any]) -> Service:
    spec = data.get("Spec") or {}
    labels = spec.get("Labels") or {}
    mode_spec = spec.get("Mode") or {}
    template = spec.get("TaskTemplate") or {}
    replicated = mode_spec.get("Replicated")
    if "Global" in mode_spec:
        mode, replicas = "global", None
    else:
        mode, replicas = "replicated", int((replicated or {}).get("Replicas", 1))
    condition = str((template.get("RestartPolicy") or {}).get("Condition") or "any")
    return Service(
        id=str(data.get("ID", "")),
        name=str(spec.get("Name", "")),
        stack=str(labels.get(model.STACK_NAMESPACE, "")),
        mode=mode,
        replicas=replicas,
        restart_condition=condition,
        container_labels=dict((template.get("ContainerSpec") or {}).get("Labels") or {}),
    )


def task_from_json(data: Mapping[str, Any]) -> Task:
    status = data.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    exit_code = container.get("ExitCode")
    return Task(
        id=str(data.get("ID", "")),
        service_id=str(data.get("ServiceID", "")),
        slot=int(data.get("Slot") or 0),
        node_id=str(data.get("NodeID", "")),
        desired=str(data.get("DesiredState", "")),
        state=str(status.get("State", "")),
        container_id=str(container.get("ContainerID", "")),
        created_at=_ts(data.get("CreatedAt")),
        state_at=_ts(status.get("Timestamp")),
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
    )


def ready_nodes_from_json(nodes: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    return frozenset(
        str(n.get("ID", ""))
        for n in nodes
        if (n.get("Status") or {}).get("State") == "ready"
        and (n.get("Spec") or {}).get("Availability", "active") == "active"
    )


def snapshot_from_json(
    node_id: str,
    services: Iterable[Mapping[str, Any]],
    tasks: Iterable[Mapping[str, Any]],
    nodes: Iterable[Mapping[str, Any]],
) -> Snapshot:
    by_id = {s.id: s for s in (service_from_json(d) for d in services)}
    return Snapshot(
        node_id=node_id,
        services=by_id,
        tasks=tuple(task_from_json(t) for t in tasks),
        ready_nodes=ready_nodes_from_json(nodes),
    )


def is_task(labels: Mapping[str, str]) -> bool:
    return bool(labels.get(model.SWARM_TASK_ID))


def refusal(fault: str, service: Service | None) -> str | None:
    """Why `fault` cannot be done on a task of `service` in Swarm mode (None: it can)."""
    if fault == "restart":
        return (
            "Swarm does not count a restarted task container (an orphan); use kill or stop, "
            "after which Swarm starts a new task"
        )
    if fault == "disconnect":
        return "a task's network attachments belong to Swarm; use partition or loss"
    if service is None:
        return None
    if fault in ("kill", "stop") and service.restart_condition == "none":
        return "its restart_policy condition is none: Swarm would never replace the task"
    if fault == "stop" and service.restart_condition == "on-failure":
        return (
            "under restart_policy on-failure Swarm never replaces a stopped task (exit 0); use kill"
        )
    return None


def _live(task: Task, snap: Snapshot, dead: str = "") -> bool:
    return (
        task.state == "running"
        and task.node_id in snap.ready_nodes
        and not (dead and task.container_id == dead)
    )


def convergence(snap: Snapshot, service_id: str, since: float, dead: str = "") -> Convergence:
    """Has the service got all its desired tasks running on ready nodes again?

    Replicated: one running task per slot for every desired replica, nothing desired
    running still on its way. Global: every task desired running on a ready node runs.
    `dead`: the container the fault ended; right after the fault the manager may still
    list its task as running (it has not noticed yet): that task never counts as running.
    `at`: the latest time a task created after `since` reached running.
    """
    service = snap.services.get(service_id)
    if service is None:
        return Convergence(True, 0, 0, None, "the service no longer exists")
    wanted = [
        t
        for t in snap.tasks
        if t.service_id == service_id and t.desired == "running" and t.node_id in snap.ready_nodes
    ]
    if service.mode == "replicated":
        desired = service.replicas or 0
        running = len({t.slot for t in wanted if _live(t, snap, dead)})
    else:
        desired = len({t.node_id for t in wanted})
        running = len({t.node_id for t in wanted if _live(t, snap, dead)})
    pending = [t for t in wanted if not _live(t, snap, dead)]
    replaced = [t.state_at for t in wanted if _live(t, snap, dead) and t.created_at >= since]
    at = max(replaced) if replaced else None
    ok = running >= desired and not pending
    detail = f"{running}/{desired} task(s) of {service.group} running"
    if pending:
        states = sorted({"ended" if t.container_id == dead else t.state for t in pending})
        detail += f", {len(pending)} not running yet ({', '.join(states)})"
    return Convergence(ok, running, desired, at, detail)


def targets_from_snapshot(
    snap: Snapshot,
    entries: Sequence[Mapping[str, Any]],
    *,
    label: str,
    value: str,
    self_id: str = "",
) -> list[Target]:
    """Every opted-in service's desired tasks as members of its group (`stack/service`),
    the local ones from the local container list (real state, health, pause), the other
    nodes' from the task list (`remote`); task containers the manager does not list as a
    current task (orphans) are shown but never counted or faulted; other containers as
    usual."""
    local = {str(e.get("Id", "")): e for e in entries}
    current = {t.container_id: t for t in snap.tasks if t.desired == "running" and t.container_id}
    out: list[Target] = []
    for entry in entries:
        labels = entry.get("Labels") or {}
        target = target_from_list_entry(entry, label=label, value=value, self_id=self_id)
        if not is_task(labels):
            out.append(target)
            continue
        task = current.get(target.id)
        service = snap.services.get(task.service_id) if task else None
        if task is None or service is None:
            if not target.running and target.state != "paused":
                continue  # a finished task kept as history: not a member of anything
            out.append(
                _replace(
                    target,
                    state="orphan" if target.running else target.state,
                    ineligible="not a current task of its service (Swarm does not count it)",
                )
            )
            continue
        out.append(_replace(target, group=service.group))
    for task in snap.tasks:
        if task.desired != "running" or task.container_id in local:
            continue
        service = snap.services.get(task.service_id)
        if service is None or service.container_labels.get(label) != value:
            continue
        here = task.node_id == snap.node_id
        running = _live(task, snap)
        state = "running" if running else (task.state or "unknown")
        if task.state == "running" and not running:
            state = "node down"
        slot = str(task.slot) if task.slot else task.node_id[:12]
        out.append(
            Target(
                kind="container",
                id=task.container_id or f"task:{task.id}",
                name=f"{service.name}.{slot}.{task.id[:12]}",
                group=service.group,
                state=state,
                labels=dict(service.container_labels),
                opted_in=True,
                remote=not here,
                ineligible=(
                    f"runs on node {task.node_id[:12]} (its agent may fault it)"
                    if not here
                    else "its container is not listed on this node yet"
                ),
            )
        )
    return out


def _replace(target: Target, **changes: Any) -> Target:
    import dataclasses

    return dataclasses.replace(target, **changes)


# --- the cluster, through a manager -------------------------------------------------


class SwarmCluster:
    """Reads the swarm through a manager: the local engine when it is one, else the
    endpoint in $CHAOS_SWARM_MANAGER. `last` keeps the latest snapshot for refusals."""

    def __init__(self, local: DockerEngine, manager: DockerEngine | None = None) -> None:
        self.local = local
        self._manager = manager
        self._node_id: str | None = None
        self._active: bool | None = None
        self.last: Snapshot | None = None

    def active(self) -> bool:
        """Is the local engine part of a swarm? (asked once; /info on the local node)"""
        if self._active is None:
            swarm = self.local.info().get("Swarm") or {}
            self._active = swarm.get("LocalNodeState") == "active"
            self._node_id = str(swarm.get("NodeID") or "")
            if self._active and self._manager is None:
                if swarm.get("ControlAvailable"):
                    self._manager = self.local
                elif os.environ.get(MANAGER_ENV):
                    self._manager = DockerEngine(base_url=os.environ[MANAGER_ENV])
        return bool(self._active)

    def manager(self) -> DockerEngine:
        if not self.active():
            raise DockerUnavailable("this Docker engine is not part of a swarm")
        if self._manager is None:
            raise DockerUnavailable(
                "this swarm node is a worker and only managers list services and tasks",
                hint=f"set {MANAGER_ENV} to a manager's Engine API (e.g. tcp://manager:2376 "
                "behind TLS), or run the agent on managers only",
            )
        return self._manager

    def snapshot(self) -> Snapshot:
        mgr = self.manager()
        services = mgr.swarm_services()
        tasks = mgr.swarm_tasks()
        nodes = mgr.swarm_nodes()
        self.last = snapshot_from_json(self._node_id or "", services, tasks, nodes)
        return self.last

    def service_of_container(self, container_id: str, labels: Mapping[str, str]) -> str:
        """The service id of a task container, from its labels or the task list."""
        sid = labels.get(model.SWARM_SERVICE_ID, "")
        if sid:
            return sid
        for task in self.snapshot().tasks:
            if task.container_id == container_id:
                return task.service_id
        return ""
