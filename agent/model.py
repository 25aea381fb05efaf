"""Plain data shared by every layer: targets, plans, active faults, and every label key.

Pure: standard library only, frozen dataclasses, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# --- the label contract (every key in one place) -----------------------------
LABEL_ENABLE = "chaos.enable"  # opt-in; value must equal the configured one ("true")
LABEL_GROUP = "chaos.group"  # explicit replica group name
LABEL_PROTECT = "chaos.protect"  # "true": never touched
LABEL_FAULTS = "chaos.faults"  # comma list of allowed faults, e.g. "kill,pause"
LABEL_AGENT = "chaos.agent"  # set on the agent's own image/container: never a target
LABEL_NETNS_HELPER = "chaos.netns-helper"  # a short-lived container in a target's netns
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
# set by the Swarm engine on every task container (they override user labels)
SWARM_SERVICE_ID = "com.docker.swarm.service.id"
SWARM_SERVICE_NAME = "com.docker.swarm.service.name"
SWARM_TASK_ID = "com.docker.swarm.task.id"
SWARM_NODE_ID = "com.docker.swarm.node.id"
STACK_NAMESPACE = "com.docker.stack.namespace"  # set by `docker stack deploy`
# host processes opt in through an environment variable (read with psutil)
PROCESS_GROUP_ENV = "CHAOS_GROUP"

TargetKind = Literal["container", "process"]
Health = Literal["healthy", "unhealthy", "starting", "none"]

# Every fault the agent knows, by family. Host capabilities decide which are usable.
CONTAINER_FAULTS = ("kill", "stop", "pause", "restart")
NETWORK_FAULTS = ("partition", "loss", "latency", "jitter", "bandwidth", "disconnect")
PROCESS_FAULTS = ("kill", "pause")
ALL_FAULTS = tuple(dict.fromkeys(CONTAINER_FAULTS + NETWORK_FAULTS))


@dataclass(frozen=True)
class Target:
    """One thing that may be faulted: a container or a host process."""

    kind: TargetKind
    id: str  # full container id, or "pid:<pid>:<create_time>" for a process
    name: str
    group: str
    state: str  # docker state: running, paused, exited, restarting, created, dead
    health: Health = "none"
    labels: Mapping[str, str] = field(default_factory=dict)
    opted_in: bool = True
    protected: bool = False
    is_self: bool = False  # the agent itself (by id) or a container labelled as an agent
    allowed_faults: frozenset[str] | None = None  # None: every fault the config enables
    network_mode: str = ""  # "host", "none", "container:<id>", bridge/user network name
    pid: int = 0  # host PID of the main process, when known
    remote: bool = False  # a Swarm task on another node: counted in its group, never faulted here
    ineligible: str = ""  # discovery's reason it may not be faulted (e.g. an orphan task container)
    # other containers in this one's network namespace (their network_mode is container:<it>),
    # gathered once per discovery so that refusing a network fault needs no Docker call
    netns_sharers: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def healthy(self) -> bool:
        """Running and not failing its healthcheck (no healthcheck counts as healthy)."""
        return self.running and self.health in ("healthy", "none")

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class Group:
    name: str
    members: tuple[Target, ...]

    @property
    def running(self) -> int:
        return sum(1 for m in self.members if m.running)


@dataclass(frozen=True)
class Plan:
    """What the planner decided to do now."""

    fault: str
    target: Target
    duration_s: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.fault} {self.target.name} ({self.target.group}) for {self.duration_s:g}s"

    def intent(
        self,
        fault_id: str,
        now: float,
        pinned: Identity,
        artifacts: tuple[str, ...],
        lease: Mapping[str, Any] | None,
    ) -> ActiveFault:
        """The record written to the ledger before this plan is injected."""
        t = self.target
        return ActiveFault(
            fault_id=fault_id, fault=self.fault, target_kind=t.kind, target_id=t.id,
            target_name=t.name, group=t.group, injected_at=now, deadline=now + self.duration_s,
            started_at=pinned.started_at, pid=pinned.pid, params=dict(self.params),
            artifacts=artifacts, status="injecting", lease=lease,
        )  # fmt: skip


@dataclass(frozen=True)
class Skip:
    """The planner decided not to act; `reason` is a sentence for the journal."""

    reason: str


@dataclass(frozen=True)
class ActiveFault:
    """A fault as written to the ledger *before* it is injected.

    Everything heal needs is here, so heal works after a crash at any point:
    the target's pinned identity, the artifact names, the deadline (wall clock,
    so it survives a restart of the agent).
    """

    fault_id: str
    fault: str
    target_kind: TargetKind
    target_id: str
    target_name: str
    group: str
    injected_at: float  # wall clock (unix seconds) when the intent was recorded
    deadline: float  # wall clock (unix seconds) when heal is due
    started_at: str = ""  # container State.StartedAt (or process create_time) at inject
    pid: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()  # names of everything inject will create (chains, ...)
    extra: Mapping[str, Any] = field(default_factory=dict)  # facts inject learned
    status: Literal["injecting", "active", "healing"] = "injecting"
    lease: Mapping[str, Any] | None = None
    heal_attempts: int = 0
    last_error: str = ""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["params"] = dict(self.params)
        data["extra"] = dict(self.extra)
        data["artifacts"] = list(self.artifacts)
        data["lease"] = dict(self.lease) if self.lease is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActiveFault:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["artifacts"] = tuple(kwargs.get("artifacts") or ())
        kwargs["params"] = dict(kwargs.get("params") or {})
        kwargs["extra"] = dict(kwargs.get("extra") or {})
        return cls(**kwargs)

    def evolve(self, **changes: Any) -> ActiveFault:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class HealOutcome:
    """How a heal ended. `healed` means the state was verified, not that a call returned."""

    healed: bool
    how: Literal["healed", "already", "environment", "gone", "failed"]
    detail: str = ""
    converged_s: float | None = None  # Swarm: seconds from the fault until the service converged


@dataclass(frozen=True)
class PastFault:
    """History the planner sees: when and where faults started."""

    fault: str
    target_id: str
    group: str
    at: float  # wall clock


@dataclass(frozen=True)
class Identity:
    """A target's identity read right before inject (container StartedAt, or create time)."""

    started_at: str
    pid: int


