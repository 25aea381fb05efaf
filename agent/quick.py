"""Commands that answer without typer: `--help`, `status`, `targets` and `inject`.

typer (and click under it) costs more to import than these commands take to run, so
`agent.main` answers the plain forms here and hands everything else (other commands,
per-command --help, unknown options, errors in the arguments) to the typer app in
`agent.cli`, which calls the same renderers below: one implementation of each output.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.textsafe import echo, printable

# what `chaos-agent --help` prints; tests check it names every command the typer app has
HELP_COMMANDS = (
    (
        "run",
        "Run the agent: fault eligible replicas at random until stopped; heal everything on exit.",
    ),
    ("targets", "Groups, members, health, eligibility, and why not."),
    (
        "inject",
        "One fault now (same safety rules unless --force); waits and heals unless --detach.",
    ),
    ("heal", "Heal every fault in the ledger now (and remove tagged leftovers)."),
    ("status", "Active faults and when each heals."),
    ("report", "What the run showed: per fault, per group, availability."),
    ("config", "Check or show the configuration."),
    ("coordinator", "The fleet coordinator (leases over SSH)."),
)
HELP = (
    "Usage: chaos-agent [OPTIONS] COMMAND [ARGS]...\n\n"
    "A Chaos Monkey for self-hosted Docker stacks: fault one replica at a time, never below\n"
    "a safe number of replicas, always heal.\n\n"
    "Options:\n  --help  Show this message and exit.\n\n"
    "Commands:\n"
    + "".join(f"  {name:<12} {text}\n" for name, text in HELP_COMMANDS)
    + "\n`chaos-agent COMMAND --help` describes each command's options.\n"
)


def error_line(exc: AgentError) -> str:
    return f"chaos-agent: error: {printable(exc.one_line(), 600)}"


def _log(message: str) -> None:
    echo(f"{time.strftime('%H:%M:%S')} {message}", err=True)


# -- status -------------------------------------------------------------------------------
def status_text(config_path: str | None, *, as_json: bool) -> str:
    """What `status` prints: the ledger's active faults and when each heals."""
    from agent.config import load_config
    from agent.ledger import Ledger

    config = load_config(config_path)
    records = Ledger(config.agent.state_dir).load()
    holder = lock_holder(config.agent.state_dir)
    from agent.watchdog import deadman_holder

    deadman = deadman_holder(config.agent.state_dir)
    now = time.time()
    retries = config.agent.heal_retries
    if as_json:
        return json.dumps(
            {
                "state_dir": str(config.agent.state_dir),
                "agent_pid": holder,
                "deadman": deadman,
                "kill_switch": config.agent.kill_switch.exists(),
                "active": [
                    {
                        **r.to_json(),
                        "heals_in": round(r.deadline - now, 3),
                        "stuck": r.heal_attempts >= retries,
                    }
                    for r in records
                ],
            },
            indent=2,
        )
    lines = [
        f"state {config.agent.state_dir}: "
        f"{'agent running (pid ' + str(holder) + ')' if holder else 'no agent running'}"
        f"{'; dead-man armed: ' + printable(deadman) if deadman else ''}"
        f"{'; KILL SWITCH ON' if config.agent.kill_switch.exists() else ''}"
    ]
    if not records:
        lines.append("no active faults")
    for r in records:
        due = r.deadline - now
        when = f"heals in {due:.0f}s" if due > 0 else f"overdue by {-due:.0f}s"
        stuck = " STUCK: " + printable(r.last_error) if r.heal_attempts >= retries else ""
        lines.append(
            f"{r.fault_id} {r.fault:<9} {printable(r.target_name):<30} {r.group:<20} {when}{stuck}"
        )
    return "\n".join(lines)


def lock_holder(state_dir: Path) -> int | None:
    """The PID of the agent holding the state directory's lock, if one does."""
    from agent.ledger import lock_holder as holder_text

    text = holder_text(state_dir)
    if text is None:
        return None
    pid = text.split(" ")[0]
    return int(pid) if pid.isdigit() else -1


