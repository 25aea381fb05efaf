"""Where the dead-man heal lives (pure): the mode `auto` picks, and the sibling
container's spec (the real containers are in tests/test_deadman.py)."""

from __future__ import annotations

import pytest

from agent.adapters.docker_engine import sibling_spec
from agent.config import parse_toml_text
from agent.deadman import resolve, short_name
from agent.errors import ConfigError

pytestmark = pytest.mark.pure


def test_auto_prefers_a_unit_then_a_container_then_a_process(monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    unit = {"INVOCATION_ID": "abc"}
    assert resolve("auto", in_container=True, environ=unit) == "systemd"
    assert resolve("auto", in_container=True, environ={}) == "container"
    assert resolve("auto", in_container=False, environ={}) == "process"
    monkeypatch.setattr("shutil.which", lambda name: None)  # no systemd-run: not a unit
    assert resolve("auto", in_container=False, environ=unit) == "process"
    assert resolve("off", in_container=True, environ=unit) == "off"


def test_one_name_per_agent_run() -> None:
    assert short_name("4242 0123456789abcdef") == "chaos-deadman-0123456789ab"
    assert short_name("1 ffff") != short_name("1 eeee")


def test_config_key_and_its_legacy_spelling() -> None:
    def mode(text: str) -> str:
        return parse_toml_text("[agent]\n" + text, source="t").agent.deadman

    assert mode("") == "auto"
    assert mode('deadman = "container"\n') == "container"
    assert mode("watchdog = false\n") == "off"
    assert mode("watchdog = true\n") == "auto"
    with pytest.raises(ConfigError, match="deadman"):
        mode('deadman = "cron"\n')


def test_sibling_keeps_the_agents_volumes_pid_mode_and_caps_but_no_network() -> None:
    agent = {
        "Id": "a" * 64,
        "Image": "sha256:feed",
        "Config": {"Env": ["CHAOS_AGENT_CONFIG=/etc/c.toml"], "User": ""},
        "HostConfig": {"PidMode": "host", "CapAdd": ["NET_ADMIN"], "NetworkMode": "shop_default"},
    }
    spec = sibling_spec(agent, entrypoint=["py"], args=["--x"], labels={"chaos.agent": "true"})
    host = spec["HostConfig"]
    assert host["VolumesFrom"] == ["a" * 64] and host["PidMode"] == "host"
    assert host["CapAdd"] == ["NET_ADMIN"] and host["AutoRemove"] is True
    # attached to the project's network it would keep `compose down` from removing it
    assert host["NetworkMode"] == "none"
    assert spec["Image"] == "sha256:feed" and spec["Labels"] == {"chaos.agent": "true"}
    agent["Config"]["Env"].append("DOCKER_HOST=tcp://proxy:2375")  # the engine over TCP
    assert (
        sibling_spec(agent, entrypoint=[], args=[], labels={})["HostConfig"]["NetworkMode"]
        == "shop_default"
    )
