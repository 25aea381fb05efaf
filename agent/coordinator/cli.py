"""`chaos-agent coordinator ...`: the coordinator's command group (thin: renders, maps errors).

Mounted by the main CLI with `app.add_typer(coordinator_app, name="coordinator")`;
also runnable alone as `python -m agent.coordinator ...` (what forced commands use).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from agent.coordinator import protocol
from agent.coordinator.policy import EXAMPLE_POLICY_TOML, load_policy
from agent.coordinator.session import IDLE_TIMEOUT, MAX_SESSIONS_PER_HOST
from agent.coordinator.store import Store
from agent.errors import AgentError, ConfigError, UsageError
from agent.textsafe import echo

DEFAULT_DB = "/var/lib/chaos-agent/coordinator.db"
DEFAULT_POLICY = "/etc/chaos-agent/coordinator.toml"

app = typer.Typer(
    help="Fleet coordinator: grants leases for faults to agents over SSH.",
    no_args_is_help=True,
    add_completion=False,
)

DbOpt = typer.Option(DEFAULT_DB, "--db", envvar="CHAOS_COORDINATOR_DB", help="SQLite state file.")
PolicyOpt = typer.Option(
    DEFAULT_POLICY, "--policy", envvar="CHAOS_COORDINATOR_POLICY", help="Policy TOML file."
)

T = TypeVar("T")

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except AgentError as exc:
        echo(f"error: {exc.one_line()}", err=True)
        raise typer.Exit(exc.exit_code) from None


def parse_public_key(text: str) -> tuple[str, str]:
    """'TYPE BASE64 [comment]' -> (type, base64), checked; anything else is a UsageError."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise UsageError("expected exactly one public key line (TYPE BASE64 [comment])")
    parts = lines[0].split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise UsageError(
            "not an OpenSSH public key line (expected e.g. 'ssh-ed25519 AAAA... comment', "
            "without options)"
        )
    kind, b64 = parts[0], parts[1]
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("the public key's base64 part is malformed") from None
    name_len = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if name_len <= 0 or blob[4 : 4 + name_len] != kind.encode():
        raise UsageError("the public key's data does not match its type")
    return kind, b64


def authorized_keys_line(
    public_key: str,
    host: str,
    *,
    db: str,
    policy: str,
    python: str,
    pythonpath: str = "",
) -> str:
    """The authorized_keys line binding an agent's key to the protocol, and to `host`."""
    if not protocol.valid_host(host):
        raise UsageError(f"invalid --host {host[:80]!r}: use 1-64 of [A-Za-z0-9._-]")
    kind, b64 = parse_public_key(public_key)
    argv = []
    if pythonpath:
        argv += ["/usr/bin/env", f"PYTHONPATH={pythonpath}"]
    argv += [python, "-m", "agent.coordinator", "session", host, "--db", db, "--policy", policy]
    for value in (python, db, policy, *([pythonpath] if pythonpath else [])):
        if not os.path.isabs(value):
            raise UsageError(f"{value!r} must be an absolute path")
        if re.search(r'["\'\\\x00-\x1f\x7f]', value):
            raise UsageError(f"{value!r}: quotes, backslashes and control characters are refused")
    command = shlex.join(argv)
    if '"' in command or "\\" in command:  # sshd's command="..." cannot carry them
        raise UsageError(f"{command[:120]!r}: cannot be quoted inside an authorized_keys line")
    return f'command="{command}",restrict {kind} {b64} chaos-agent:{host}'


@app.command()
def session(
    host: str = typer.Argument(..., help="The agent's identity (set by the forced command)."),
    db: str = DbOpt,
    policy: str = PolicyOpt,
    idle_timeout: float = typer.Option(
        IDLE_TIMEOUT, "--idle-timeout", min=0.1, max=3600, help="End after this long idle (s)."
    ),
    max_sessions: int = typer.Option(
        MAX_SESSIONS_PER_HOST, "--max-sessions", min=1, max=1000, help="Per identity."
    ),
) -> None:
    """Serve one agent's SSH session (run by sshd's forced command, not by hand)."""
    from agent.coordinator.session import serve

    def go() -> int:
        if not protocol.valid_host(host):
            raise UsageError(f"invalid host name {host[:80]!r}")
        return serve(
            host,
            Path(db),
            Path(policy),
            sys.stdin.buffer,
            sys.stdout.buffer,
            idle_timeout=idle_timeout,
            max_sessions=max_sessions,
        )

    raise typer.Exit(_run(go))


