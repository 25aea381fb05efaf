"""Pure translation of Engine API list entries into Targets (no engine needed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.adapters.docker_engine import group_of, health_from_status, target_from_list_entry
from agent.config import parse_toml_text
from agent.discovery import (
    discover_containers,
    needs_netns_sharers,
    netns_refs,
    with_netns_sharers,
)
from agent.faults import network
from agent.faults.container import parse_started_at
from agent.selection import evaluate, policy_from_config

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


# -- namespace sharers: gathered once per discovery, refusal pure ------------------------
class NoDocker:
    """Any call to Docker fails the test: refusal must read only the target."""

    def __getattr__(self, name: str):
        raise AssertionError(f"refuse called docker.{name}")


def shared(name: str, mode: str, cid: str = "") -> dict:
    return {"Id": cid or name * 8, "Names": [f"/{name}"], "HostConfig": {"NetworkMode": mode}}


def test_namespace_sharers_come_from_one_list_by_id_prefix_or_name():
    owner = target_from_list_entry(
        entry(**{"chaos.enable": "true"}), label="chaos.enable", value="true"
    )
    entries = [
        entry(),
        shared("side-b", f"container:{owner.id[:12]}"),
        shared("side-a", "container:web-1"),
        shared("elsewhere", "container:" + "f" * 64),
        shared("plain", "bridge"),
        {"Id": "c" * 64, "HostConfig": None},  # Podman before the adapter fills it in
    ]
    assert netns_refs(entries)[0] == (owner.id[:12], "side-b")
    (found,) = with_netns_sharers([owner], entries)
    assert found.netns_sharers == ("side-a", "side-b")
    assert with_netns_sharers([owner], [entry()]) == [owner]  # nobody shares: same target


def test_network_faults_refuse_from_the_target_alone():
    faults = network.network_faults(NoDocker(), None)  # type: ignore[arg-type]
    base = target_from_list_entry(entry(), label="chaos.enable", value="true")
    alone, host = base, replace(base, network_mode="host")
    sharer = replace(base, network_mode="container:" + "f" * 64)
    owner = replace(base, netns_sharers=("db-1", "db-2", "db-3", "db-4"))
    for fault in faults:
        assert "host" in (fault.refuse(host) or ""), fault.name
        assert fault.refuse(sharer), fault.name
        assert fault.refuse(alone) is None, fault.name
    for fault in faults[:5]:  # inside the shared namespace; disconnect acts on own endpoints
        reason = fault.refuse(owner) or ""
        assert reason.startswith("4 other container(s) share its network namespace"), reason
        assert "(db-1, db-2, db-3)" in reason


def test_sharers_are_gathered_only_when_a_namespace_fault_is_enabled():
    assert not needs_netns_sharers(
        parse_toml_text('[faults]\nenabled = ["kill", "disconnect"]\n', source="t")
    )
    assert needs_netns_sharers(
        parse_toml_text('[faults]\nenabled = ["pause", "loss"]\n', source="t")
    )


class CountingDocker(NoDocker):
    """Answers list calls only, and counts them."""

    def __init__(self, entries: list[dict]) -> None:
        self.entries = entries
        self.lists: list[str | None] = []

    def list_containers(self, label: str | None = None) -> list[dict]:
        self.lists.append(label)
        key, _, value = (label or "").partition("=")
        return [e for e in self.entries if not label or (e.get("Labels") or {}).get(key) == value]


def test_one_discovery_lists_twice_and_selection_never_calls_docker():
    config = parse_toml_text('[faults]\nenabled = ["pause", "loss", "partition"]\n', source="t")
    entries = [
        {
            **entry(**{"chaos.enable": "true", "chaos.group": "web"}),
            "Id": f"{n:064x}",
            "Names": [f"/web-{n}"],
        }  # fmt: skip
        for n in range(1, 11)
    ]
    entries.append(shared("sidecar", f"container:{1:064x}"))
    docker = CountingDocker(entries)
    targets = discover_containers(config, docker, "")  # type: ignore[arg-type]
    assert docker.lists == ["chaos.enable=true", None]
    faults = {f.name: f for f in network.network_faults(NoDocker(), None)}  # type: ignore[arg-type]
    policy = policy_from_config(
        config, refuse=lambda t, name: faults[name].refuse(t) if name in faults else None
    )
    found = {e.target.name: e for e in evaluate(targets, [], policy)}
    assert len(found) == 10 and docker.lists == ["chaos.enable=true", None]
    assert found["web-1"].faults == ("pause",)  # its namespace is shared: network faults refused
    assert found["web-2"].faults == ("pause", "loss", "partition")


def test_chunked_bodies_are_put_back_together() -> None:
    from agent.adapters.docker_engine import _BadResponse, _dechunk

    assert _dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert _dechunk(b"0\r\n\r\n") == b""
    for torn in (b"5\r\nhel", b"5\r\nhello\r\n", b"zz\r\nhello\r\n0\r\n\r\n"):
        with pytest.raises(_BadResponse):
            _dechunk(torn)


def test_the_engine_is_resolved_once_and_never_swapped_mid_run(monkeypatch) -> None:
    """dockerd removes its socket on exit; Podman's may exist: the agent must then find its
    engine unavailable, not list (and heal against) another engine's containers."""
    from agent.adapters import docker_engine

    seen = iter(["unix:///var/run/docker.sock", "unix:///run/podman/podman.sock"])
    monkeypatch.setattr(docker_engine, "docker_endpoint", lambda: next(seen))
    engine = docker_engine.DockerEngine()
    assert engine._local_socket() == "/var/run/docker.sock"
    assert engine._local_socket() == "/var/run/docker.sock"  # not Podman's, later
    assert "at unix:///var/run/docker.sock" in engine._unavailable(OSError("gone")).message
