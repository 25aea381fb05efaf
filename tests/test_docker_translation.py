"""Pure translation of Engine API list entries into Targets (no engine needed)."""

from __future__ import annotations

import pytest

from agent.adapters.docker_engine import group_of, health_from_status, target_from_list_entry
from agent.faults.container import parse_started_at

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("Up 3 minutes (healthy)", "healthy"),
        ("Up 3 minutes (unhealthy)", "unhealthy"),
        ("Up 2 seconds (health: starting)", "starting"),
        ("Up 3 minutes", "none"),
        ("Exited (0) 2 minutes ago", "none"),
        ("", "none"),
    ],
)
def test_health_from_status(status, health):
    assert health_from_status(status) == health


def test_groups_from_labels():
    assert group_of({"chaos.group": "db"}, "x") == "db"
    assert (
        group_of({"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}, "x")
        == "shop/web"
    )
    assert (
        group_of(
            {
                "chaos.group": "db",
                "com.docker.compose.project": "p",
                "com.docker.compose.service": "s",
            },
            "x",
        )
        == "db"
    )
    assert group_of({}, "lonely") == "lonely"


def entry(**labels: str) -> dict:
    return {
        "Id": "a" * 64,
        "Names": ["/web-1"],
        "State": "running",
        "Status": "Up 1 minute (healthy)",
        "Labels": labels,
        "HostConfig": {"NetworkMode": "bridge"},
    }


def test_target_from_list_entry():
    t = target_from_list_entry(
        entry(**{"chaos.enable": "true", "chaos.faults": "kill, pause", "chaos.protect": "TRUE"}),
        label="chaos.enable",
        value="true",
    )
    assert (t.name, t.group, t.state, t.health) == ("web-1", "web-1", "running", "healthy")
    assert t.opted_in and t.protected and not t.is_self
    assert t.allowed_faults == frozenset({"kill", "pause"})
    assert t.network_mode == "bridge"
    other_value = target_from_list_entry(
        entry(**{"chaos.enable": "yes"}), label="chaos.enable", value="true"
    )
    assert not other_value.opted_in


def test_self_by_id_or_agent_label():
    me = target_from_list_entry(entry(), label="chaos.enable", value="true", self_id="a" * 64)
    assert me.is_self
    short = target_from_list_entry(entry(), label="chaos.enable", value="true", self_id="a" * 12)
    assert short.is_self
    lookalike = target_from_list_entry(
        entry(**{"chaos.agent": "true"}), label="chaos.enable", value="true"
    )
    assert lookalike.is_self
    stranger = target_from_list_entry(entry(), label="chaos.enable", value="true", self_id="b" * 64)
    assert not stranger.is_self


def test_parse_started_at():
    assert parse_started_at("2026-11-26T05:30:01.123456789Z") == pytest.approx(1795671001.123456789)
    assert parse_started_at("2026-11-26T05:30:01Z") == 1795671001.0
    assert parse_started_at("") == 0.0


def test_chunked_bodies_are_put_back_together() -> None:
    from agent.adapters.docker_engine import _BadResponse, _dechunk

    assert _dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert _dechunk(b"0\r\n\r\n") == b""
    for torn in (b"5\r\nhel", b"5\r\nhello\r\n", b"zz\r\nhello\r\n0\r\n\r\n"):
        with pytest.raises(_BadResponse):
            _dechunk(torn)
