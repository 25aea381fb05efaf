"""What `run` shows while it runs: a live terminal view (rich) or plain one-line status.

The engine builds the snapshot (a plain dict, see `render`) and calls
`LiveView.update(snapshot)`; the view redraws itself a few times a second, so
countdowns tick between updates. Only for a TTY: elsewhere use `plain_line`.
Every string from the outside is shown as text (never as rich markup), with
control characters made visible. `rich` is imported lazily.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agent.textsafe import printable

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from agent.engine import Engine


def snapshot(engine: Engine) -> dict[str, Any]:
    """What the live view shows, read from the running engine."""
    now_wall, now_mono = engine.clock(), engine.monotonic()
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in engine.last_eligibility:
        t = v.target
        groups.setdefault(t.group, []).append(
            {"name": t.name, "state": t.state, "health": t.health}
            | {"eligible": v.eligible, "reason": v.reason}
        )
    active = [
        {"fault_id": a.fault_id, "fault": a.fault, "target": a.target_name}
        | {"group": a.group, "deadline": a.deadline}
        for a in engine.active
    ]
    next_at = engine.next_attempt
    kill_switch = engine.kill_switch.path.name if engine.kill_switch.present else None
    return {
        "host": engine.config.agent.host,
        "dry_run": engine.dry_run,
        "targets_sentence": engine.describe() if engine.last_eligibility else "",
        "groups": [{"name": n, "members": m} for n, m in groups.items()],
        "active": active,
        "next_fault_at": None if next_at is None else now_wall + max(0.0, next_at - now_mono),
        "probes": engine.probes.snapshot() if engine.probes is not None else {},
        "halted": engine.halted or kill_switch,
    }


def countdown(seconds: float) -> str:
    """12s, 1m05s, 2h03m; 'due' once the moment has passed."""
    if seconds <= 0:
        return "due"
    s = int(seconds + 0.999)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _probe_status(p: Mapping[str, Any]) -> str:
    last = p.get("last_ok")
    return "waiting" if last is None else ("ok" if last else "FAIL")


def _availability(p: Mapping[str, Any]) -> str:
    total = p.get("total") or 0
    if not total:
        return "-"
    return f"{(p.get('ok') or 0) / total * 100:.0f}% ({p.get('ok', 0)}/{total})"


def plain_line(snapshot: Mapping[str, Any], now: float | None = None) -> str:
    """One line of status for logs and non-terminals."""
    at = time.time() if now is None else now
    parts = [
        printable(snapshot.get("host", "?"), 60) + (" [dry run]" if snapshot.get("dry_run") else "")
    ]
    active = snapshot.get("active") or []
    if active:
        shown = ", ".join(
            f"{printable(a.get('fault', '?'), 20)} {printable(a.get('target', '?'), 60)} "
            f"({printable(a.get('group', '?'), 40)}) {countdown(float(a.get('deadline', at)) - at)} left"
            for a in active
        )
        parts.append(f"{len(active)} active: {shown}")
    else:
        parts.append("no active fault")
    nxt = snapshot.get("next_fault_at")
    parts.append(f"next fault in {countdown(nxt - at)}" if nxt is not None else "no fault planned")
    probes = snapshot.get("probes") or {}
    if probes:
        shown = ", ".join(
            f"{printable(name, 40)} {_probe_status(p)}"
            + (
                ""
                if p.get("last_ok") in (True, None)
                else f" ({printable(p.get('last_detail', ''), 80)})"
            )
            + f" {_availability(p)}"
            for name, p in probes.items()
        )
        parts.append(f"probes: {shown}")
    if snapshot.get("halted"):
        parts.append(f"HALTED: {printable(snapshot['halted'], 300)}")
    return "; ".join(parts)


def render(snapshot: Mapping[str, Any], now: float) -> RenderableType:
    """The live view for one snapshot at time `now` (a rich renderable)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def t(value: object, style: str = "", limit: int = 80) -> Text:
        return Text(printable(value, limit), style=style)

    title = Text.assemble(
        ("chaos-agent ", "bold"),
        t(snapshot.get("host", "?"), "bold cyan", 60),
        ("  DRY RUN: nothing is injected" if snapshot.get("dry_run") else "", "yellow"),
    )
    parts: list[Any] = [title]
    if snapshot.get("halted"):
        parts.append(Text.assemble(("HALTED: ", "bold red"), t(snapshot["halted"], "red", 300)))
    if snapshot.get("targets_sentence"):
        parts.append(t(snapshot["targets_sentence"], "dim", 300))

    groups = Table(title="Groups", title_justify="left", expand=False, show_edge=False)
    for header in ("group", "member", "state", "health", "eligible"):
        groups.add_column(header)
    for g in snapshot.get("groups") or []:
        first = True
        for m in g.get("members") or []:
            eligible = m.get("eligible")
            state = str(m.get("state", "?"))
            groups.add_row(
                t(g.get("name", "?"), "bold", 40) if first else Text(""),
                t(m.get("name", "?"), "", 50),
                t(state, "green" if state == "running" else "yellow", 20),
                t(m.get("health", ""), "", 20),
                Text("yes", "green") if eligible else t(f"no: {m.get('reason', '')}", "dim", 80),
            )
            first = False
        if first:
            groups.add_row(t(g.get("name", "?"), "bold", 40), Text("(no members)", "dim"))
    parts.append(groups)

    active = snapshot.get("active") or []
    faults = Table(title=f"Active faults ({len(active)})", title_justify="left", show_edge=False)
    for header in ("fault", "target", "group", "heals in", "id"):
        faults.add_column(header)
    for a in active:
        left = float(a.get("deadline", now)) - now
        faults.add_row(
            t(a.get("fault", "?"), "bold magenta", 20),
            t(a.get("target", "?"), "", 50),
            t(a.get("group", "?"), "", 40),
            Text(countdown(left), "bold" if left > 0 else "red"),
            t(a.get("fault_id", ""), "dim", 40),
        )
    parts.append(faults if active else Text("No active fault.", "dim"))

    nxt = snapshot.get("next_fault_at")
    if nxt is None:
        parts.append(Text("Next fault: none planned", "dim"))
    else:
        parts.append(Text(f"Next fault in {countdown(float(nxt) - now)}"))

    probes = snapshot.get("probes") or {}
    if probes:
        table = Table(title="Probes", title_justify="left", show_edge=False)
        for header in ("probe", "status", "last result", "availability", "latency"):
            table.add_column(header)
        for name, p in probes.items():
            status = _probe_status(p)
            style = {"ok": "bold green", "FAIL": "bold red"}.get(status, "dim")
            latency = p.get("latency_ms")
            window = p.get("window")
            avail = _availability(p) + (f" over {window:g}s" if window and p.get("total") else "")
            table.add_row(
                t(name, "bold", 40),
                Text(status, style),
                t(p.get("last_detail", ""), "", 80),
                Text(avail),
                Text("-" if latency is None else f"{latency:.{1 if latency < 10 else 0}f} ms"),
            )
        parts.append(table)
    else:
        parts.append(Text("No probes configured: availability is not measured.", "dim"))
    return Group(*parts)


class LiveView:
    """A rich Live display fed snapshots by the engine; redraws itself to tick countdowns."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        refresh_per_second: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._console = console
        self._refresh = refresh_per_second
        self._clock = clock
        self._snapshot: Mapping[str, Any] = {}
        self._live: Live | None = None

    def __rich__(self) -> RenderableType:
        return render(self._snapshot, self._clock())

    def start(self) -> None:
        if self._live is not None:
            return
        from rich.live import Live

        self._live = Live(
            self,
            console=self._console,
            refresh_per_second=self._refresh,
            auto_refresh=True,
            transient=False,
        )
        self._live.start()

    def update(self, snapshot: Mapping[str, Any]) -> None:
        self._snapshot = snapshot
        if self._live is not None:
            self._live.refresh()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
