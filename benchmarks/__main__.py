"""Run every benchmark and write benchmarks/RESULTS.md.

    python -m benchmarks [--quick] [--only discovery,inject,cli,heal,footprint,coordinator,report,ops]

Needs a Docker engine and the image chaos-base:bookworm (scripts/build-images.sh).
Every container it creates is labelled chaos.bench=<run id> and removed at the end,
Ctrl-C included. Figures, not pass/fail: ratios against the raw Engine API are what
to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, Fleet, api_client, fmt_ms, machine

HERE = Path(__file__).resolve().parent
ALL = ("discovery", "inject", "cli", "heal", "footprint", "coordinator", "report", "ops")


def _table(rows: dict[str, dict[str, float]], base: str | None = None) -> list[str]:
    head = "| contender | median ms | p10 | p90 | max |" + (" x base |" if base else "")
    out = [head, "|---|---:|---:|---:|---:|" + ("---:|" if base else "")]
    for name, s in rows.items():
        line = f"| {name} | {fmt_ms(s['median'])} | {fmt_ms(s['p10'])} | {fmt_ms(s['p90'])} | {fmt_ms(s['max'])} |"
        if base:
            line += f" {s['median'] / rows[base]['median']:.2f} |"
        out.append(line)
    return out


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 20 s footprint")
    parser.add_argument("--only", default=",".join(ALL), help="comma list of " + ",".join(ALL))
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    quick = args.quick

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    api = api_client()
    api.ping()
    fleet = Fleet(api)
    info = machine()
    md: list[str] = [
        "# chaos-agent benchmarks",
        "",
        f"Written by `python -m benchmarks{' --quick' if quick else ''}` "
        f"(`benchmarks/run.sh`). Machine: {info['cpu']}, {info['cores']} cores, "
        f"kernel {info['kernel']}, Docker {info['docker']}, Python {info['python']}. "
        f"Date: {info['date']}. Commit: {info['commit']}.",
        "",
        "Figures from one run on a shared, noisy machine: compare the ratios, not the "
        "absolute times. Each contender runs once per round in rotating order.",
        "",
    ]
    raw: dict[str, Any] = {"machine": info}
    try:
        if "discovery" in only or "footprint" in only:
            from benchmarks import bench_discovery, bench_footprint

            key = "chaos.bench.d"
            sizes = (100, 500) if not quick else (100, 200)
            md += ["## Discovery", ""]
            md += [
                "`agent targets path` = `build_engine(...).discover()` (one label-filtered "
                "list call through docker-py, translated to Targets) + `evaluate` (the "
                "replica rules, one verdict per container): what `chaos-agent targets` and "
                "every scheduled attempt do. The floor is one `GET /containers/json` on a "
                "kept-alive unix-socket connection.",
                "",
            ]
            have = 0
            for n in sizes:
                if "discovery" not in only:
                    break
                _say(f"creating containers up to {n}")
                t0 = time.monotonic()
                fleet.create(n - have, {key: fleet.run_id})
                have = n
                _say(f"... {time.monotonic() - t0:.0f}s; measuring discovery of {n}")
                res = bench_discovery.run(key, fleet.run_id, n, rounds=8 if quick else 20)
                raw[f"discovery_{n}"] = res
                floor = "raw Engine API list (http.client, unix socket)"
                agent = res["agent targets path (discover + evaluate)"]["median"]
                sdk = res["docker-py APIClient.containers (one call)"]["median"]
                md += [f"### {n} opted-in containers", ""]
                md += _table(res, base=floor)
                md += [
                    "",
                    f"Agent / raw floor: **{agent / res[floor]['median']:.2f}x** "
                    f"(goal 1.3x); agent / one docker-py call: {agent / sdk:.2f}x; "
                    f"`docker ps` / raw: {res['docker ps --filter label=...']['median'] / res[floor]['median']:.2f}x.",
                    "",
                ]
            if "footprint" in only:
                want = 200 if not quick else 100
                if have > want:
                    fleet.remove(fleet.ids[want:])
                elif have < want:
                    fleet.create(want - have, {key: fleet.run_id})
                have = want
                seconds = 20.0 if quick else 60.0
                _say(f"footprint: agent watching {want} containers for {seconds:.0f}s")
                fp = bench_footprint.run(key, fleet.run_id, want, seconds)
                raw["footprint"] = fp
                _say("footprint again with the paramiko import blocked (proposed fix)")
                fx = bench_footprint.run(key, fleet.run_id, want, seconds / 2, block_paramiko=True)
                raw["footprint_fix"] = fx
                md += ["## Footprint of a running agent", ""]
                md += [
                    f"`chaos-agent run --no-live` watching {want} opted-in containers, no "
                    f"fault due (first_after = 1h), sampled for {fp['window_s']:.0f} s after it "
                    f"journaled `start` ({fp['start_to_start_event_s']:.2f} s after exec).",
                    "",
                    "| measure | value | goal |",
                    "|---|---:|---|",
                    f"| RSS, max | {fp['rss_mb_max']:.1f} MB | < 60 MB |",
                    f"| RSS, max, paramiko import blocked (proposed fix; {fx['window_s']:.0f} s) "
                    f"| {fx['rss_mb_max']:.1f} MB | < 60 MB |",
                    f"| USS (memory only this process holds) | {fp['uss_mb']:.1f} MB | |",
                    f"| CPU, share of one core | {fp['cpu_percent_of_one_core']:.3f} % | < 0.5 % |",
                    f"| CPU, paramiko blocked | {fx['cpu_percent_of_one_core']:.3f} % | < 0.5 % |",
                    f"| voluntary context switches | {fp['voluntary_ctx_switches_per_s']:.2f} /s | |",
                    f"| child processes | {fp['children']} | |",
                    "",
                    "Where the memory goes: VmRSS of a fresh interpreter after importing each "
                    "layer. `import docker` pulls in paramiko (for `ssh://` Docker hosts) and "
                    "with it cryptography: about 18 MB the agent never uses unless DOCKER_HOST "
                    "is ssh:// (its coordinator client imports paramiko itself, only when "
                    "enabled). The idle loop wakes once a second (kill switch and probes "
                    "check): the context-switch rate above.",
                    "",
                    "",
                    "| imported | RSS MB |",
                    "|---|---:|",
                    *[f"| {k} | {v:.1f} |" for k, v in fp["import_rss_mb"].items()],
                    "",
                ]
            fleet.remove_all()
            have = 0
        if "inject" in only:
            from benchmarks import bench_inject

            key = "chaos.bench.i"
            ids = fleet.create(6, {key: fleet.run_id})
            _say("inject: pause/unpause and kill")
            res = bench_inject.run(api, ids, key, fleet.run_id, rounds=10 if quick else 30)
            raw["inject"] = res
            p = res["pause"]
            r_pair = p["raw API pause+unpause"]["median"]
            a_pair = p["agent pause+unpause (ledger fsync)"]["median"]
            m_pair = p["agent pause+unpause (in-memory ledger)"]["median"]
            f_pair = p["agent pause+unpause (every ledger write fsynced)"]["median"]
            h_pair = p["raw HTTP pause+unpause (stdlib, unix socket)"]["median"]
            k = res["kill"]
            r_kill = k["raw API kill"]["median"]
            a_kill = k["agent kill, mode=api (ledger fsync)"]["median"]
            m_kill = k["agent kill, mode=api (in-memory ledger)"]["median"]
            save = res["ledger_save"]["median"]
            md += ["## Fault injection: decision to effect", ""]
            if res["heal_retries"]:
                md += [
                    f"Note: {len(res['heal_retries'])} agent heal(s) needed a retry "
                    f"({res['heal_retries'][0]}): the daemon's unpause failed right after a "
                    "pause (cgroup v1 freezer under load); the engine retries such heals "
                    "with backoff, and so does this benchmark (the retry time is in the sample).",
                    "",
                ]
            md += [
                "Agent = `Engine.inject(Plan)` (lease, identity pin = one inspect, ledger "
                "write-ahead, journal, inject, ledger update) and for pause also "
                "`Engine.heal` (inspect, unpause, inspect to verify, ledger, journal). Raw = "
                "docker-py `APIClient` calls, and the bare HTTP requests over the socket "
                "(what the agent's adapter sends on a local socket). "
                f"The agent makes **{res['api_calls_per_agent_pair']} Engine API calls** per "
                "pause+unpause fault where the raw pair makes 2.",
                "",
                "### pause + unpause (one fault: inject and heal)",
                "",
                *_table(p, base="raw API pause+unpause"),
                "",
                f"Agent adds **{a_pair - r_pair:.1f} ms per fault** over the docker-py pair "
                f"(goal < 2 ms), {a_pair - h_pair:.1f} ms over the bare HTTP pair; "
                f"{m_pair - r_pair:.1f} ms over docker-py without any ledger. The ledger costs "
                f"{a_pair - m_pair:.1f} ms per fault with only the write-ahead intent fsynced, "
                f"{f_pair - m_pair:.1f} ms with all 3 writes (intent, active, cleared) fsynced "
                f"as before issue 13 (one durable `Ledger.save` = {save:.2f} ms median, "
                f"{res['ledger_save_not_durable']['median']:.2f} ms without fsync; one "
                f"journal line = {res['journal_write']['median']:.3f} ms).",
                "",
                "The agent's own time per fault, the daemon's pause and unpause calls taken "
                "out of each sample (a difference of medians above is at the mercy of the "
                "daemon's spread); medians in ms (p10-p90):",
                "",
                "| ledger | agent's own time | of which extra inspects | ledger | rest |",
                "|---|---:|---:|---:|---:|",
                *[
                    f"| {name} | "
                    + " | ".join(
                        f"{fmt_ms(o[k]['median'])} ({fmt_ms(o[k]['p10'])}-{fmt_ms(o[k]['p90'])})"
                        for k in ("agent's own time", "extra inspects", "ledger", "rest")
                    )
                    + " |"
                    for name, o in res["overhead"].items()
                ],
                "",
                "### kill (until the container is seen not running)",
                "",
                *_table(k, base="raw API kill"),
                "",
                f"Agent (mode=api) adds {a_kill - r_kill:.1f} ms over raw; with the "
                f"in-memory ledger {m_kill - r_kill:.1f} ms. Kill times are dominated by "
                "the daemon reaping the container; their spread is larger than the "
                "agent's overhead.",
                "",
            ]
            fleet.remove(ids)
        if "cli" in only:
            from benchmarks import bench_cli

            key = "chaos.bench.c"
            ids = fleet.create(4, {key: fleet.run_id})
            _say("cli: one-off inject vs docker kill vs Chaos Toolkit")
            res = bench_cli.run(api, ids, key, fleet.run_id, rounds=5 if quick else 12)
            raw["cli"] = res
            rows = res["results"]
            md += ["## One-off kill as a whole process", ""]
            md += [
                f"`{res['agent_command']} inject kill X --duration 60s --detach` (kill "
                "mode=api, watchdog off in this config: with it on, one more fork+exec) vs "
                "`docker kill X` vs a Chaos Toolkit experiment whose method is one python "
                "action doing the same docker-py kill "
                f"({res.get('ctk_version', res['ctk'])}; installed with `pip install "
                "chaostoolkit chaostoolkit-lib docker` in its own venv, see run.sh). Each "
                "returns once the kill is sent.",
                "",
                *_table(rows, base="docker kill (CLI)"),
                "",
            ]
            if "Chaos Toolkit one-action experiment" in rows:
                a = rows["chaos-agent inject kill --detach"]["median"]
                c = rows["Chaos Toolkit one-action experiment"]["median"]
                md += [f"chaos-agent / Chaos Toolkit: **{a / c:.2f}x** (goal < 1).", ""]
            else:
                md += [f"Chaos Toolkit: {res['ctk']}.", ""]
            fleet.remove(ids)
        if "heal" in only:
            from benchmarks import bench_heal

            key = "chaos.bench.h"
            ids = fleet.create(50, {key: fleet.run_id})
            _say("heal punctuality: 50 concurrent pauses")
            res = bench_heal.run(api, ids, key, fleet.run_id, widths=(8, 64))
            raw["heal"] = res
            md += ["## Heal punctuality (50 concurrent timed pauses)", ""]
            md += [
                "The Engine in-process with the real DockerEngine and ledger; lateness = "
                "heal verified (unpaused, ledger cleared, journaled) minus due time, and heal "
                "started minus due time. Goal: p99 < 50 ms. Milliseconds.",
                "",
                *bench_heal.table(res, fmt_ms),
                "",
                "Every due heal gets its own thread at once and 16 run side by side "
                "(agent/heals.py); what is left is the daemon's own time: it runs one `runc` "
                "per unpause, so the daemon floor above bounds the same-instant schedule "
                "however many heals run in parallel; with all in flight each ends near the "
                "floor (p50 = p99), with fewer side by side the last ones queue past it.",
                "",
            ]
            fleet.remove(ids)
        if "ops" in only:
            from benchmarks import bench_ops

            _say("ops: footprint with metrics and notifications, scrape, hanging receiver")
            raw["ops"], section = bench_ops.run(200, 20.0 if quick else 30.0)
            md += section
        if "coordinator" in only:
            md += ["## Coordinator", ""]
            script = HERE / "bench_coordinator.py"
            if script.exists() and (REPO / "agent" / "coordinator").is_dir():
                _say("coordinator: benchmarks/bench_coordinator.py")
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.bench_coordinator"],
                    capture_output=True, text=True, cwd=REPO, timeout=900,
                )  # fmt: skip
                raw["coordinator"] = {"rc": out.returncode}
                md += [
                    f"From `python -m benchmarks.bench_coordinator` (exit {out.returncode}):",
                    "",
                    "```",
                    (out.stdout.strip() or out.stderr.strip()[-3000:]),
                    "```",
                    "",
                ]
            else:
                md += ["Not measured: benchmarks/bench_coordinator.py does not exist yet.", ""]
        if "report" in only:
            import tempfile

            from benchmarks import bench_report

            _say("report: synthetic journals (benchmarks/bench_report.py)")
            with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
                raw["report"] = bench_report.bench(Path(tmp), quick)
            md += bench_report.markdown(raw["report"])
    except KeyboardInterrupt:
        _say("interrupted: removing the containers")
        fleet.remove_all()
        return 130
    finally:
        fleet.remove_all()
        api.close()
    Path(args.output).write_text("\n".join(md) + "\n")
    (Path(args.output).with_suffix(".json")).write_text(json.dumps(raw, indent=1, default=str))
    print("\n".join(md))
    _say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