# -- targets ------------------------------------------------------------------------------
def targets_text(config_path: str | None, *, as_json: bool, all_: bool) -> str:
    """What `targets` prints: groups, members, eligibility and why not."""
    from agent.config import load_config
    from agent.wiring import build_engine

    config = load_config(config_path)
    engine = build_engine(config, config_path=config_path, probes=False, log=_log)
    found = engine.discover()
    if all_:
        from agent.adapters.docker_engine import DockerEngine, own_container_id
        from agent.discovery import discover_all_containers

        seen = {t.id for t in found}
        found += [
            t
            for t in discover_all_containers(config, DockerEngine(), own_container_id())
            if t.id not in seen
        ]
    try:
        engine.active = engine.ledger.load()
    except AgentError:
        engine.active = []
    verdicts = engine.evaluate(found)
    unavailable = engine.policy.unavailable
    if as_json:
        out = {
            "sentence": engine.describe(),
            "unavailable_faults": [
                {"kind": k, "fault": f, "reason": r} for (k, f), r in sorted(unavailable.items())
            ],
            "targets": [
                {
                    "kind": v.target.kind,
                    "id": v.target.id,
                    "name": v.target.name,
                    "group": v.target.group,
                    "state": v.target.state,
                    "health": v.target.health,
                    "eligible": v.eligible,
                    "faults": list(v.faults),
                    "reason": v.reason,
                }
                for v in verdicts
            ],
        }
        return json.dumps(out, indent=2)
    lines = [engine.describe()]
    current = None
    for v in verdicts:
        if v.target.group != current:
            current = v.target.group
            members = [w for w in verdicts if w.target.group == current]
            lines.append(f"\ngroup {printable(current)} ({len(members)} member(s))")
        health = "" if v.target.health == "none" else f", {v.target.health}"
        mark = "eligible: " + ", ".join(v.faults) if v.eligible else "not eligible: " + v.reason
        lines.append(
            f"  {printable(v.target.name):<32} {v.target.state}{health:<12} {printable(mark, 300)}"
        )
    for (kind, fault), reason in sorted(unavailable.items()):
        lines.append(f"\n{kind} fault {fault} unavailable on this host: {reason}")
    return "\n".join(lines)


# -- inject -------------------------------------------------------------------------------


def inject_command(
    config_path: str | None,
    fault: str,
    name: str,
    duration: str | None,
    *,
    force: bool,
    detach: bool,
    dry_run: bool,
    log: Callable[[str], None],
) -> int:
    """`chaos-agent inject` (here and in the typer app): the exit code; raises AgentError.

    What a person waits for is the effect, then the exit once it is healed: the ledger's
    records are healed first (recover), but the sweep of tagged leftovers (one namespace
    scan per container, hundreds of milliseconds) runs beside the wait, after the fault
    landed (it never touches what an active record owns); with --detach it is left to
    `run`, `heal` and the next start."""
    import threading

    from agent.config import load_config
    from agent.durations import positive_duration
    from agent.errors import UsageError
    from agent.ledger import StateLock
    from agent.model import ALL_FAULTS
    from agent.one_off import inject_now, on_signals, wait_for_heals
    from agent.wiring import build_engine

    config = load_config(config_path)
    if fault not in ALL_FAULTS:
        raise UsageError(f"unknown fault {fault!r} (known: {', '.join(ALL_FAULTS)})")
    seconds = positive_duration(duration, config.schedule.duration, "--duration")
    dry = dry_run or config.agent.dry_run
    lock: Any = None
    if not dry:
        lock = StateLock(config.agent.state_dir)
        lock.acquire()
    try:
        engine = build_engine(config, log=log, config_path=config_path, probes=False, dry_run=dry)
        sweep, engine.sweep = engine.sweep, None  # after the inject (see above)
        engine.recover()
        engine.sweep = sweep
        record = inject_now(engine, fault, name, seconds, force=force)
        if detach:
            if engine.arm_deadman is None:
                log("warning: the dead-man heal is off; run `chaos-agent heal` after the duration")
            due = time.strftime("%H:%M:%S", time.localtime(record.deadline))
            log(f"detached: {record.fault} on {printable(record.target_name)} heals at {due}")
            return 0
        on_signals(engine.request_stop)
        sweeper = threading.Thread(target=engine.sweep_leftovers, name="sweep", daemon=True)
        sweeper.start()
        wait_for_heals(engine)
        if not engine.stop_requested:  # on a signal, heal now; the sweep is idempotent
            sweeper.join()
        return engine.shutdown(engine.stop_requested or "done")
    finally:
        if lock is not None:
            lock.release()


