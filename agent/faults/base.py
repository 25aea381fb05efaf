"""The narrow protocol every fault implements, and the registry the engine uses.

A fault is an object with a name and the target kind it applies to. The engine
writes an ActiveFault to the ledger *before* calling `inject`, so `heal` must work
from that record alone (after a crash `extra` may be empty). `heal` is idempotent,
re-inspects the target, leaves a restarted/recreated target alone, and reports
healed only once the state is verified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from agent.errors import NotEligible, Unsupported, UsageError
from agent.model import ActiveFault, HealOutcome, Target, TargetKind


@runtime_checkable
class Fault(Protocol):
    name: str
    kind: TargetKind  # the kind of target it applies to

    def unavailable(self) -> str | None:
        """None if this host can perform the fault, else a one-line reason."""
        ...

    def refuse(self, target: Target) -> str | None:
        """None if the fault applies to this target, else a reason (e.g. host network)."""
        ...

    def artifacts(
        self, fault_id: str, target: Target, params: Mapping[str, Any]
    ) -> tuple[str, ...]:
        """Names of everything inject will create, derived from the fault id only."""
        ...

    def inject(self, record: ActiveFault) -> Mapping[str, Any]:
        """Do the fault. Returns facts to merge into the record's `extra`."""
        ...

    def heal(self, record: ActiveFault) -> HealOutcome:
        """Undo the fault, idempotently; verify before saying healed."""
        ...

    def describe(self, record: ActiveFault) -> str:
        """'pause web-2 for 30s' — used by dry-run and logs."""
        ...


def describe_record(fault: str, record: ActiveFault) -> str:
    """'pause web-2 (web) for 30s': the one wording every fault uses."""
    from agent.durations import format_duration

    span = format_duration(max(0.0, record.deadline - record.injected_at))
    return f"{fault} {record.target_name} ({record.group}) for {span}"


class FaultRegistry:
    """Faults by (target kind, name).

    A family of faults can be declared by name and built on first use (`add_family`):
    `targets`, `status` and a one-off pause never import the network or process fault
    modules (nsenter/iptables helpers, psutil) unless such a fault is enabled or asked for.
    """

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._faults: dict[tuple[str, str], Fault] = {}
        self._families: dict[tuple[str, str], Callable[[], Iterable[Fault]]] = {}
        for fault in faults:
            self.add(fault)

    def add(self, fault: Fault) -> None:
        self._faults[(fault.kind, fault.name)] = fault

    def add_family(
        self, kind: str, names: Iterable[str], build: Callable[[], Iterable[Fault]]
    ) -> None:
        """Declare faults `build()` makes when one of them is first asked for. An
        ImportError from `build` (an optional dependency missing) leaves them out."""
        for name in names:
            self._families[(kind, name)] = build

    def _build(self, key: tuple[str, str]) -> None:
        build = self._families.get(key)
        if build is None:
            return
        for k in [k for k, b in self._families.items() if b is build]:
            del self._families[k]
        try:
            built = list(build())
        except ImportError:
            return
        for fault in built:
            self._faults.setdefault((fault.kind, fault.name), fault)

    def get(self, kind: str, name: str) -> Fault | None:
        self._build((kind, name))
        return self._faults.get((kind, name))

    def all(self) -> list[Fault]:
        for key in list(self._families):
            self._build(key)
        return list(self._faults.values())

    def names(self, kind: str) -> list[str]:
        keys = [*self._faults, *self._families]
        return list(dict.fromkeys(n for (k, n) in keys if k == kind))

    def require(self, kind: str, name: str) -> Fault:
        """The fault, or UsageError naming the ones there are."""
        fault = self.get(kind, name)
        if fault is None:
            known = ", ".join(sorted(self.names(kind))) or "none"
            raise UsageError(f"unknown {kind} fault {name!r} (known: {known})")
        return fault

    def ready(self, name: str, target: Target) -> Fault:
        """The fault, if this host can do it and it applies to `target`; else AgentError."""
        fault = self.require(target.kind, name)
        missing = fault.unavailable()
        if missing:
            raise Unsupported(f"{name} is not available on this host: {missing}")
        refusal = fault.refuse(target)
        if refusal:
            raise NotEligible(f"{name} refused on {target.name}: {refusal}")
        return fault

    def unavailable(
        self, only: Iterable[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], str]:
        """Faults this host cannot do, with the reason (checked once, at start).
        `only`: check just these (kind, name) pairs, e.g. the enabled ones (only their
        families are built)."""
        wanted = set(only) if only is not None else None
        for key in list(self._families):
            if wanted is None or key in wanted:
                self._build(key)
        out: dict[tuple[str, str], str] = {}
        for key, fault in self._faults.items():
            if wanted is not None and key not in wanted:
                continue
            reason = fault.unavailable()
            if reason:
                out[key] = reason
        return out
