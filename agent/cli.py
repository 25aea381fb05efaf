"""Command line (typer). Thin: renders, maps AgentError to one line and an exit code.

Exit codes: 0 ok, 1 runtime error (or a fault left unhealed), 2 usage/config error,
3 the stop condition halted the run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from agent.errors import EXIT_RUNTIME, AgentError, UsageError
from agent.textsafe import echo, printable

app = typer.Typer(
    name="chaos-agent",
    help="A Chaos Monkey for self-hosted Docker stacks: fault one replica at a time, "
    "never below a safe number of replicas, always heal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check or show the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $CHAOS_AGENT_CONFIG or built-in)"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _fail(exc: AgentError) -> NoReturn:
    echo(f"chaos-agent: error: {printable(exc.one_line(), 600)}", err=True)
    raise typer.Exit(exc.exit_code)


def _log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    echo(f"{stamp} {message}", err=True)


def _load(config_path: str | None) -> Any:
    from agent.config import load_config

    return load_config(config_path)


def _engine(config: Any, config_path: str | None, **kwargs: Any) -> Any:
    from agent.wiring import build_engine

    return build_engine(config, log=_log, config_path=config_path, **kwargs)


def _lock(config: Any) -> Any:
    from agent.ledger import StateLock

    lock = StateLock(config.agent.state_dir)
    lock.acquire()
    return lock


def _parse_duration(value: str | None, default: float, option: str) -> float:
    from agent.durations import positive_duration

    return positive_duration(value, default, option)


def _on_signals(handler: Any) -> None:
    from agent.one_off import on_signals

    on_signals(handler)


@app.command()
def run(
    config_path: ConfigOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="One fault now, wait for its heal, exit")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and journal, touch nothing")
    ] = False,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Make the run's decisions reproducible")
    ] = None,
    for_: Annotated[
        str | None, typer.Option("--for", help="Stop after this long, e.g. 10m")
    ] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Live view on a terminal")] = True,
) -> None:
    """Run the agent: fault eligible replicas at random until stopped; heal everything on exit."""
    try:
        config = _load(config_path)
        duration = _parse_duration(for_, 0.0, "--for") if for_ else None
        dry = dry_run or config.agent.dry_run
        lock = None if dry else _lock(config)
        view = None
        log = _log
        if live and sys.stdout.isatty() and sys.stderr.isatty():
            try:
                from agent.live import LiveView

                view = LiveView()
                log = getattr(view, "log", _log)
            except ImportError:
                view = None
        from agent.wiring import build_engine

        engine = build_engine(config, dry_run=dry, seed=seed, log=log, config_path=config_path)
        _log(
            f"chaos-agent on {config.agent.host}: seed {engine.journal.seed}"
            f"{' (dry-run: nothing will be touched)' if dry else ''}; state in {config.agent.state_dir}"
        )
        _on_signals(engine.request_stop)
        from agent.wiring import attach_ops

        ops = attach_ops(engine, config)
        on_tick = ops.on_tick
        if view is not None:
            view.start()
            on_tick = _live_updater(view, ops.on_tick)
        try:
            code = engine.run(duration=duration, once=once, on_tick=on_tick)
        finally:
            ops.close()
            if view is not None:
                view.stop()
            if lock is not None:
                lock.release()
    except AgentError as exc:
        _fail(exc)
    raise typer.Exit(code)


def _live_updater(view: Any, also: Any = None) -> Any:
    """Refresh the members' state for the live view every few seconds (one list call)."""
    last = [0.0]

    def update(engine: Any) -> None:
        if also is not None:
            also(engine)
        if time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            try:
                engine.evaluate()
            except AgentError:
                pass  # the loop journals discovery failures itself
        from agent.live import snapshot

        view.update(snapshot(engine))

    return update


@app.command()
def targets(
    config_path: ConfigOpt = None,
    as_json: JsonOpt = False,
    all_: Annotated[
        bool, typer.Option("--all", help="Also list containers that did not opt in")
    ] = False,
) -> None:
    """Groups, members, health, eligibility, and why not."""
    from agent.quick import targets_text

    try:
        text = targets_text(config_path, as_json=as_json, all_=all_)
    except AgentError as exc:
        _fail(exc)
    echo(text)


