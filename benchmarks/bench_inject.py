"""Fault injection, decision to effect: the agent's path (Engine.inject from a Plan: fresh
identity pin, ledger write-ahead with fsync, journal, inject; then Engine.heal: inspect,
unpause, verify, ledger, journal) vs the raw Engine API call (docker-py APIClient; and
the bare HTTP request over the socket, which is what the agent's adapter sends) vs the
`docker` CLI.

kill: "effect" is the container seen not running (inspect polled right after the call,
the same way for every contender); the container is started again, untimed, between
rounds. pause: one pause+unpause pair per sample.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import interleaved, stats, timed, write_config


class CountingDocker:
    """Counts Engine API calls made through the agent's adapter."""

    def __init__(self) -> None:
        from agent.adapters.docker_engine import DockerEngine

        self.engine = DockerEngine()
        self.calls = 0
        inner, local = self.engine._call, self.engine._request

        def counted(what: str, fn: Any, container: str = "") -> Any:
            self.calls += 1
            return inner(what, fn, container)

        def counted_local(*args: Any, **kwargs: Any) -> Any:  # the local-socket path
            self.calls += 1
            return local(*args, **kwargs)

        self.engine._call = counted  # type: ignore[method-assign]
        self.engine._request = counted_local  # type: ignore[method-assign]


class AlwaysDurable:
    """The ledger as it was before issue 13: every write fsynced."""

    def __init__(self, state_dir: Path) -> None:
        from agent.ledger import Ledger

        self.inner = Ledger(state_dir)

    def load(self) -> Any:
        return self.inner.load()

    def save(self, faults: Any, *, durable: bool = True) -> None:
        self.inner.save(faults, durable=True)

    def quarantine(self) -> Any:
        return self.inner.quarantine()


def overhead(engine: Any, pair: Any, rounds: int) -> dict[str, dict[str, float]]:
    """The agent's own time per pause+unpause fault, the daemon's pause and unpause taken
    out: per sample, the whole pair minus the time spent inside those two calls (their
    spread, tens of ms on a shared host, would hide a 2 ms goal in a difference of
    medians). Split into the extra Engine calls (the identity pin and the heal's two
    inspects), the ledger writes, and the rest (journal, Python)."""
    docker = engine.registry.get("container", "pause").inner.docker
    ledger = engine.records.ledger
    spent = {"effects": 0.0, "inspects": 0.0, "ledger": 0.0}
    originals = {"pause": docker.pause, "unpause": docker.unpause, "inspect": docker.inspect}

    def timing(fn: Any, key: str) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += (time.perf_counter() - t) * 1000

        return wrapped

    docker.pause = timing(originals["pause"], "effects")
    docker.unpause = timing(originals["unpause"], "effects")
    docker.inspect = timing(originals["inspect"], "inspects")
    save = ledger.save
    ledger.save = timing(save, "ledger")
    out: dict[str, list[float]] = {
        "agent's own time": [],
        "extra inspects": [],
        "ledger": [],
        "rest": [],
    }
    try:
        for _ in range(rounds):
            for k in spent:
                spent[k] = 0.0
            total = timed(pair)
            own = total - spent["effects"]
            out["agent's own time"].append(own)
            out["extra inspects"].append(spent["inspects"])
            out["ledger"].append(spent["ledger"])
            out["rest"].append(own - spent["inspects"] - spent["ledger"])
    finally:
        for name, fn in originals.items():
            setattr(docker, name, fn)
        ledger.save = save
    return {k: stats(v) for k, v in out.items()}


def _engine(tmp: Path, label: str, value: str, docker: Any) -> Any:
    from agent.config import load_config
    from agent.wiring import build_engine

    extra = "\n".join(
        [
            "[faults]",
            'enabled = ["kill", "pause"]',
        ]
    )
    cfg = write_config(tmp / "state", label, value, extra)
    text = cfg.read_text().replace("[agent]\n", '[agent]\ndeadman = "off"\n', 1)
    text = text.replace(
        "[targets]\n",
        "[targets]\nmin_replicas = 1\nmin_healthy = 0\nmax_per_group = 100\nmax_concurrent = 100\n",
        1,
    )
    cfg.write_text(text)
    config = load_config(str(cfg))
    return build_engine(config, probes=False, docker=docker)


