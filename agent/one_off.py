"""`chaos-agent inject`: one fault now, on a target named by the user.

The same safety rules as a scheduled fault unless --force (which still never faults the
agent itself); the engine then takes the lease, writes the ledger and injects as usual.
`wait_for_heals` ends as soon as the last heal is settled (the command's exit).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.errors import NotEligible, TargetNotFound, Unsupported, UsageError
from agent.model import ActiveFault, Plan, Target
from agent.selection import Policy
from agent.textsafe import printable

if TYPE_CHECKING:
    from agent.engine import Engine


def find_target(name: str, targets: Sequence[Target], policy: Policy) -> Target:
    """The one target named `name` (name, full id, or an id prefix of 6+ characters)."""
    exact = [t for t in targets if name in (t.name, t.id)]
    if not exact:
        exact = [t for t in targets if len(name) >= 6 and t.id.startswith(name)]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise UsageError(f"{name!r} matches {len(exact)} targets; use the full id")
    raise TargetNotFound(
        f"no opted-in target named {printable(name)!r}",
        hint=f"see `chaos-agent targets`; containers need the label {policy.label}={policy.value}",
    )


def inject_now(
    engine: Engine, fault: str, name: str, duration: float, *, force: bool
) -> ActiveFault:
    switch = engine.config.agent.kill_switch
    if switch.exists():  # even --force: the kill switch is the operator's last word
        raise NotEligible(
            f"the kill switch is on ({switch}): nothing is injected",
            hint="remove the file to allow faults again",
        )
    targets = engine.discover()
    target = find_target(name, targets, engine.policy)
    verdict = {v.target.id: v for v in engine.evaluate(targets)}[target.id]
    impl = engine.fault_for(target.kind, fault)
    missing = impl.unavailable()
    if missing:
        raise Unsupported(f"{fault} is not available on this host: {missing}")
    if not force:
        if not verdict.eligible:
            raise NotEligible(
                f"not faulting {printable(target.name)}: {verdict.reason}",
                hint="--force overrides the safety rules",
            )
        if fault not in verdict.faults:
            raise NotEligible(
                f"{fault} is not allowed on {printable(target.name)}",
                hint="see its chaos.faults label and [faults].enabled",
            )
        max_concurrent = engine.policy.max_concurrent
        if len(engine.active) >= max_concurrent:
            raise NotEligible(f"max_concurrent={max_concurrent} fault(s) already active")
    elif target.is_self:
        raise NotEligible("refusing to fault the chaos agent itself, even with --force")
    params = engine.config.faults.params_for(fault)
    return engine.inject(Plan(fault=fault, target=target, duration_s=duration, params=params))


def on_signals(handler: Callable[[str], None]) -> None:
    """SIGTERM, SIGINT, SIGHUP call handler(signal name); it must only set a flag."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: handler(signal.Signals(signum).name))


def wait_for_heals(engine: Engine) -> None:
    """Heal each fault when due; return as soon as none is left (or a stop is asked)."""
    while engine.active and not engine.stop_requested:
        engine.renew_leases()  # under a coordinator: keep the lease, learn of a halt
        engine.heal_due()
        if not engine.active:
            break
        engine.wake.wait(engine.next_wakeup(None))
        engine.wake.clear()
