"""One home for fault-parameter rules (agent/fault_params.py): the config refuses a bad value
with its key path, and a fault handed the same value (an old ledger, a one-off) refuses it
with the same rule before touching anything."""

from __future__ import annotations

from typing import Any

import pytest

from agent.config import parse_toml_text
from agent.errors import ConfigError, FaultFailed
from agent.fault_params import DEFAULTS, param, rate_bits
from agent.faults import network
from agent.model import ActiveFault

pytestmark = pytest.mark.pure


class NoDocker:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"docker.{name} called while checking parameters")


def record(fault: str, **params: Any) -> ActiveFault:
    return ActiveFault("0123456789ab", fault, "container", "a" * 64, "web-1", "web", 0.0, 30.0,
                       params=params)  # fmt: skip


def faults() -> dict[str, Any]:
    return {f.name: f for f in network.network_faults(NoDocker(), None)}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fault", "key", "bad", "config_says", "fault_says"),
    [
        ("bandwidth", "rate", "fast", "expected a rate like '1mbit'", "expected a rate like"),
        ("partition", "mode", "sideways", "must be one of isolate, split, from", "must be one of"),
        ("loss", "percent", 101, "between 0 and 100", "between 0 and 100"),
    ],
)
def test_config_and_fault_refuse_the_same_value(
    fault: str, key: str, bad: Any, config_says: str, fault_says: str
) -> None:
    value = f'"{bad}"' if isinstance(bad, str) else bad
    with pytest.raises(ConfigError, match=rf"faults\.{fault}\.{key}.*{config_says}"):
        parse_toml_text(f"[faults.{fault}]\n{key} = {value}\n", source="t.toml")
    impl = faults()[fault]
    with pytest.raises(FaultFailed, match=fault_says):
        if fault == "bandwidth":
            impl._qdisc({key: bad})
        else:
            impl._plan(record(fault, **{key: bad}), {}, v6=False, exempt=[])


def test_partition_from_needs_a_group_in_config_and_in_the_fault() -> None:
    with pytest.raises(ConfigError, match=r"faults\.partition\.from_group"):
        parse_toml_text('[faults.partition]\nmode = "from"\n', source="t.toml")
    with pytest.raises(FaultFailed, match="mode 'from' needs from_group"):
        faults()["partition"]._plan(record("partition", mode="from"), {}, v6=False, exempt=[])


def test_faults_and_config_share_the_defaults() -> None:
    config = parse_toml_text('[faults]\nenabled = ["loss", "bandwidth", "latency"]\n', source="t")
    assert config.faults.params_for("loss")["percent"] == DEFAULTS["loss"]["percent"] == 30.0
    assert param({}, "bandwidth", "rate") == config.faults.params_for("bandwidth")["rate"]
    assert faults()["latency"]._qdisc({}) == ["netem", "delay", "200.000ms"]
    assert faults()["bandwidth"]._qdisc({})[:3] == ["tbf", "rate", "1mbit"]
    assert rate_bits("500kbps") == 4e6 and rate_bits("1 mbit") is None
