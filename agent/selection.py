"""Who may be faulted now, and why not: pure predicates over targets.

Every exclusion carries a reason sentence, printed by `chaos-agent targets` and
journaled by `run` ("not faulting web-1: protected (chaos.protect=true)").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.config import Config, resolve_fraction
from agent.model import ActiveFault, Group, Target


@dataclass(frozen=True)
class GroupRules:
    min_replicas: int = 2
    min_healthy: int | float = 1
    max_per_group: int | float = 1


@dataclass(frozen=True)
class Policy:
    """Everything selection and planning need to know, already validated."""

    label: str = "chaos.enable"
    value: str = "true"
    rules: GroupRules = GroupRules()
    group_rules: Mapping[str, GroupRules] = field(default_factory=dict)  # process groups
    max_concurrent: int = 1
    enabled: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"container": ("kill", "stop", "pause", "restart")}
    )
    weights: Mapping[str, float] = field(default_factory=dict)
    unavailable: Mapping[tuple[str, str], str] = field(default_factory=dict)  # host can't
    # per-target refusal by a fault (e.g. network fault on a host-network container)
    refuse: Callable[[Target, str], str | None] | None = None
    duration: float = 30.0
    params: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def rules_for(self, group: str, kind: str) -> GroupRules:
        if kind == "process":
            return self.group_rules.get(group, self.rules)
        return self.rules

    def weight(self, fault: str) -> float:
        return float(self.weights.get(fault, 1.0))


def enabled_faults(config: Config) -> dict[str, tuple[str, ...]]:
    """The faults the configuration lets the planner choose, per target kind."""
    process_faults: list[str] = []
    for p in config.processes:
        process_faults.extend(f for f in p.faults if f not in process_faults)
    return {"container": config.faults.enabled, "process": tuple(process_faults)}


def policy_from_config(
    config: Config,
    *,
    unavailable: Mapping[tuple[str, str], str] | None = None,
    refuse: Callable[[Target, str], str | None] | None = None,
) -> Policy:
    t = config.targets
    group_rules = {
        p.group: GroupRules(p.min_replicas, p.min_healthy, t.max_per_group)
        for p in config.processes
    }
    return Policy(
        label=t.label,
        value=t.value,
        rules=GroupRules(t.min_replicas, t.min_healthy, t.max_per_group),
        group_rules=group_rules,
        max_concurrent=t.max_concurrent,
        enabled=enabled_faults(config),
        weights=dict(config.faults.weights),
        unavailable=dict(unavailable or {}),
        refuse=refuse,
        duration=config.schedule.duration,
        params={name: config.faults.params_for(name) for name in config.faults.enabled},
    )


@dataclass(frozen=True)
class Eligibility:
    target: Target
    faults: tuple[str, ...]  # faults usable on it now (empty when not eligible)
    reason: str = ""  # why not, when not eligible

    @property
    def eligible(self) -> bool:
        return not self.reason


def group_targets(targets: Iterable[Target]) -> list[Group]:
    by_name: dict[tuple[str, str], list[Target]] = defaultdict(list)
    for t in targets:
        by_name[(t.kind, t.group)].append(t)
    return [
        Group(name=name, members=tuple(sorted(members, key=lambda m: (m.name, m.id))))
        for (_, name), members in sorted(by_name.items())
    ]


def usable_faults(target: Target, policy: Policy) -> tuple[list[str], list[str]]:
    """(usable faults, reasons for the ones left out) for one target."""
    enabled = policy.enabled.get(target.kind, ())
    usable: list[str] = []
    why_not: list[str] = []
    for fault in enabled:
        if target.allowed_faults is not None and fault not in target.allowed_faults:
            continue
        missing = policy.unavailable.get((target.kind, fault))
        if missing:
            why_not.append(f"{fault}: {missing}")
            continue
        refusal = policy.refuse(target, fault) if policy.refuse else None
        if refusal:
            why_not.append(f"{fault}: {refusal}")
            continue
        usable.append(fault)
    return usable, why_not


def evaluate(
    targets: Sequence[Target], active: Sequence[ActiveFault], policy: Policy
) -> list[Eligibility]:
    """Each target's eligibility (usable faults, or why not), in a stable order."""
    under_fault = {a.target_id: a for a in active}
    per_group_active: dict[tuple[str, str], int] = defaultdict(int)
    for a in active:
        per_group_active[(a.target_kind, a.group)] += 1

    found: list[Eligibility] = []
    for group in group_targets(targets):
        kind = group.members[0].kind
        rules = policy.rules_for(group.name, kind)
        members = len(group.members)
        free = [m for m in group.members if m.id not in under_fault]
        running_free = sum(1 for m in free if m.running)
        healthy_free = sum(1 for m in free if m.healthy)
        need_healthy = resolve_fraction(rules.min_healthy, members, round_up=True)
        max_faults = resolve_fraction(rules.max_per_group, members, round_up=False)
        active_here = per_group_active[(kind, group.name)]
        for t in group.members:
            found.append(
                _eligibility(
                    t,
                    policy,
                    rules,
                    under_fault.get(t.id),
                    running_free=running_free,
                    healthy_free=healthy_free,
                    need_healthy=need_healthy,
                    max_faults=max_faults,
                    active_here=active_here,
                    members=members,
                )
            )
    return found


