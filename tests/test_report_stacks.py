"""The report on real stacks: the web-replicas example's weak and good balancers.

A host agent (this checkout, `python -m agent run`) faults the stack's own replicas
(scoped by the label `chaos.scope=<project>`), probing the site through the balancer
with several checks per second; a test thread samples the same site independently.

- weak balancer (no health checks, retries only failed connections): a stop goes
  unseen, a pause loses about a third of the requests. The report names the group,
  says "pause but not stop" and gives the frozen-backend hint; the probe's
  availability during the pause agrees with the independent sampler's.
- good balancer (health checks, retries on timeouts): the same pause is survived,
  and the trend over the two journals says `better`.
- slow: five seeded runs with every container fault on the good stack: no false alarm.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.test_compose_examples import (
    LOCAL_IMAGES,
    SCOPE_LABEL,
    Stack,
    _wait_healthy,
    compose,  # noqa: F401 - a fixture
    http_get,
    need_images,
    stack,
    toml_dumps,
)

pytestmark = pytest.mark.docker

PROBE_SAMPLES = 5  # checks per second: one every 200 ms, like the independent sampler
# The probe and the sampler each start ~50 requests during a 10 s pause (the probe's
# slots, like the open-loop sampler, do not wait for each other); round robin sends every
# third request to the frozen replica, so both should measure ~2/3. Each
# estimate's binomial standard error is sqrt(p(1-p)/n) ~ 7 points; the difference of two
# independent estimates ~ 9.5 points, so 20 points is about 2 standard errors (the exact
# round-robin rotation makes the real spread smaller than binomial). The slow variant
# pauses 30 s (n ~ 150 each) and holds 12 points.
TOLERANCE = 0.20
SLOW_TOLERANCE = 0.12


class Sampler:
    """GET the site `rate` times a second on a fixed schedule (open loop: a slow answer
    does not delay the next request, as with independent users); keeps (start, ok)."""

    def __init__(self, url: str, rate: float = 5.0, timeout: float = 3.0) -> None:
        self.url = url
        self.period = 1.0 / rate
        self.timeout = timeout
        self.samples: list[tuple[float, bool]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop, name="report-sampler", daemon=True)

    def _one(self, began: float) -> None:
        status, _ = http_get(self.url, timeout=self.timeout)
        with self._lock:
            self.samples.append((began, status == 200))

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            worker = threading.Thread(target=self._one, args=(time.time(),), daemon=True)
            worker.start()
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            due += self.period
            self._stop.wait(max(0.0, due - time.monotonic()))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for worker in self._workers:
            worker.join(self.timeout + 5)

    def between(self, start: float, end: float) -> tuple[int, int]:
        inside = [ok for t, ok in self.samples if start <= t <= end]
        return sum(inside), len(inside)


def write_config(
    s: Stack,
    state: Path,
    faults: list[str],
    duration: str,
    body: str = "hello from",
    groups: list[str] | None = None,
) -> Path:
    config: dict[str, Any] = {
        "agent": {"state_dir": str(state)},
        "targets": {
            "label": SCOPE_LABEL,
            "value": s.project,
            "min_replicas": 2,
            "min_healthy": 1,
            "max_per_group": 1,
            "max_concurrent": 1,
        },
        "schedule": {
            "first_after": "2s",
            "mean_interval": "1h",
            "min_gap": "1h",
            "duration": duration,
        },
        "faults": {"enabled": faults},
        "probes": [
            {
                "name": "site",
                "url": s.url,
                "expect_status": 200,
                "body_contains": body,
                "interval": "1s",
                "samples": PROBE_SAMPLES,
                "timeout": "3s",
                "groups": groups if groups is not None else [s.project],
            }
        ],
    }
    path = state.parent / f"{state.name}-{'-'.join(faults)}.toml"
    path.write_text(toml_dumps(config))
    return path


def run_one_fault(
    s: Stack,
    state: Path,
    fault: str,
    seconds: int,
    seed: int = 1,
    body: str = "hello from",
    groups: list[str] | None = None,
) -> None:
    """One agent run that injects exactly one `fault` 2 s in, for `seconds - 4` s."""
    cfg = write_config(s, state, [fault], f"{seconds - 4}s", body, groups)
    proc = run_cli(
        "run",
        "--no-live",
        "--config",
        str(cfg),
        "--for",
        f"{seconds}s",
        "--seed",
        str(seed),
        timeout=seconds + 120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    injects = [e for e in journal_events(state) if e["event"] == "inject" and e["fault"] == fault]
    assert injects, f"no {fault} injected:\n{proc.stdout}\n{proc.stderr}"


def journal_events(state: Path) -> list[dict[str, Any]]:
    path = state / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report_json(*journals: Path) -> dict[str, Any]:
    args = [a for j in journals for a in ("--journal", str(j))]
    proc = run_cli("report", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def web_stack(docker_api: Any, compose: list[str], tmp_path: Path) -> Iterator[Stack]:  # noqa: F811
    need_images(docker_api, LOCAL_IMAGES["WEB_IMAGE"], LOCAL_IMAGES["HAPROXY_IMAGE"])
    with stack("web-replicas", tmp_path, compose) as s:
        s.scope(["web"])
        yield s


def _use_balancer(docker_api: Any, s: Stack, weak: bool) -> None:
    weak_file = s.dir / "docker-compose.weak.yml"
    if weak and weak_file not in s.files:
        s.files.append(weak_file)
    if not weak and weak_file in s.files:
        s.files.remove(weak_file)
    s.up("web", "balancer")
    s.wait_ok(body="hello from")
    _wait_healthy(docker_api, s.run("ps", "-q", "web").split(), deadline_s=90)
    # every replica answers through the balancer before a fault starts
    seen: set[str] = set()
    end = time.monotonic() + 30
    while len(seen) < 3 and time.monotonic() < end:
        status, text = http_get(s.url)
        if status == 200:
            seen.add(text.strip())
    assert len(seen) == 3, seen


def _check_pause_against_sampler(
    report: dict[str, Any], sampler: Sampler, tolerance: float
) -> tuple[float, float]:
    pause = next(f for f in report["faults"] if f["fault"] == "pause")
    window = next(w for w in pause["probes"] if w["probe"] == "site")["during"]
    ok, total = sampler.between(pause["start"], pause["end"])
    assert total >= 10 and window["total"] >= 10, (window, ok, total)
    probe_avail, sampler_avail = window["availability"], ok / total
    print(
        f"\npause of {pause['end'] - pause['start']:.1f}s: probe {window['ok']}/{window['total']}"
        f" = {probe_avail:.1%}, independent sampler {ok}/{total} = {sampler_avail:.1%},"
        f" tolerance {tolerance:.0%}"
    )
    assert math.isclose(probe_avail, sampler_avail, abs_tol=tolerance), (
        probe_avail,
        sampler_avail,
    )
    return probe_avail, sampler_avail


def test_weak_balancer_pause_hint_sampler_agreement_and_trend(
    docker_api: Any, web_stack: Stack, tmp_path: Path
) -> None:
    s = web_stack
    group = f"{s.project}/web"
    weak, good = tmp_path / "weak", tmp_path / "good"

    _use_balancer(docker_api, s, weak=True)
    run_one_fault(s, weak, "stop", 12)
    _wait_healthy(docker_api, s.run("ps", "-q", "web").split(), deadline_s=90)
    with Sampler(s.url) as sampler:
        run_one_fault(s, weak, "pause", 14)
    report = report_json(weak / "journal.jsonl")

    finding = next(x for x in report["findings"] if x["group"] == group)
    assert finding["hurt_by"] == ["pause"] and finding["not_hurt_by"] == ["stop"], finding
    assert [h["code"] for h in finding["hints"]][:1] == ["frozen-backend"], finding
    pause = next(f for f in report["faults"] if f["fault"] == "pause")
    assert finding["hints"][0]["evidence"] == [pause["fault_id"]]
    assert [x["group"] for x in report["findings"]] == [group]  # only the faulted group
    # the weak balancer really loses requests to the frozen replica: both measure it
    probe_avail, sampler_avail = _check_pause_against_sampler(report, sampler, TOLERANCE)
    assert probe_avail < 0.95 and sampler_avail < 0.95

    _use_balancer(docker_api, s, weak=False)
    run_one_fault(s, good, "pause", 14)
    both = report_json(weak / "journal.jsonl", good / "journal.jsonl")
    trend = {g["group"]: g for g in both["trend"]}[group]
    verdicts = [r["verdict"] for r in trend["runs"]]
    assert verdicts[1] == "survived" and verdicts[0] in ("degraded", "outage"), trend
    assert trend["change"] == "better", trend
    assert both["runs"][1]["report"]["findings"] == []

    text = run_cli("report", "--journal", str(weak / "journal.jsonl"))
    assert "hint: fails under pause but not under stop" in text.stdout, text.stdout


@pytest.mark.slow
def test_good_balancer_no_false_alarm_over_five_seeds(
    docker_api: Any, web_stack: Stack, tmp_path: Path
) -> None:
    """Every container fault, five seeds, one journal each: no group is ever hurt."""
    s = web_stack
    _use_balancer(docker_api, s, weak=False)
    faults = ["kill", "stop", "pause", "restart"]
    seen: list[str] = []
    for seed in (1, 2, 3, 4, 5):
        state = tmp_path / f"seed{seed}"
        cfg = write_config(s, state, faults, "6s")
        text = cfg.read_text().replace('mean_interval = "1h"', 'mean_interval = "8s"')
        cfg.write_text(text.replace('min_gap = "1h"', 'min_gap = "4s"'))
        proc = run_cli(
            "run",
            "--no-live",
            "--config",
            str(cfg),
            "--for",
            "40s",
            "--seed",
            str(seed),
            timeout=200,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = report_json(state / "journal.jsonl")
        seen += [f["fault"] for f in report["faults"]]
        hurt = [(f["fault"], f["verdict"]) for f in report["faults"] if f["verdict"] != "survived"]
        assert report["faults"] and not hurt and report["findings"] == [], (seed, hurt)
        _wait_healthy(docker_api, s.run("ps", "-q", "web").split(), deadline_s=90)
    print(f"\n5 seeds on the good balancer: {len(seen)} faults ({sorted(set(seen))}), 0 hurt")
    assert set(seen) >= {"pause", "stop"}


@pytest.mark.slow
def test_weak_balancer_long_pause_matches_the_sampler_closely(
    docker_api: Any, web_stack: Stack, tmp_path: Path
) -> None:
    s = web_stack
    _use_balancer(docker_api, s, weak=True)
    with Sampler(s.url) as sampler:
        run_one_fault(s, tmp_path / "long", "pause", 34)
    _check_pause_against_sampler(
        report_json(tmp_path / "long" / "journal.jsonl"), sampler, SLOW_TOLERANCE
    )


@pytest.mark.slow
def test_php_weak_balancer_loses_a_share_under_stop(
    docker_api: Any,
    compose: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """php-mysql's weak balancer (no checks, no retries): a stopped replica still gets its
    third of the requests, and the report says so (partial-loss), not "nothing else serves"."""
    need_images(
        docker_api, *(LOCAL_IMAGES[k] for k in ("PHP_IMAGE", "MARIADB_IMAGE", "HAPROXY_IMAGE"))
    )
    with stack("php-mysql", tmp_path, compose) as s:
        s.scope(["php1", "php2", "php3"])
        s.files.append(s.dir / "docker-compose.weak.yml")
        s.up("php1", "php2", "php3", "balancer", "db-replica")
        s.wait_ok(deadline_s=120, body="served by")
        _wait_healthy(docker_api, [s.container(p) for p in ("php1", "php2", "php3")])
        state = tmp_path / "php-weak"
        # the php replicas carry chaos.group=php: the group is "php", not "<project>/php"
        run_one_fault(s, state, "stop", 16, body="served by", groups=["php"])
        report = report_json(state / "journal.jsonl")
        (finding,) = report["findings"]
        assert finding["group"] == "php" and finding["hurt_by"] == ["stop"], finding
        codes = [h["code"] for h in finding["hints"]]
        assert "partial-loss" in codes and "no-redundancy" not in codes, finding
        print(f"\nphp weak, stop: {finding['hints']}")