@app.command()
def inject(
    fault: Annotated[str, typer.Argument(help="kill, stop, pause, restart, partition, loss, ...")],
    target: Annotated[str, typer.Argument(help="Container name or id (or process target name)")],
    duration: Annotated[str | None, typer.Option("--duration", "-d", help="e.g. 30s")] = None,
    force: Annotated[bool, typer.Option("--force", help="Skip the replica safety rules")] = False,
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Return at once; the dead-man heal heals at the deadline"),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen")] = False,
    config_path: ConfigOpt = None,
) -> None:
    """One fault now (same safety rules unless --force); waits and heals unless --detach."""
    from agent.quick import inject_command

    try:
        code = inject_command(
            config_path, fault, target, duration,
            force=force, detach=detach, dry_run=dry_run, log=_log,
        )  # fmt: skip
    except AgentError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def heal(config_path: ConfigOpt = None) -> None:
    """Heal every fault in the ledger now (and remove tagged leftovers)."""
    try:
        config = _load(config_path)
        lock = _lock(config)
        try:
            engine = _engine(config, config_path, probes=False)
            results = engine.recover()
            engine.leases.close()
        finally:
            lock.release()
    except AgentError as exc:
        _fail(exc)
    for record, outcome in results:
        echo(
            f"{record.fault} {printable(record.target_name)}: {outcome.how} {printable(outcome.detail)}"
        )
    if engine.active:
        echo(f"chaos-agent: error: {len(engine.active)} fault(s) could not be healed", err=True)
        raise typer.Exit(EXIT_RUNTIME)
    if not results:
        echo("nothing to heal")


@app.command()
def status(config_path: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Active faults and when each heals."""
    from agent.quick import status_text

    try:
        text = status_text(config_path, as_json=as_json)
    except AgentError as exc:
        _fail(exc)
    echo(text)


@config_app.command("check")
def config_check(config_path: ConfigOpt = None) -> None:
    """Validate the configuration; one line per problem, exit 2 if invalid."""
    try:
        config = _load(config_path)
    except AgentError as exc:
        _fail(exc)
    echo(f"{config.source}: ok")


@config_app.command("show")
def config_show(config_path: ConfigOpt = None) -> None:
    """Print the effective configuration (every key, defaults filled in)."""
    import dataclasses

    try:
        config = _load(config_path)
    except AgentError as exc:
        _fail(exc)
    echo(json.dumps(dataclasses.asdict(config), indent=2, default=str))


@config_app.command("default")
def config_default() -> None:
    """Print the embedded default configuration as TOML."""
    from agent.config import DEFAULT_CONFIG_TOML

    echo(DEFAULT_CONFIG_TOML, nl=False)


@app.command()
def report(
    journal_paths: Annotated[
        list[str] | None,
        typer.Option(
            "--journal",
            help="Journal file or directory of *.jsonl (default: the state directory's); "
            "repeat it to see the trend across runs",
        ),
    ] = None,
    as_json: JsonOpt = False,
    html: Annotated[
        str | None, typer.Option("--html", help="Also write a self-contained HTML timeline")
    ] = None,
    config_path: ConfigOpt = None,
) -> None:
    """What the run showed: per fault, per group (survived/degraded/outage), availability."""
    from agent.report import build_report, report_to_json
    from agent.report_input import journal_paths as expand
    from agent.report_input import stream_journal
    from agent.report_text import render_table

    try:
        given = journal_paths or [str(_load(config_path).agent.journal)]
        paths = expand(given)
        if html and len(paths) > 1:
            raise UsageError("--html draws one journal; pass a single --journal with it")
        reports = [(str(p), build_report(stream_journal(p))) for p in paths]
    except AgentError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(AgentError(f"cannot read the journal: {exc.strerror}"))
    if len(reports) > 1:
        from agent.report_trend import build_trend, render_trend, trend_to_json

        trend = build_trend(reports)
        if as_json:
            runs = [{"journal": n, "report": report_to_json(r)} for n, r in reports]
            echo(json.dumps({"runs": runs, "trend": trend_to_json(trend)}))
        else:
            for _, rep in reports:
                echo(render_table(rep))
            echo(render_trend(trend, [n for n, _ in reports]), nl=False)
        return
    rep = reports[0][1]
    if as_json:
        echo(json.dumps(report_to_json(rep)))
    else:
        echo(render_table(rep), nl=False)
    if html:
        from agent.report_html import render_html

        try:
            Path(html).write_text(render_html(rep, ()), encoding="utf-8")
        except OSError as exc:
            _fail(AgentError(f"cannot write {html}: {exc.strerror}"))
        echo(f"wrote {html}", err=True)


def _mount_coordinator() -> None:
    """`chaos-agent coordinator ...` lives in its own module: mounted only when asked
    for (or for --help), so the agent's own commands start faster."""
    if len(sys.argv) > 1 and sys.argv[1] not in ("coordinator", "--help", "-h"):
        return
    from agent.coordinator.cli import app as coordinator_app

    app.add_typer(
        coordinator_app, name="coordinator", help="The fleet coordinator (leases over SSH)."
    )


_mount_coordinator()


def main() -> None:
    try:
        app()
    except AgentError as exc:  # raised outside a command body
        echo(f"chaos-agent: error: {printable(exc.one_line(), 600)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - never a traceback for users
        from agent.quick import internal_error

        sys.exit(internal_error(exc))