@dataclass(frozen=True)
class Endpoint:
    """A container's attachment to one network: enough to restore it exactly.

    Its JSON (`to_json`, keys sorted) is what the disconnect fault writes to the ledger."""

    network: str
    network_id: str = ""
    static_ipv4: str = ""
    static_ipv6: str = ""
    ipv4: str = ""
    ipv6: str = ""
    mac: str = ""
    aliases: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    link_local_ips: tuple[str, ...] = ()
    driver_opts: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("aliases", "links", "link_local_ips"):
            data[key] = sorted(data[key])
        data["driver_opts"] = dict(self.driver_opts)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoint:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("aliases", "links", "link_local_ips"):
            kwargs[key] = tuple(kwargs.get(key) or ())
        kwargs["driver_opts"] = dict(kwargs.get("driver_opts") or {})
        return cls(**kwargs)


@dataclass(frozen=True)
class NetAddress:
    """A container's address on one network in one family, with the network's prefix
    length and gateway (either may be missing)."""

    network: str
    v6: bool
    ip: str = ""
    prefix: int = 0
    gateway: str = ""


@dataclass(frozen=True)
class ListedContainer:
    """One entry of a container list, as the namespace faults, the sweep and the helper
    route read it (partition's peers, the sweep's namespaces, stale helpers)."""

    id: str
    name: str
    group: str
    running: bool = False
    network_mode: str = ""
    created: float = 0.0  # unix seconds
    labels: Mapping[str, str] = field(default_factory=dict)
    ipv4: tuple[str, ...] = ()  # on every network
    ipv6: tuple[str, ...] = ()  # global IPv6, on every network


@dataclass(frozen=True)
class ContainerState:
    """What the container faults read about a container (a typed view of an inspect)."""

    id: str
    started_at: str = ""  # State.StartedAt, as the engine wrote it
    running: bool = False
    paused: bool = False
    restarting: bool = False
    status: str = ""
    pid: int = 0
    networks: Mapping[str, Endpoint] = field(default_factory=dict)
    # what the namespace faults, the sweep and the helper route read besides
    name: str = ""
    image: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    pid_mode: str = ""  # HostConfig.PidMode ("host" when it shares the host's PIDs)
    addresses: tuple[NetAddress, ...] = ()  # per network, IPv4 then IPv6
    published: tuple[tuple[str, str], ...] = ()  # (port, protocol) bound on the host, sorted

    def same_instance(self, record: ActiveFault) -> bool:
        """The recorded container, in the same run (not restarted, not recreated)."""
        return self.id == record.target_id and self.started_at == record.started_at

    def same_running_instance(self, record: ActiveFault) -> bool:
        """The recorded container, running, with a process to enter (network faults)."""
        return (
            self.id == record.target_id
            and self.running
            and (not record.started_at or self.started_at == record.started_at)
            and self.pid > 1
        )

    def changed_reason(self, record: ActiveFault) -> str:
        if not self.running:
            return f"{record.target_name} is not running ({self.status or '?'})"
        return (
            f"{record.target_name} was restarted or recreated (started {self.started_at}, "
            f"recorded {record.started_at})"
        )
