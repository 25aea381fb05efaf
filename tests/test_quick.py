"""The commands answered without typer (agent/quick.py) say what the typer app says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.quick import HELP, HELP_COMMANDS, answer
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.pure

TYPER = "import sys; from agent.cli import main; sys.argv[0] = 'chaos-agent'; main()"


def typer_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TYPER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_quick_help_names_every_command_of_the_typer_app() -> None:
    from agent import cli

    names = {c.name or c.callback.__name__ for c in cli.app.registered_commands}
    names |= {g.name for g in cli.app.registered_groups}
    names.add("coordinator")  # mounted only when asked for (see cli._mount_coordinator)
    assert names == {name for name, _ in HELP_COMMANDS}
    for name in names:
        assert f"  {name} " in HELP


def test_status_quick_and_typer_print_the_same(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{state}"\nkill_switch = "{tmp_path / "STOP"}"\n')
    (tmp_path / "STOP").write_text("")
    quick = run_cli("status", "--config", str(cfg))
    slow = typer_cli("status", "--config", str(cfg))
    assert quick.returncode == slow.returncode == 0, quick.stderr + slow.stderr
    assert quick.stdout == slow.stdout
    assert "KILL SWITCH ON" in quick.stdout and "no active faults" in quick.stdout
    bad = run_cli("status", "--config", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2
    assert bad.stderr == typer_cli("status", "--config", str(tmp_path / "missing.toml")).stderr


def test_anything_else_is_left_to_typer() -> None:
    for argv in ([], ["status", "--bogus"], ["status", "--help"], ["run"], ["targets", "-x"]):
        assert answer(argv) is None, argv
    result = run_cli("status", "--bogus")
    assert result.returncode == 2 and "No such option" in result.stderr


def test_inject_plain_forms_are_answered_here_and_the_rest_by_typer() -> None:
    from agent.quick import _options

    opts = _options("inject", ["pause", "web-2", "-d", "1s", "--detach", "--config=x.toml"])
    assert opts is not None
    assert (opts["args"], opts["--duration"], opts["--config"]) == (
        ["pause", "web-2"],
        "1s",
        "x.toml",
    )
    assert (opts["--detach"], opts["--force"], opts["--dry-run"]) == (True, False, False)
    opts = _options("inject", ["--force", "kill", "--duration=5m", "db-1", "-c", "a.toml"])
    assert opts is not None and opts["args"] == ["kill", "db-1"] and opts["--duration"] == "5m"
    for argv in (
        ["inject"],  # typer says what is missing
        ["inject", "pause"],
        ["inject", "pause", "a", "b"],
        ["inject", "pause", "a", "--help"],
        ["inject", "pause", "a", "-d"],  # no value
        ["inject", "pause", "a", "-d1s"],  # click's attached form: typer's
        ["inject", "pause", "-x", "a"],
        ["targets", "--duration", "1s"],  # not an option of targets
    ):
        assert answer(argv) is None, argv


def test_inject_quick_and_typer_fail_alike(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    for args in (
        ["inject", "nosuchfault", "web-1", "--config", str(cfg)],
        ["inject", "pause", "web-1", "--duration", "0s", "--config", str(cfg)],
    ):
        quick = run_cli(*args)
        slow = typer_cli(*args)
        assert quick.returncode == slow.returncode == 2, quick.stderr + slow.stderr
        assert quick.stderr == slow.stderr and quick.stderr.startswith("chaos-agent: error: ")


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        ("RuntimeError('boom')", 1, "chaos-agent: internal error: RuntimeError: boom (set "),
        ("KeyboardInterrupt()", 130, ""),
        ("BrokenPipeError()", 141, ""),  # `chaos-agent targets | head -3`
    ],
)
def test_the_quick_path_never_shows_a_traceback(raised: str, code: int, line: str) -> None:
    script = (
        f"import agent.quick as q\ndef boom(argv):\n    raise {raised}\nq.answer = boom\nq.main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CHAOS_AGENT_DEBUG"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO,
        env=env,
    )  # fmt: skip
    assert out.returncode == code
    assert out.stderr.startswith(line) and "Traceback" not in out.stderr, out.stderr