def _eligibility(
    t: Target,
    policy: Policy,
    rules: GroupRules,
    fault: ActiveFault | None,
    *,
    running_free: int,
    healthy_free: int,
    need_healthy: int,
    max_faults: int,
    active_here: int,
    members: int,
) -> Eligibility:
    def no(reason: str) -> Eligibility:
        return Eligibility(t, (), reason)

    if not t.opted_in:
        return no(f"not opted in (no {policy.label}={policy.value} label)")
    if t.is_self:
        return no("is the chaos agent itself")
    if t.protected:
        return no("protected (chaos.protect=true)")
    if t.ineligible:
        return no(t.ineligible)
    if fault is not None:
        return no(f"already under a fault ({fault.fault})")
    if not t.running:
        return no(f"not running ({t.state or 'unknown'})")
    usable, why_not = usable_faults(t, policy)
    if not usable:
        detail = "; ".join(why_not) if why_not else "none of its chaos.faults are enabled"
        return no(f"no usable fault ({detail})")
    if running_free < rules.min_replicas:
        return no(
            f"group {t.group} has {running_free} running replica(s) outside faults, "
            f"fewer than min_replicas={rules.min_replicas}"
        )
    if max_faults < 1:
        return no(
            f"max_per_group={_show(rules.max_per_group)} of {members} replica(s) rounds down to 0"
        )
    if active_here >= max_faults:
        return no(
            f"group {t.group} already has {active_here} fault(s) (max_per_group={max_faults})"
        )
    left = healthy_free - (1 if t.healthy else 0)
    if left < need_healthy:
        return no(
            f"faulting it would leave {left} healthy replica(s) in {t.group}, "
            f"fewer than min_healthy={need_healthy}"
        )
    return Eligibility(t, tuple(usable))


def _show(value: int | float) -> str:
    return str(value) if isinstance(value, int) else f"{value * 100:g}%"


def describe_selection(found: Sequence[Eligibility], policy: Policy) -> str:
    """One sentence saying what is targeted (printed by `run` at start)."""
    groups = {(v.target.kind, v.target.group) for v in found}
    eligible = sum(1 for v in found if v.eligible)
    # what may be chosen on this host (not only on targets eligible right now)
    faults = sorted(
        {
            name
            for kind, names in policy.enabled.items()
            for name in names
            if (kind, name) not in policy.unavailable
        }
    )
    rules = policy.rules
    return (
        f"Targeting {len(found)} opted-in target(s) in {len(groups)} group(s) "
        f"(label {policy.label}={policy.value}); {eligible} eligible now; "
        f"faults {', '.join(faults) if faults else 'none usable'}; at most "
        f"{policy.max_concurrent} at a time, {_show(rules.max_per_group)} per group, "
        f"groups need {rules.min_replicas}+ running replicas and keep "
        f"{_show(rules.min_healthy)} healthy untouched."
    )
