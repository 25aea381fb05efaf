"""`chaos-agent report` at scale, on synthetic journals written like the agent's own.

    python -m benchmarks.bench_report [--quick] [--keep DIR]

Four journals, each reported by a real `python -m agent report` process (wall time and
the peak RSS that process reports at exit):

- "200 MB": ~850k probe samples (one probe, 1/s, ~235-byte lines like the agent's) and
  ~3.7k faults (inject + heal), i.e. about ten days of a 1/s probe.
- "20k faults": 20k faults two minutes apart (four weeks at mean_interval = "2m"), each
  overlapping the next one in a different group, and a probe sample every 30 s.
- "torn 300 MB": a short journal followed by a 300 MB tail with no newline (a crash
  mid-write of a huge line).
- "absurd lines": the 200 MB journal with a line of `"t": 1e300` and a 400-digit time.

Goals (issue 10, item 12): 200 MB in <= 10 s and <= 300 MB RSS; 20k faults in <= 5 s,
`--json` included; a bad line is skipped and counted, never fatal. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
T0 = 1_780_000_000.0

_PROBE = (
    '{{"ts":"2026-05-28T10:00:00.000+00:00","t":{t:.3f},"event":"probe","host":"web-a",'
    '"seed":42,"dry_run":false,"probe":"site","kind":"http",'
    '"endpoint":"http://127.0.0.1:8080/","ok":{ok},"latency_ms":{lat},"status":{st},'
    '"detail":"{det}"}}\n'
)
_FAULT = (
    '{{"ts":"2026-05-28T10:00:00.000+00:00","t":{t:.3f},"event":"{ev}","host":"web-a",'
    '"seed":42,"dry_run":false,"fault_id":"{fid}","fault":"{kind}","target_kind":"container",'
    '"container_id":"{cid}","container":"shop-web-{n}","group":"{group}","duration":30.0,'
    '"injected_at":{start:.3f},"deadline":{end:.3f},"params":{{}}{extra}}}\n'
)
_KINDS = ("kill", "stop", "pause", "restart")


def _fault_lines(i: int, start: float, end: float, group: str) -> str:
    common = {
        "fid": f"f{i:07d}",
        "kind": _KINDS[i % 4],
        "cid": f"{i:012x}" * 5 + "abcd",
        "n": i % 3 + 1,
        "group": group,
        "start": start,
        "end": end,
    }
    inject = _FAULT.format(t=start, ev="inject", extra="", **common)
    heal = _FAULT.format(t=end, ev="heal", extra=',"how":"healed","detail":""', **common)
    return inject + heal


def write_big(path: Path, target_bytes: int) -> dict[str, int]:
    """Probe every second; a 30 s fault every ~230 s; failures during some faults."""
    lines = faults = 0
    written = 0
    fault_every = 230
    with path.open("w", encoding="ascii") as fh:
        buf: list[str] = []
        s = 0
        while written < target_bytes:
            t = T0 + s
            phase = s % fault_every
            failing = 5 <= phase < 9 and (s // fault_every) % 3 == 0
            if failing:
                line = _PROBE.format(
                    t=t + 1.0, ok="false", lat=1000.4, st="null", det="no answer within 1s"
                )
            else:
                line = _PROBE.format(t=t + 0.012, ok="true", lat=12.3, st=200, det="HTTP 200")
            buf.append(line)
            if phase == 3:
                buf.append(_fault_lines(faults, t, t + 30, f"shop/web{faults % 5}"))
                faults += 1
                lines += 2
            lines += 1
            s += 1
            if len(buf) >= 4096:
                chunk = "".join(buf)
                fh.write(chunk)
                written += len(chunk)
                buf = []
        fh.write("".join(buf))
    return {"lines": lines, "faults": faults, "probe_samples": s}


def write_many_faults(path: Path, n: int) -> dict[str, int]:
    samples = 0
    with path.open("w", encoding="ascii") as fh:
        buf: list[str] = []
        span = n * 120
        for s in range(0, span + 60, 30):
            ok = (s // 30) % 17 != 0
            buf.append(
                _PROBE.format(
                    t=T0 + s,
                    ok="true" if ok else "false",
                    lat=12.3,
                    st=200 if ok else 503,
                    det="HTTP 200",
                )
            )
            samples += 1
        for i in range(n):
            start = T0 + i * 120 + 5
            # every fault overlaps the next one (150 s long, 120 s apart), another group
            buf.append(_fault_lines(i, start, start + 150, f"shop/g{i % 7}"))
        fh.write("".join(buf))  # out of order on purpose: the report sorts
    return {"faults": n, "probe_samples": samples}


def write_torn(path: Path, tail_bytes: int) -> None:
    write_many_faults(path, 50)
    with path.open("a", encoding="ascii") as fh:
        fh.write('{"t":1780000000.0,"event":"probe","detail":"')
        block = "x" * (1 << 20)
        for _ in range(tail_bytes >> 20):
            fh.write(block)


def write_absurd(src: Path, path: Path) -> None:
    with src.open("rb") as fin, path.open("wb") as fout:
        while chunk := fin.read(1 << 24):
            fout.write(chunk)
        fout.write(b'{"t": 1e300, "event": "probe", "probe": "site", "ok": true}\n')
        fout.write(b'{"t": 1' + b"0" * 400 + b', "event": "probe", "probe": "site", "ok": true}\n')


# `python -m agent ...` that writes its own peak RSS (VmHWM) to stderr at exit. (Neither
# wait4's rusage nor RUSAGE_SELF will do: Linux carries ru_maxrss across fork and exec, so
# both count the benchmark's own size at the fork; VmHWM belongs to the new image.)
_SELF_RSS = (
    "import atexit, runpy, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('\\nPEAK_RSS_KB %s\\n' % line.split()[1])\n"
    "atexit.register(_peak)\n"
    "sys.argv = ['chaos-agent', *sys.argv[1:]]\n"
    "runpy.run_module('agent', run_name='__main__')\n"
)


def run_report(journal: Path, *extra: str) -> dict[str, Any]:
    """One `python -m agent report` process: wall seconds, its peak RSS (MB), exit code."""
    began = time.monotonic()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.run(
            [sys.executable, "-c", _SELF_RSS, "report", "--journal", str(journal), *extra],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.PIPE,
            check=False,
        )
    seconds = time.monotonic() - began
    err = proc.stderr.decode("utf-8", "replace")
    peak = [line.split()[1] for line in err.splitlines() if line.startswith("PEAK_RSS_KB ")]
    return {
        "seconds": round(seconds, 2),
        "rss_mb": round(int(peak[-1]) / 1024, 1) if peak else -1.0,
        "exit": proc.returncode,
        "stderr": err[-300:],
    }


def skipped(journal: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "report", "--journal", str(journal), "--json"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return int(json.loads(out.stdout)["skipped_events"])


def bench(workdir: Path, quick: bool = False) -> dict[str, Any]:
    big_bytes = (50 if quick else 200) << 20
    n_faults = 5_000 if quick else 20_000
    torn_bytes = (60 if quick else 300) << 20
    results: dict[str, Any] = {}

    big = workdir / "big.jsonl"
    results["big_shape"] = write_big(big, big_bytes)
    results["big_mb"] = round(big.stat().st_size / (1 << 20), 1)
    results["big_json"] = run_report(big, "--json")
    results["big_table"] = run_report(big)

    many = workdir / "many.jsonl"
    results["many_shape"] = write_many_faults(many, n_faults)
    results["many_json"] = run_report(many, "--json")
    results["many_table"] = run_report(many)

    torn = workdir / "torn.jsonl"
    write_torn(torn, torn_bytes)
    results["torn_mb"] = round(torn.stat().st_size / (1 << 20), 1)
    results["torn_json"] = run_report(torn, "--json")
    results["torn_skipped"] = skipped(torn)
    torn.unlink()

    absurd = workdir / "absurd.jsonl"
    write_absurd(big, absurd)
    results["absurd_json"] = run_report(absurd, "--json")
    results["absurd_skipped"] = skipped(absurd)
    absurd.unlink()
    return results


def markdown(r: dict[str, Any]) -> list[str]:
    def row(name: str, key: str, goal: str) -> str:
        x = r[key]
        return f"| {name} | {x['seconds']:.2f} | {x['rss_mb']:.0f} | {x['exit']} | {goal} |"

    big, many = r["big_shape"], r["many_shape"]
    return [
        "## Report at scale",
        "",
        "`python -m benchmarks.bench_report`: synthetic journals written like the agent's "
        "own lines; each figure is one `python -m agent report` process (wall time, and "
        "the peak RSS it reports itself at exit), output to /dev/null.",
        "",
        "| journal | seconds | peak RSS MB | exit | goal |",
        "|---|---:|---:|---:|---|",
        row(
            f"{r['big_mb']:.0f} MB: {big['probe_samples']} probe samples, "
            f"{big['faults']} faults, `--json`",
            "big_json",
            "<= 10 s, <= 300 MB",
        ),
        row(f"{r['big_mb']:.0f} MB, table", "big_table", "<= 10 s, <= 300 MB"),
        row(
            f"{many['faults']} overlapping faults, {many['probe_samples']} samples, `--json`",
            "many_json",
            "<= 5 s",
        ),
        row(f"{many['faults']} faults, table", "many_table", "<= 5 s"),
        row(
            f"{r['torn_mb']:.0f} MB torn tail (no newline), `--json`",
            "torn_json",
            f"bounded memory; skipped {r['torn_skipped']}",
        ),
        row(
            f"{r['big_mb']:.0f} MB + `t: 1e300` + 400-digit t, `--json`",
            "absurd_json",
            f"exit 0; skipped {r['absurd_skipped']}",
        ),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_report")
    parser.add_argument("--quick", action="store_true", help="50 MB, 5k faults, 60 MB tail")
    parser.add_argument("--keep", default="", help="write the journals here and keep them")
    args = parser.parse_args(argv)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        results = bench(Path(args.keep), args.quick)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
            results = bench(Path(tmp), args.quick)
    print("\n".join(markdown(results)))
    print(json.dumps(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
