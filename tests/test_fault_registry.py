"""The fault registry builds a family of faults (and imports its modules) on first use."""

from __future__ import annotations

from typing import Any

import pytest

from agent.faults.base import FaultRegistry
from agent.model import ActiveFault, HealOutcome, Target
from tests.conftest import python_out

pytestmark = pytest.mark.pure


class Named:
    def __init__(self, name: str, kind: str = "container", missing: str | None = None) -> None:
        self.name, self.kind, self.missing = name, kind, missing

    def unavailable(self) -> str | None:
        return self.missing

    def refuse(self, target: Target) -> str | None:
        return None

    def artifacts(self, fault_id: str, target: Target, params: Any) -> tuple[str, ...]:
        return ()

    def inject(self, record: ActiveFault) -> dict[str, Any]:
        return {}

    def heal(self, record: ActiveFault) -> HealOutcome:
        return HealOutcome(True, "healed")

    def describe(self, record: ActiveFault) -> str:
        return self.name


def test_a_family_is_built_once_on_first_use() -> None:
    built: list[str] = []

    def network() -> list[Any]:
        built.append("network")
        return [Named("partition", missing="no iptables"), Named("loss")]

    registry = FaultRegistry([Named("pause")])
    registry.add_family("container", ("partition", "loss"), network)
    assert registry.names("container") == ["pause", "partition", "loss"]
    assert registry.get("container", "pause") is not None
    assert registry.unavailable(only=[("container", "pause")]) == {}
    assert built == []  # neither asking for pause nor probing it builds the family
    loss = registry.get("container", "loss")
    assert loss is not None and loss.name == "loss" and built == ["network"]
    assert registry.unavailable() == {("container", "partition"): "no iptables"}
    assert len(registry.all()) == 3 and built == ["network"]


def test_a_family_whose_import_fails_is_left_out() -> None:
    def broken() -> list[Any]:
        raise ImportError("No module named 'psutil'")

    registry = FaultRegistry([Named("pause")])
    registry.add_family("process", ("kill", "pause"), broken)
    assert registry.get("process", "kill") is None
    assert registry.names("process") == []
    assert [f.name for f in registry.all()] == ["pause"]


def test_the_agents_registry_imports_network_and_process_faults_only_when_asked() -> None:
    code = (
        "import sys\n"
        "from agent.config import load_config\n"
        "from agent.adapters.docker_engine import DockerEngine\n"
        "from agent.wiring import build_registry\n"
        "r = build_registry(load_config(None), DockerEngine())\n"
        "r.unavailable(only=[('container', 'pause')])\n"
        "before = [m for m in ('agent.faults.network', 'agent.faults.process', 'psutil') if m in sys.modules]\n"
        "assert r.get('container', 'partition') is not None\n"
        "print(before, 'agent.faults.network' in sys.modules)\n"
    )
    out = python_out(code)
    assert out.split() == ["[]", "True"]
