"""The container and disconnect faults over their narrow ports (agent/faults/ports.py), with
an in-memory engine: typed state in, verbs out, no Engine JSON. The Docker adapter's typed
readers (agent/adapters/docker_ports.py) are checked on recorded inspect JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agent.adapters.docker_ports import connect_args, container_state
from agent.errors import FaultFailed, TargetGone
from agent.faults.container import ContainerKill, ContainerPause, ContainerRestart, ContainerStop
from agent.faults.network.disconnect import ENDPOINT_PREFIX, Disconnect
from agent.model import ActiveFault, ContainerState, Endpoint, Target

pytestmark = pytest.mark.pure

CID = "a" * 64
STARTED = "2026-11-26T05:30:01.123456789Z"
WEB_NET = Endpoint("shop_default", "n1", static_ipv4="172.30.0.9", ipv4="172.30.0.9",
                   mac="02:42:ac:1e:00:09", aliases=("web", "web-1"))  # fmt: skip
BRIDGE = Endpoint("bridge", "n0", ipv4="172.17.0.5", mac="02:42:ac:11:00:05")  # no aliases there


class FakeEngine:
    """ContainerLifecycle and NetworkAttachments in memory; records every verb."""

    def __init__(self) -> None:
        self.st: ContainerState | None = ContainerState(
            CID, STARTED, running=True, pid=42, networks={"shop_default": WEB_NET, "bridge": BRIDGE}
        )
        self.calls: list[tuple[str, object]] = []
        self.refuse_connect = 0  # connects to fail before one works

    def state(self, container: str) -> ContainerState:
        if self.st is None:
            raise TargetGone("gone")
        return self.st

    def _set(self, **changes: object) -> None:
        assert self.st is not None
        self.st = replace(self.st, **changes)

    def start(self, container: str) -> None:
        self.calls.append(("start", container))
        self._set(running=True, paused=False)

    def stop(self, container: str, timeout: float) -> None:
        self.calls.append(("stop", timeout))
        self._set(running=False)

    def kill(self, container: str, signal: str) -> None:
        self.calls.append(("kill", signal))
        self._set(running=False)

    def restart(self, container: str, timeout: float) -> None:
        self.calls.append(("restart", timeout))
        self._set(started_at="2026-11-26T06:00:00Z")

    def pause(self, container: str) -> None:
        self.calls.append(("pause", container))
        self._set(paused=True)

    def unpause(self, container: str) -> None:
        self.calls.append(("unpause", container))
        self._set(paused=False)

    def disconnect(self, container: str, network: str) -> None:
        self.calls.append(("disconnect", network))
        assert self.st is not None
        self._set(networks={k: v for k, v in self.st.networks.items() if v.network_id != network})

    def connect(self, container: str, endpoint: Endpoint) -> None:
        self.calls.append(("connect", endpoint))
        if self.refuse_connect:
            self.refuse_connect -= 1
            raise FaultFailed("address not available")
        assert self.st is not None
        self._set(networks={**self.st.networks, endpoint.network: endpoint})


def record(fault: str, **changes: object) -> ActiveFault:
    base = ActiveFault("0123456789ab", fault, "container", CID, "web-1", "shop/web", 0.0, 30.0,
                       started_at=STARTED, pid=42)  # fmt: skip
    return base.evolve(**changes)


def test_pause_heals_only_the_instance_it_paused() -> None:
    engine = FakeEngine()
    fault = ContainerPause(engine)
    fault.inject(record("pause"))
    assert fault.heal(record("pause")).how == "healed" and not engine.st.paused
    assert fault.heal(record("pause")).how == "already"
    engine._set(paused=True, started_at="2026-11-26T07:00:00Z")  # restarted, paused by someone
    assert fault.heal(record("pause")).how == "environment"
    assert engine.st.paused and engine.calls.count(("unpause", CID)) == 1
    engine.st = None
    assert fault.heal(record("pause")).how == "gone"


def test_stop_and_kill_heal_by_starting_unless_something_else_did() -> None:
    engine = FakeEngine()
    ContainerStop(engine).inject(record("stop", params={}))
    assert engine.calls[-1] == ("stop", 10.0)  # the default, from fault_params
    assert ContainerStop(engine).heal(record("stop")).how == "healed"
    ContainerKill(engine).inject(record("kill", params={"mode": "api", "signal": "SIGTERM"}))
    assert engine.calls[-1] == ("kill", "SIGTERM")
    engine._set(restarting=True)
    assert ContainerKill(engine).heal(record("kill")).how == "environment"
    # restart changes StartedAt by itself: its heal is not pinned to it
    engine._set(restarting=False, running=True)
    ContainerRestart(engine).inject(record("restart", params={"timeout": "2s"}))
    assert engine.calls[-1] == ("restart", 2.0)
    assert ContainerRestart(engine).heal(record("restart")).how == "already"


def test_disconnect_records_endpoints_and_restores_them_exactly() -> None:
    engine = FakeEngine()
    fault = Disconnect(engine)
    target = Target("container", CID, "web-1", "shop/web", "running")
    artifacts = fault.artifacts("0123456789ab", target, {"network": ""})
    assert [json.loads(a[len(ENDPOINT_PREFIX) :])["network"] for a in artifacts] == [
        "bridge",
        "shop_default",
    ]
    rec = record("disconnect", artifacts=artifacts)
    assert fault.inject(rec) == {"disconnected": ["bridge", "shop_default"]}
    assert engine.st.networks == {}
    engine.refuse_connect = 1  # the bridge's dynamic address is taken meanwhile
    outcome = fault.heal(rec)
    assert outcome.how == "healed", outcome
    connects = [c[1] for c in engine.calls if c[0] == "connect"]
    assert connects[0] == BRIDGE  # first try: exactly as it was
    assert connects[1] == replace(BRIDGE, ipv4="", ipv6="", aliases=())  # then let Docker pick
    assert connects[2] == WEB_NET
    assert fault.heal(rec).how == "already"


def test_disconnect_heal_fails_while_a_static_address_is_not_back() -> None:
    engine = FakeEngine()
    fault = Disconnect(engine)
    target = Target("container", CID, "web-1", "shop/web", "running")
    rec = record(
        "disconnect", artifacts=fault.artifacts("0123456789ab", target, {"network": "shop_default"})
    )
    fault.inject(rec)
    engine.refuse_connect = 5
    outcome = fault.heal(rec)
    assert not outcome.healed and "address not available" in outcome.detail
    assert len([c for c in engine.calls if c[0] == "connect"]) == 1  # static: never re-addressed


def test_typed_readers_on_recorded_inspect_json() -> None:
    info = {
        "Id": CID,
        "State": {
            "Status": "running",
            "Running": True,
            "Paused": False,
            "Pid": 4242,
            "StartedAt": STARTED,
        },  # fmt: skip
        "NetworkSettings": {
            "Networks": {
                "shop_default": {
                    "IPAMConfig": {"IPv4Address": "172.30.0.9", "LinkLocalIPs": None},
                    "Links": None,
                    "Aliases": ["web-1", "web"],
                    "NetworkID": "n1",
                    "IPAddress": "172.30.0.9",
                    "GlobalIPv6Address": "",
                    "MacAddress": "02:42:ac:1e:00:09",
                    "DriverOpts": None,
                }
            }
        },  # fmt: skip
    }
    st = container_state(info)
    assert (st.running, st.paused, st.pid, st.started_at) == (True, False, 4242, STARTED)
    assert st.networks["shop_default"] == WEB_NET
    assert st.same_running_instance(record("loss")) and st.same_instance(record("pause"))
    gone = container_state({"Id": CID, "State": {"Status": "exited"}})
    assert gone.changed_reason(record("loss")) == "web-1 is not running (exited)"
    args = connect_args(WEB_NET)
    assert args["ipv4_address"] == "172.30.0.9" and args["aliases"] == ["web", "web-1"]
    assert args["links"] is None and args["mac_address"] == "02:42:ac:1e:00:09"


def test_an_endpoint_written_by_an_older_agent_still_reads() -> None:
    old = {"network": "shop_default", "network_id": "n1", "static_ipv4": "172.30.0.9",
           "static_ipv6": "", "ipv4": "172.30.0.9", "ipv6": "", "mac": "02:42:ac:1e:00:09",
           "aliases": ["web", "web-1"], "links": [], "link_local_ips": [],
           "driver_opts": {}}  # fmt: skip
    assert Endpoint.from_json(old) == WEB_NET
    assert json.dumps(WEB_NET.to_json(), sort_keys=True) == json.dumps(old, sort_keys=True)
