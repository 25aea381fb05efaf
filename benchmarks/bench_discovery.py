"""Discovery of N opted-in containers: the agent's `targets` path vs one raw Engine API
list call (the floor) vs `docker ps --filter label=...`."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks._common import interleaved, stats, write_config


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str = "/var/run/docker.sock") -> None:
        super().__init__("localhost")
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.unix_path)
        self.sock = sock


def raw_list(conn: _UnixHTTP, label: str) -> list[dict[str, Any]]:
    """GET /containers/json?all=1&filters=... on a kept-alive unix-socket connection."""
    query = urllib.parse.urlencode({"all": "1", "filters": json.dumps({"label": [label]})})
    conn.request("GET", f"/containers/json?{query}")
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"list failed: {resp.status} {body[:200]!r}")
    return json.loads(body)


def run(label_key: str, value: str, expected: int, rounds: int = 15) -> dict[str, Any]:
    from agent.config import load_config
    from agent.wiring import build_engine

    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
        cfg_path = write_config(Path(tmp) / "state", label_key, value)
        config = load_config(str(cfg_path))
        engine = build_engine(config, probes=False)
        import docker

        sdk = docker.APIClient(base_url="unix:///var/run/docker.sock", timeout=60)
        conn = _UnixHTTP()
        label = f"{label_key}={value}"

        def agent_path() -> None:
            targets = engine.discover()
            verdicts = engine.evaluate(targets)
            assert len(verdicts) == expected, len(verdicts)

        def raw() -> None:
            assert len(raw_list(conn, label)) == expected

        def sdk_list() -> None:
            assert len(sdk.containers(all=True, filters={"label": [label]})) == expected

        def cli() -> None:
            out = subprocess.run(
                ["docker", "ps", "-a", "-q", "--no-trunc", "--filter", f"label={label}"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert len(out.split()) == expected

        samples = interleaved(
            {
                "raw Engine API list (http.client, unix socket)": raw,
                "docker-py APIClient.containers (one call)": sdk_list,
                "agent targets path (discover + evaluate)": agent_path,
                "docker ps --filter label=...": cli,
            },
            rounds,
        )
        conn.close()
        sdk.close()
    return {name: stats(xs) for name, xs in samples.items()}
