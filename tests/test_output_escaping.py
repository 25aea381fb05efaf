"""Target-derived text never reaches a terminal raw (issue 10, item 10).

A static walk proves every print in the package goes through `textsafe.echo`; real
runs of every command that shows target-derived text (a host process whose name is a
terminal escape, a ledger whose group is one) prove the escaping holds end to end.
"""

from __future__ import annotations

import ast
import json
import sys
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent.ledger import Ledger
from agent.model import ActiveFault
from agent.textsafe import printable, terminal
from tests.conftest import REPO, detached_process, run_cli

OSC = "\x1b]0;pwn\x07"  # sets the terminal title; 8 bytes, fits in a 15-byte comm
CSI = "\x1b[2J\x9b1m\u202e"

# The sleeper renames its own comm (what psutil reports as the process name) to OSC.
SLEEPER = (
    "import ctypes, sys, time\n"
    "ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
    "time.sleep(600)\n"
)
pytestmark = pytest.mark.host

OUTPUT_CALLS = {
    ("typer", "echo"),
    ("click", "echo"),
    ("sys.stdout", "write"),
    ("sys.stderr", "write"),
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_every_print_in_the_package_goes_through_one_escaping_function() -> None:
    offenders = []
    for path in sorted((REPO / "agent").rglob("*.py")):
        if path.name == "textsafe.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                offenders.append(f"{path.name}:{node.lineno} print")
            if isinstance(func, ast.Attribute) and (_dotted(func.value), func.attr) in OUTPUT_CALLS:
                offenders.append(f"{path.name}:{node.lineno} {_dotted(func)}")
    assert offenders == []


def test_terminal_escapes_controls_keeps_layout_and_is_idempotent() -> None:
    text = f"a\t{OSC}\n{CSI}b"
    once = terminal(text)
    assert once.count("\n") == 1 and once.count("\t") == 1
    assert not _controls(once)
    assert terminal(once) == once
    assert terminal(printable(OSC)) == printable(OSC)


def _controls(text: str) -> list[str]:
    return [
        ch
        for ch in text
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")
    ]


@pytest.fixture
def hostile_process() -> Iterator[psutil.Process]:
    with detached_process(sys.executable, "-c", SLEEPER, OSC) as proc:
        deadline = time.monotonic() + 30
        while proc.name() != OSC and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.name() == OSC, proc.name()
        yield proc


def test_every_command_escapes_target_derived_text(
    hostile_process: psutil.Process, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{state}"\n'
        f'[targets]\nvalue = "none-{uuid.uuid4().hex[:8]}"\n'
        '[[processes]]\ngroup = "hostile"\nmatch = "prctl"\n'
    )
    name = f"{OSC}[{hostile_process.pid}]"
    runs = {
        "targets": run_cli("targets", "--config", str(cfg)),
        "targets --json": run_cli("targets", "--json", "--config", str(cfg)),
        "inject --dry-run": run_cli(
            "inject", "pause", name, "--dry-run", "--force", "-d", "1s", "--config", str(cfg)
        ),
    }
    assert "pwn" in runs["targets"].stdout, runs["targets"].stdout + runs["targets"].stderr
    shown = [t["name"] for t in json.loads(runs["targets --json"].stdout)["targets"]]
    assert name in shown, shown
    assert runs["inject --dry-run"].returncode == 0, runs["inject --dry-run"].stderr
    assert "dry-run: would pause" in runs["inject --dry-run"].stderr
    # a planted ledger whose names are escapes (status reads it, heals nothing)
    now = time.time()
    Ledger(state).save(
        [
            ActiveFault(
                fault_id="f1",
                fault="pause",
                target_kind="process",
                target_id=f"pid:{hostile_process.pid}:0.0",
                target_name=CSI,
                group=OSC,
                injected_at=now,
                deadline=now + 600,
                started_at="",
                pid=hostile_process.pid,
                params={},
                artifacts=(),
            )
        ]
    )
    runs["status"] = run_cli("status", "--config", str(cfg))
    runs["status --json"] = run_cli("status", "--json", "--config", str(cfg))
    runs["report"] = run_cli("report", "--config", str(cfg))
    assert "pwn" in runs["status"].stdout, runs["status"].stdout
    for what, result in runs.items():
        assert not _controls(result.stdout), (what, result.stdout)
        assert not _controls(result.stderr), (what, result.stderr)
    assert hostile_process.status() != psutil.STATUS_STOPPED
    # the JSON shapes are the ones docs/json.md shows
    assert_shape(json.loads(runs["targets --json"].stdout), documented("targets --json"))
    assert_shape(json.loads(runs["status --json"].stdout), documented("status --json"))


def documented(command: str) -> dict:
    """The JSON example under the heading "## `<command>`" of docs/json.md."""
    text = (REPO / "docs" / "json.md").read_text()
    section = text.split(f"## `{command}`\n", 1)[1]
    return json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])


def assert_shape(real: object, doc: object, where: str = "") -> None:
    """Same keys at every level (lists: their first element)."""
    if isinstance(doc, dict):
        assert isinstance(real, dict) and set(real) == set(doc), (where, sorted(real), sorted(doc))
        for key, value in doc.items():
            if value not in ({}, None):  # free-form (params, extra) or optional (lease)
                assert_shape(real[key], value, f"{where}.{key}")
    elif isinstance(doc, list) and doc and isinstance(real, list) and real:
        assert_shape(real[0], doc[0], f"{where}[0]")
