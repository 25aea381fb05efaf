"""Which ledger writes are fsynced: the write-ahead intent only (agent/ledger.py says why).

The file is the same either way: a reader (a restarted agent, the dead-man, `status`) sees
every write at once; fsync decides only what a power loss can undo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.ledger import ActiveFaults, Ledger
from agent.model import ActiveFault

pytestmark = pytest.mark.pure


def record(fault_id: str) -> ActiveFault:
    return ActiveFault(
        fault_id=fault_id, fault="pause", target_kind="container", target_id="c" * 64,
        target_name="web-1", group="web", injected_at=1.0, deadline=31.0, started_at="s",
        pid=7, params={}, artifacts=(), status="injecting",
    )  # fmt: skip


class Recording:
    def __init__(self) -> None:
        self.saves: list[tuple[list[str], bool]] = []

    def load(self) -> list[ActiveFault]:
        return []

    def save(self, faults: list[ActiveFault], *, durable: bool = True) -> None:
        self.saves.append(([f.fault_id for f in faults], durable))

    def quarantine(self) -> None:
        return None


def test_only_the_write_ahead_is_durable() -> None:
    ledger = Recording()
    faults = ActiveFaults(ledger, on_error=lambda _m: None)
    faults.add(record("a"))
    faults.replace(record("a").evolve(status="active"))
    faults.add(record("b"))
    faults.remove("a")
    assert ledger.saves == [(["a"], True), (["a"], False), (["a", "b"], True), (["b"], False)]


def test_a_write_without_fsync_is_the_same_atomic_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    ledger = Ledger(tmp_path / "state")
    ledger.save([record("a")])
    assert len(synced) == 2  # the file, then the directory
    first = ledger.path.read_bytes()
    ledger.save([record("a").evolve(status="active")], durable=False)
    assert len(synced) == 2
    assert [f.status for f in ledger.load()] == ["active"]
    ledger.save([record("a")], durable=False)
    assert ledger.path.read_bytes() == first
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["ledger.json"]
