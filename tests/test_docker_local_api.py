"""Reads and container effects over the local socket with the standard library (no docker
SDK): the same JSON as the SDK's, the same error translation, and neither `targets` nor a
one-off pause imports the SDK."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agent.adapters.docker_engine import DockerEngine
from agent.errors import AgentError, DockerUnavailable, TargetGone
from tests.conftest import python_out

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
    out = python_out(code)
    assert out.split() == ["False", "False", "False"]


def _steps(engine: DockerEngine, cid: str, docker_api) -> list[str]:
    """Each effect twice (the second is refused or a no-op), as (outcome, state) lines."""

    def state() -> str:
        s = docker_api.inspect_container(cid)["State"]
        return "paused" if s["Paused"] else ("running" if s["Running"] else "exited")

    steps = [
        lambda: engine.pause(cid), lambda: engine.pause(cid),
        lambda: engine.unpause(cid), lambda: engine.unpause(cid),
        lambda: engine.stop(cid, 1), lambda: engine.stop(cid, 1),
        lambda: engine.start(cid), lambda: engine.start(cid),
        lambda: engine.kill(cid, "SIGKILL"), lambda: engine.kill(cid, "SIGKILL"),
        lambda: engine.restart(cid, 1),
        lambda: engine.pause("no-such-container-x"),
    ]  # fmt: skip
    out = []
    for step in steps:
        try:
            step()
            outcome = "ok"
        except AgentError as exc:
            outcome = f"{exc.__class__.__name__}: {exc.message}"
        out.append(f"{outcome} -> {state()}")
    return out


def test_effects_without_the_sdk_do_and_fail_as_through_it(containers, docker_api) -> None:
    local, sdk = containers("fx-local"), containers("fx-sdk")
    through_sdk = DockerEngine()
    through_sdk._local_socket = lambda: None  # type: ignore[method-assign]  # the SDK path
    ours = _steps(DockerEngine(), local["Id"], docker_api)
    theirs = _steps(through_sdk, sdk["Id"], docker_api)
    assert ours == [line.replace(sdk["Id"], local["Id"]) for line in theirs]
    assert ours[0] == "ok -> paused" and ours[2] == "ok -> running"
    assert ours[1].startswith("FaultFailed: ") and ours[-1].startswith("TargetGone: ")
    assert ours[7] == "ok -> running"  # start of a running container is not an error


def test_a_one_off_pause_imports_neither_the_sdk_nor_typer(containers, tmp_path: Path) -> None:
    value = f"t-{uuid.uuid4().hex[:8]}"
    made = [containers(f"oo-{i}", {"chaos.enable": value, "chaos.group": value}) for i in (1, 2)]
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\ndeadman = "off"\n'
        f'[targets]\nvalue = "{value}"\n'
    )
    code = (
        "import sys; from agent.quick import inject_command\n"
        f"code = inject_command({str(cfg)!r}, 'pause', {made[0]['Name'].lstrip('/')!r}, '1s',"
        " force=False, detach=False, dry_run=False, log=print)\n"
        "print(code, 'docker' in sys.modules, 'requests' in sys.modules, 'typer' in sys.modules)\n"
    )
    out = python_out(code)
    assert "injected pause" in out and "healed pause" in out
    assert out.splitlines()[-1].split() == ["0", "False", "False", "False"]
