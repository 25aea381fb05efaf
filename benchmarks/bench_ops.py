"""Leaving it running (issue 11): what metrics and notifications cost.

* Idle footprint of `chaos-agent run` watching N opted-in containers (no fault due), with
  metrics (HTTP endpoint) and notifications (a JSON webhook on 127.0.0.1) on, against the
  same agent with both off, measured in the same run: RSS and CPU share of one core.
* Scrape latency of /metrics from that agent (N targets), over loopback HTTP.
* Heal punctuality (bench_heal's 50 spread pauses, Engine in-process) while a notification
  receiver hangs and every inject/heal is a message for it.

    python -m benchmarks.bench_ops [--containers 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks._common import Fleet, api_client, fmt_ms, stats, timed, write_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Receiver:
    """hang=False: answers 200; hang=True: reads the request and never answers."""

    def __init__(self, hang: bool) -> None:
        release = self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hang:
                    release.wait(600)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _footprint(label: str, value: str, seconds: float, ops: bool, receiver: str) -> dict[str, Any]:
    import psutil

    port = _free_port()
    extra = ""
    if ops:
        extra = (
            f'[metrics]\nenabled = true\nport = {port}\n[notify]\nevents = ["start", "stop"]\n'
            f'[[notify.targets]]\nkind = "json"\nurl = "{receiver}"\n'
        )
    with tempfile.TemporaryDirectory(prefix="chaos-bench-ops-") as tmp:
        state = Path(tmp) / "state"
        cfg = write_config(state, label, value, extra)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--no-live", "--config", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            journal = state / "journal.jsonl"
            end = time.monotonic() + 60
            while not (journal.exists() and '"event":"start"' in journal.read_text()):
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"agent did not start: {proc.stderr.read()[-500:] if proc.stderr else ''}")  # fmt: skip
                time.sleep(0.1)
            time.sleep(6.0)  # settle (metrics take their first snapshot after 5 s)
            p = psutil.Process(proc.pid)
            cpu0, w0 = p.cpu_times(), time.monotonic()
            rss: list[float] = []
            while time.monotonic() < w0 + seconds:
                rss.append(p.memory_info().rss / 2**20)
                time.sleep(1.0)
            cpu1, w1 = p.cpu_times(), time.monotonic()
            busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            out: dict[str, Any] = {
                "rss_mb_max": max(rss),
                "cpu_percent_of_one_core": 100.0 * busy / (w1 - w0),
            }
            if ops:
                url = f"http://127.0.0.1:{port}/metrics"

                def scrape() -> None:
                    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
                        body = r.read()
                    out["metrics_bytes"] = len(body)
                    out["series"] = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))  # fmt: skip

                for _ in range(3):
                    scrape()
                out["scrape_ms"] = stats([timed(scrape) for _ in range(100)])
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out


def _baseline(api: Any, ids: list[str], label: str, value: str) -> dict[str, Any]:
    from benchmarks import bench_heal

    with tempfile.TemporaryDirectory(prefix="chaos-bench-ops-") as tmp:
        return bench_heal._one(api, ids, label, value, Path(tmp), False)


def _punctuality(api: Any, ids: list[str], label: str, value: str, hang_url: str) -> dict[str, Any]:
    """bench_heal's spread schedule, with a notifier that tells a hanging receiver everything."""
    from agent.notify import Notifier
    from agent.ops_config import NotifySection, NotifyTarget, Secret
    from benchmarks import bench_heal

    section = NotifySection(
        targets=(NotifyTarget(kind="json", url=Secret(hang_url), name="hang"),),
        events=("fault", "start", "stop", "stuck"),
        queue=10,
        timeout=5.0,
        retries=3,
    )
    notifier = Notifier(section)
    notifier.start()
    original = bench_heal._engine

    def with_notifier(*args: Any, **kw: Any) -> Any:
        engine = original(*args, **kw)
        engine.journal.subscribe(notifier.observe)
        return engine

    bench_heal._engine = with_notifier  # type: ignore[attr-defined]
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-bench-ops-") as tmp:
            res = bench_heal._one(api, ids, label, value, Path(tmp), False)
    finally:
        bench_heal._engine = original  # type: ignore[attr-defined]
        notifier.stop(timeout=1.0)
    res["dropped"] = notifier.counts.get(("hang", "dropped"), 0)
    return res


def run(containers: int = 200, seconds: float = 30.0) -> tuple[dict[str, Any], list[str]]:
    api = api_client()
    fleet = Fleet(api)
    ok, hang = _Receiver(False), _Receiver(True)
    raw: dict[str, Any] = {}
    try:
        key = "chaos.bench.ops"
        fleet.create(containers, {key: fleet.run_id})
        raw["off"] = _footprint(key, fleet.run_id, seconds, False, ok.url)
        raw["on"] = _footprint(key, fleet.run_id, seconds, True, ok.url)
        fleet.remove(fleet.ids[50:])
        raw["heal_baseline"] = _baseline(api, fleet.ids, key, fleet.run_id)
        raw["heal_hanging_receiver"] = _punctuality(api, fleet.ids, key, fleet.run_id, hang.url)
    finally:
        fleet.remove_all()
        ok.close()
        hang.close()
        api.close()
    off, on, heal = raw["off"], raw["on"], raw["heal_hanging_receiver"]
    s, c = heal["started"], heal["completed"]
    bs, bc = raw["heal_baseline"]["started"], raw["heal_baseline"]["completed"]
    md = [
        f"## Leaving it running: metrics and notifications ({containers} containers)",
        "",
        f"`python -m benchmarks.bench_ops`: an idle `chaos-agent run` watching {containers} "
        f"opted-in containers for {seconds:.0f} s, with and without `[metrics]` (HTTP) and "
        "`[notify]` (a JSON webhook on 127.0.0.1). Goals: <= 50 MB, <= 0.5 % of a core.",
        "",
        "| agent | RSS max | CPU (one core) |",
        "|---|---:|---:|",
        f"| metrics and notifications off | {off['rss_mb_max']:.1f} MB | {off['cpu_percent_of_one_core']:.2f} % |",
        f"| metrics and notifications on | {on['rss_mb_max']:.1f} MB | {on['cpu_percent_of_one_core']:.2f} % |",
        "",
        f"Scrape of /metrics ({on['series']} series, {on['metrics_bytes']} bytes), 100 GETs over "
        f"loopback: median {fmt_ms(on['scrape_ms']['median'])} ms, p99 "
        f"{fmt_ms(on['scrape_ms']['p99'])} ms, max {fmt_ms(on['scrape_ms']['max'])} ms.",
        "",
        f"Heal punctuality with a hanging receiver told of every inject and heal ({heal['n']} "
        "spread pauses, bench_heal's schedule; goal p99 <= 50 ms): started p50 "
        f"{fmt_ms(s['median'])} ms, p99 {fmt_ms(s['p99'])} ms; verified p50 "
        f"{fmt_ms(c['median'])} ms, p99 {fmt_ms(c['p99'])} ms, max {fmt_ms(c['max'])} ms; "
        f"{heal['dropped']} messages dropped (queue of 10). The same schedule without "
        f"notifications, just before: started p50 {fmt_ms(bs['median'])} ms, p99 "
        f"{fmt_ms(bs['p99'])} ms; verified p50 {fmt_ms(bc['median'])} ms, p99 "
        f"{fmt_ms(bc['p99'])} ms.",
        "",
    ]
    return raw, md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ops")
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    raw, md = run(args.containers, args.seconds)
    print("\n".join(md))
    print(json.dumps(raw, indent=1, default=str), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