def run(api: Any, ids: list[str], label: str, value: str, rounds: int = 25) -> dict[str, Any]:
    from agent.adapters.docker_engine import unix_http
    from agent.ledger import MemoryLedger
    from agent.model import Plan

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
        counting = CountingDocker()
        engine = _engine(Path(tmp), label, value, counting.engine)
        targets = {t.id: t for t in engine.discover()}
        engine.evaluate(list(targets.values()))
        mem_engine = _engine(Path(tmp) / "mem", label, value, counting.engine)
        mem_engine.ledger = mem_engine.records.ledger = MemoryLedger()
        mem_engine.evaluate(list(targets.values()))
        # before issue 13: every ledger write fsynced (intent, active, cleared)
        all_engine = _engine(Path(tmp) / "all", label, value, counting.engine)
        all_engine.ledger = all_engine.records.ledger = AlwaysDurable(Path(tmp) / "all" / "st")
        all_engine.evaluate(list(targets.values()))
        names = {cid: api.inspect_container(cid)["Name"].lstrip("/") for cid in ids}

        # -- pause + unpause pairs ------------------------------------------------------
        cycle = {"i": 0}
        retries: list[str] = []

        def pick() -> str:
            cycle["i"] += 1
            return ids[cycle["i"] % len(ids)]

        def raw_pair() -> None:
            cid = pick()
            api.pause(cid)
            api.unpause(cid)

        sock = "/var/run/docker.sock"

        def http_pair() -> None:  # what the agent's adapter sends, without the agent
            cid = pick()
            for action in ("pause", "unpause"):
                status, _, _ = unix_http(sock, "POST", f"/containers/{cid}/{action}", 30.0)
                assert status == 204, status

        def cli_pair() -> None:
            cid = pick()
            subprocess.run(["docker", "pause", names[cid]], check=True, capture_output=True)
            subprocess.run(["docker", "unpause", names[cid]], check=True, capture_output=True)

        def agent_pair(eng: Any) -> Any:
            def go() -> None:
                cid = pick()
                rec = eng.inject(Plan("pause", targets[cid], 60.0, {}))
                outcome = eng.heal(rec, reason="bench")
                tries = 0
                while not outcome.healed:  # cgroup v1 freezer under load: retried, as the loop does
                    tries += 1
                    assert tries < 50, outcome
                    retries.append(outcome.detail)
                    time.sleep(0.1)
                    outcome = eng.heal(rec, reason="bench retry")

            return go

        before = counting.calls
        agent_pair(engine)()
        results["api_calls_per_agent_pair"] = counting.calls - before
        pause = interleaved(
            {
                "raw API pause+unpause": raw_pair,
                "raw HTTP pause+unpause (stdlib, unix socket)": http_pair,
                "agent pause+unpause (ledger fsync)": agent_pair(engine),
                "agent pause+unpause (every ledger write fsynced)": agent_pair(all_engine),
                "agent pause+unpause (in-memory ledger)": agent_pair(mem_engine),
                "docker pause && docker unpause (CLI)": cli_pair,
            },
            rounds,
        )
        results["pause"] = {k: stats(v) for k, v in pause.items()}
        results["heal_retries"] = retries
        results["overhead"] = {
            "ledger: intent fsynced": overhead(engine, agent_pair(engine), rounds),
            "ledger: every write fsynced": overhead(all_engine, agent_pair(all_engine), rounds),
            "in-memory ledger": overhead(mem_engine, agent_pair(mem_engine), rounds),
        }

        # -- kill -------------------------------------------------------------------------
        def not_running(cid: str) -> None:
            while api.inspect_container(cid)["State"]["Running"]:
                pass

        def kill_rounds() -> dict[str, list[float]]:
            samples: dict[str, list[float]] = {}

            def raw(cid: str) -> None:
                api.kill(cid, signal="SIGKILL")
                not_running(cid)

            def cli(cid: str) -> None:
                subprocess.run(["docker", "kill", names[cid]], check=True, capture_output=True)
                not_running(cid)

            def agent(mode: str, eng: Any) -> Any:
                def go(cid: str) -> None:
                    rec = eng.inject(
                        Plan("kill", targets[cid], 60.0, {"signal": "SIGKILL", "mode": mode})
                    )
                    not_running(cid)
                    go.record = rec  # type: ignore[attr-defined]

                return go

            contenders = {
                "raw API kill": (raw, None),
                "agent kill, mode=api (ledger fsync)": (agent("api", engine), engine),
                "agent kill, mode=crash (host PID, ledger fsync)": (agent("crash", engine), engine),
                "agent kill, mode=api (in-memory ledger)": (agent("api", mem_engine), mem_engine),
                "docker kill (CLI)": (cli, None),
            }
            names_ = list(contenders)
            for r in range(rounds + 1):
                order = names_[r % len(names_) :] + names_[: r % len(names_)]
                for name in order:
                    fn, eng = contenders[name]
                    cid = pick()
                    ms = timed(lambda fn=fn, cid=cid: fn(cid))
                    if r > 0:  # round 0 is the warm-up
                        samples.setdefault(name, []).append(ms)
                    if eng is not None:
                        outcome = eng.heal(fn.record, reason="bench")  # starts it again
                        assert outcome.healed, outcome
                    else:
                        api.start(cid)
                    while not api.inspect_container(cid)["State"]["Running"]:
                        time.sleep(0.01)
                    # the agent pins StartedAt: let it change before the next kill
                    time.sleep(0.02)
            return samples

        kill = kill_rounds()
        results["kill"] = {k: stats(v) for k, v in kill.items()}

        # -- what the write-ahead costs on its own -------------------------------------
        from agent.ledger import Ledger

        ledger = Ledger(Path(tmp) / "fsync")
        rec = engine.inject(Plan("pause", targets[ids[0]], 60.0, {}))
        engine.heal(rec, reason="bench")
        save = [timed(lambda: ledger.save([rec])) for _ in range(40)]
        journal = [timed(lambda: engine.journal.write("bench", n=1)) for _ in range(40)]
        results["ledger_save"] = stats(save)
        results["journal_write"] = stats(journal)
        durable = [timed(lambda: ledger.save([rec], durable=False)) for _ in range(40)]
        results["ledger_save_not_durable"] = stats(durable)
        assert not engine.active and not mem_engine.active and not all_engine.active
    return results