@app.command()
def authorize(
    pubkey: str = typer.Argument(..., help="Public key file, or the key text itself."),
    host: str = typer.Option(..., "--host", help="The agent's host name (its identity)."),
    db: str = DbOpt,
    policy: str = PolicyOpt,
    python: str = typer.Option(sys.executable, "--python", help="Interpreter on this host."),
    pythonpath: str = typer.Option(
        "", "--pythonpath", help="Directory holding the agent package, if not installed."
    ),
) -> None:
    """Print the authorized_keys line for an agent's key (forced command + restrict)."""

    def go() -> str:
        path = Path(pubkey)
        text = pubkey
        if "\n" not in pubkey and len(pubkey) < 4096 and path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"cannot read {pubkey}: {exc}") from None
        return authorized_keys_line(
            text,
            host,
            db=os.path.abspath(db),
            policy=os.path.abspath(policy),
            python=python,
            pythonpath=os.path.abspath(pythonpath) if pythonpath else "",
        )

    echo(_run(go))


@app.command()
def init(db: str = DbOpt, policy: str = PolicyOpt) -> None:
    """Create the database and, if missing, a policy file with every key and its default."""

    def go() -> None:
        Store(db).close()
        p = Path(policy)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(EXAMPLE_POLICY_TOML, encoding="utf-8")
            echo(f"wrote {p}")
        load_policy(p)
        echo(f"database {db} ready; policy {p} valid")

    _run(go)


@app.command("check")
def check_policy(policy: str = PolicyOpt) -> None:
    """Validate the policy file and print what it allows."""

    def go() -> None:
        pol = load_policy(policy)
        echo(
            f"{policy}: max_concurrent={pol.max_concurrent} max_per_group={pol.max_per_group} "
            f"min_healthy={pol.min_healthy} min_gap={pol.min_gap:g}s "
            f"lease_ttl={pol.lease_ttl:g}s max_duration={pol.max_duration:g}s "
            f"windows={len(pol.windows)} faults={','.join(sorted(pol.faults)) or 'any'}"
        )

    _run(go)


def _when(wall: float | None) -> str:
    if wall is None:
        return "-"
    return dt.datetime.fromtimestamp(wall, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _render(status: dict[str, Any]) -> str:
    out = []
    if status["halted"]:
        out.append(f"HALTED: {status['halt_reason'] or '(no reason given)'}")
    else:
        out.append("accepting leases")
    out.append(f"active leases: {len(status['live'])}")
    for s in status["live"]:
        out.append(
            f"  {s['host']} {s['group']} {s['fault']} token={s['token']} "
            f"age={s['age']:.1f}s expires_in={s['expires_in']:.1f}s renewals={s['renewals']}"
        )
    out.append(f"recent history ({len(status['recent'])}):")
    for s in status["recent"]:
        out.append(
            f"  {_when(s['granted_wall'])} .. {_when(s['ended_wall'])} {s['host']} "
            f"{s['group']} {s['fault']} token={s['token']} {s['end_reason']}"
        )
    out.append("hosts (last contact):")
    for h in status["hosts"]:
        out.append(
            f"  {h['host']} {_when(h['last_contact_wall'])} ({h['ago']:.0f}s ago, {h['last_op']})"
        )
    return "\n".join(out)


@app.command()
def status(
    db: str = DbOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    history: int = typer.Option(20, "--history", min=0, max=10_000),
) -> None:
    """Active leases, recent history and per-host last contact."""

    def go() -> dict[str, Any]:
        if not Path(db).exists():
            raise ConfigError(f"no coordinator database at {db} (run `coordinator init`)")
        store = Store(db, create=False)
        try:
            return store.status(history=history)
        finally:
            store.close()

    data = _run(go)
    echo(json.dumps(data, indent=2, sort_keys=True) if as_json else _render(data))


@app.command()
def halt(
    db: str = DbOpt,
    reason: str = typer.Option("", "--reason", help="Shown to operators and agents."),
) -> None:
    """Fleet-wide kill switch: refuse every acquire and renew until `resume`."""

    def go() -> None:
        clean = " ".join(reason.split())[:200]
        store = Store(db, create=False)
        try:
            store.halt(clean)
        finally:
            store.close()

    _run(go)
    echo("halted: agents heal at their next renew; new leases are refused")


@app.command()
def resume(db: str = DbOpt) -> None:
    """Allow leases again after `halt`."""

    def go() -> None:
        store = Store(db, create=False)
        try:
            store.resume()
        finally:
            store.close()

    _run(go)
    echo("resumed: leases may be granted again")
