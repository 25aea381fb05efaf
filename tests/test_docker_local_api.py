"""Reads over the local socket with the standard library (no docker SDK): the same JSON
as the SDK's, the same error translation, and `targets` never imports the SDK."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agent.adapters.docker_engine import DockerEngine
from agent.errors import DockerUnavailable, TargetGone
from tests.conftest import REPO

pytestmark = pytest.mark.docker


def test_list_and_inspect_match_the_sdk(containers, docker_api) -> None:
    value = f"t-{uuid.uuid4().hex[:8]}"
    made = [containers(f"la-{i}", {"chaos.enable": value}) for i in (1, 2)]
    label = f"chaos.enable={value}"
    mine = DockerEngine().list_containers(label)
    sdk = docker_api.containers(all=True, filters={"label": [label]})
    assert sorted(c["Id"] for c in mine) == sorted(c["Id"] for c in made)
    key = lambda c: c["Id"]  # noqa: E731
    for ours, theirs in zip(sorted(mine, key=key), sorted(sdk, key=key), strict=True):
        assert (ours["Id"], ours["Labels"], ours["State"], ours["Names"]) == (
            theirs["Id"], theirs["Labels"], theirs["State"], theirs["Names"],
        )  # fmt: skip
    info = DockerEngine().inspect(made[0]["Name"].lstrip("/"))
    assert info["Id"] == made[0]["Id"]
    assert info["State"]["Pid"] == docker_api.inspect_container(made[0]["Id"])["State"]["Pid"]


@pytest.mark.parametrize("name", ["no-such-container-x", "a/../../info", "x?all=1", "é; $(id)"])
def test_unknown_or_hostile_names_are_target_gone(name: str) -> None:
    with pytest.raises(TargetGone):
        DockerEngine().inspect(name)


def test_an_unreachable_socket_is_docker_unavailable(tmp_path: Path) -> None:
    engine = DockerEngine(base_url=f"unix://{tmp_path / 'nothing.sock'}")
    with pytest.raises(DockerUnavailable, match="not reachable"):
        engine.list_containers("chaos.enable=true")


def test_targets_does_not_import_the_sdk(tmp_path: Path) -> None:
    code = (
        "import sys; from agent.quick import targets_text\n"
        "targets_text(None, as_json=True, all_=False)\n"
        "print('docker' in sys.modules, 'requests' in sys.modules, 'typer' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False"]
