"""Configuration and durations: every bad input is one clear error naming where."""

from __future__ import annotations

import pytest

from agent.config import load_config, parse_toml_text, parse_window, resolve_fraction
from agent.durations import format_duration, parse_duration
from agent.errors import ConfigError, UsageError
from tests.conftest import run_cli

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("2", 2), (7, 7)],
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5x", "-3s", "s", "1.5.2s", "10 s", True, None, "inf", "30s5"])
def test_bad_durations_are_usage_errors(bad):
    with pytest.raises(UsageError) as err:
        parse_duration(bad, where="--for")
    assert "--for" in err.value.one_line()


def test_format_duration():
    assert format_duration(0.2) == "200ms"
    assert format_duration(30) == "30s"
    assert format_duration(600) == "10m"


def test_embedded_default_is_valid(monkeypatch):
    monkeypatch.delenv("CHAOS_AGENT_CONFIG", raising=False)
    config = load_config(None)
    assert config.targets.min_replicas == 2
    assert config.targets.min_healthy == 1
    assert config.targets.max_concurrent == 1
    assert set(config.faults.enabled) == {"kill", "stop", "pause", "restart"}


def test_malformed_toml_names_line_and_column():
    with pytest.raises(ConfigError) as err:
        parse_toml_text("[targets]\nmin_replicas = = 3\n", source="my.toml")
    line = err.value.one_line()
    assert line.startswith("my.toml: malformed TOML")
    assert "line 2" in line and "column" in line


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ("[schedule]\nmean_intervall = '5m'\n", "schedule.mean_intervall: unknown key"),
        ("[schedule]\nduration = '-5s'\n", "schedule.duration"),
        ("[schedule]\nduration = 'soon'\n", "schedule.duration"),
        (
            "[faults]\nenabled = ['pause', 'explode']\n",
            "faults.enabled[1]: unknown fault 'explode'",
        ),
        ("[targets]\nmin_replicas = 0\n", "targets.min_replicas"),
        ("[targets]\nmin_healthy = '150%'\n", "targets.min_healthy"),
        ("[targets]\nmax_concurrent = 'one'\n", "targets.max_concurrent"),
        ("[faults.kill]\nsignal = 'SIGNOPE'\n", "faults.kill.signal"),
        ("[faults.partition]\nmode = 'from'\n", "faults.partition.from_group"),
        ("[schedule]\nwindows = ['Mon-Fri 9-5']\n", "schedule.windows[0]"),
        ("[schedule]\ntimezone = 'Mars/Olympus'\n", "schedule.timezone"),
        ("[[probes]]\nurl = 'ftp://x'\n", "probes[0].url"),
        ("[[processes]]\ngroup = 'db'\n", "processes[0].match"),
        ("[[processes]]\ngroup = 'db'\nmatch = '('\n", "processes[0].match"),
        ("surprise = 1\n", "surprise: unknown key"),
        ("agent = 3\n", "agent must be a table"),
    ],
)
def test_invalid_config_names_the_key_path(toml, where):
    with pytest.raises(ConfigError) as err:
        parse_toml_text(toml, source="c.toml")
    line = err.value.one_line()
    assert line.startswith("c.toml"), line
    assert where in line, line
    assert err.value.exit_code == 2


def test_windows_and_fractions():
    w = parse_window("Mon-Fri 09:00-17:00", "w")
    assert w.days == frozenset({0, 1, 2, 3, 4})
    assert (w.start_minute, w.end_minute) == (540, 1020)
    assert parse_window("Sat-Mon 10:00-12:00", "w").days == frozenset({5, 6, 0})
    assert parse_window("daily 00:00-24:00", "w").days == frozenset(range(7))
    assert resolve_fraction(0.34, 3, round_up=False) == 1
    assert resolve_fraction(0.34, 2, round_up=False) == 0  # percentages round down
    assert resolve_fraction(0.5, 3, round_up=True) == 2
    assert resolve_fraction(2, 10, round_up=True) == 2


def test_full_config_parses(tmp_path):
    text = """
[agent]
state_dir = "%s"
seed = 42
[targets]
min_replicas = 3
min_healthy = "50%%"
max_per_group = "34%%"
max_concurrent = 2
[schedule]
mean_interval = "10m"
min_gap = "1m"
duration = "45s"
windows = ["Mon-Fri 09:00-17:00"]
timezone = "Europe/Berlin"
[faults]
enabled = ["pause", "kill"]
weights = { pause = 3, kill = 1 }
[faults.kill]
signal = "TERM"
[[probes]]
name = "site"
url = "http://127.0.0.1:8080/"
body_contains = "ok"
[stop]
min_availability = 0.8
""" % (tmp_path / "s")
    path = tmp_path / "c.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.agent.seed == 42
    assert config.targets.min_healthy == 0.5
    assert config.faults.weight("pause") == 3
    assert config.faults.params_for("kill")["signal"] == "SIGTERM"
    assert config.faults.params_for("stop")["timeout"] == 10.0
    assert config.probes[0].name == "site"
    assert config.schedule.windows[0].days == frozenset(range(5))


def test_cli_config_errors_are_one_line_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[schedule]\nmean_interval = 'often'\n")
    result = run_cli("config", "check", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "schedule.mean_interval" in lines[0] and "Traceback" not in result.stderr
    missing = run_cli("config", "check", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    bad = run_cli("config", "check", "--config", str(binary))
    assert bad.returncode == 2 and "UTF-8" in bad.stderr


def test_cli_bad_duration_flag_is_exit_2(tmp_path):
    env = {"CHAOS_AGENT_CONFIG": ""}
    result = run_cli("run", "--for", "forever", "--dry-run", env=env)
    assert result.returncode == 2
    assert "--for" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("inject", "explode", "web-1", env=env)
    assert result.returncode == 2 and "unknown fault 'explode'" in result.stderr


HUGE = "9" * 400
HOSTILE_CONFIGS = {
    "duration int overflow": f"[schedule]\nmean_interval = {HUGE}\n",
    "weight overflow": f"[faults.weights]\nkill = {HUGE}\n",
    "percent overflow": f"[faults.loss]\npercent = {HUGE}\n",
    "5001 digits": "[schedule]\nmean_interval = " + "9" * 5001 + "\n",
    "nested 5000 deep": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "duration past 7d": '[schedule]\nduration = "99999999999d"\n',
    "duration string overflow": f'[schedule]\nmin_gap = "{HUGE}s"\n',
}


@pytest.mark.parametrize("text", HOSTILE_CONFIGS.values(), ids=HOSTILE_CONFIGS.keys())
def test_hostile_config_is_a_config_error(text):
    """Issue 10, item 9: overflow, digit limit, recursion and absurd durations."""
    with pytest.raises(ConfigError) as info:
        parse_toml_text(text, source="hostile.toml")
    assert len(info.value.one_line()) < 400


def test_durations_are_capped_at_seven_days():
    assert parse_duration("7d") == 7 * 86400
    for bad in ("7d1s", "99999999999d", 10**400, 1e300):
        with pytest.raises(UsageError, match="at most 7d|finite"):
            parse_duration(bad)


def test_cli_hostile_config_is_one_line_exit_2(tmp_path):
    for i, text in enumerate((HOSTILE_CONFIGS["nested 5000 deep"], HOSTILE_CONFIGS["5001 digits"])):
        path = tmp_path / f"hostile{i}.toml"
        path.write_text(text)
        result = run_cli("config", "check", "--config", str(path))
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "internal error" not in result.stderr