# -- the dispatcher -------------------------------------------------------------------------
VALUES = {"-c": "--config", "--config": "--config", "-d": "--duration", "--duration": "--duration"}
FLAGS = {
    "status": {"--json"},
    "targets": {"--json", "--all"},
    "inject": {"--force", "--detach", "--dry-run"},
}
POSITIONALS = {"status": 0, "targets": 0, "inject": 2}


def _options(command: str, args: Sequence[str]) -> dict[str, Any] | None:
    """The command's positionals ("args"), --config/-c VALUE (and --duration/-d VALUE for
    inject) and its flags; None for anything else (typer answers, or explains)."""
    flags = FLAGS[command]
    values = {"--config"} | ({"--duration"} if command == "inject" else set())
    out: dict[str, Any] = {"args": [], **{v: None for v in values}, **{f: False for f in flags}}
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, inline = arg.partition("=")
        if arg in flags:
            out[arg] = True
        elif VALUES.get(arg) in values and i + 1 < len(args):
            out[VALUES[arg]] = args[i + 1]
            i += 1
        elif eq and key.startswith("--") and key in values:
            out[key] = inline
        elif arg.startswith("-") or len(out["args"]) >= POSITIONALS[command]:
            return None
        else:
            out["args"].append(arg)
        i += 1
    return out if len(out["args"]) == POSITIONALS[command] else None


def answer(argv: Sequence[str]) -> int | None:
    """Answer argv here and return the exit code, or None to let typer answer it."""
    if list(argv) in (["--help"], ["-h"]):
        echo(HELP, nl=False)
        return 0
    if not argv or argv[0] not in FLAGS:
        return None
    command = argv[0]
    opts = _options(command, argv[1:])
    if opts is None:
        return None
    try:
        if command == "inject":
            fault, name = opts["args"]
            return inject_command(
                opts["--config"], fault, name, opts["--duration"], force=opts["--force"],
                detach=opts["--detach"], dry_run=opts["--dry-run"], log=_log,
            )  # fmt: skip
        if command == "status":
            text = status_text(opts["--config"], as_json=opts["--json"])
        else:
            text = targets_text(opts["--config"], as_json=opts["--json"], all_=opts["--all"])
    except AgentError as exc:
        echo(error_line(exc), err=True)
        return exc.exit_code
    echo(text)
    return 0


def internal_error(exc: Exception) -> int:
    """One line for an unexpected error (never a traceback for users), and the exit code."""
    from agent.errors import EXIT_RUNTIME

    if os.environ.get("CHAOS_AGENT_DEBUG"):
        raise exc
    echo(
        f"chaos-agent: internal error: {exc.__class__.__name__}: {printable(str(exc), 300)} "
        "(set CHAOS_AGENT_DEBUG=1 for a traceback)",
        err=True,
    )
    return EXIT_RUNTIME


def main() -> None:
    """The `chaos-agent` entry point: answer here when we can, else the typer app."""
    try:
        code = answer(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`chaos-agent targets | head -3`)
        code = 141  # as a shell reports SIGPIPE
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # noqa: BLE001 - as the typer app does
        code = internal_error(exc)
    if code is not None:
        sys.stderr.flush()
        # Done: everything durable is written (ledger fsynced, journal unbuffered) and no
        # atexit hook is ours. Skipping the interpreter's teardown saves 40-60 ms.
        os._exit(code)
    from agent.cli import main as typer_main

    typer_main()
