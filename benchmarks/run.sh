#!/usr/bin/env bash
# Run every benchmark and write benchmarks/RESULTS.md (and RESULTS.json).
#
#   benchmarks/run.sh [--quick] [--only discovery,inject,cli,heal,footprint,coordinator,report,ops]
#
# Needs a Docker engine (scripts/docker-engine.sh) and the image chaos-base:bookworm
# (scripts/build-images.sh). Chaos Toolkit, for the one-off comparison, goes into its own
# venv ($CHAOS_BENCH_CTK_VENV, default /tmp/chaos-bench-ctk) when pip can install it;
# CHAOS_BENCH_NO_CTK=1 skips it. About 6 minutes (--quick: about 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${CHAOS_BENCH_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
docker image inspect chaos-base:bookworm >/dev/null 2>&1 || scripts/build-images.sh base

CTK_VENV="${CHAOS_BENCH_CTK_VENV:-/tmp/chaos-bench-ctk}"
if [[ "${CHAOS_BENCH_NO_CTK:-0}" != 1 && ! -x "$CTK_VENV/bin/chaos" ]]; then
  echo "[bench] installing Chaos Toolkit into $CTK_VENV" >&2
  if ! { python3 -m venv "$CTK_VENV" &&
    "$CTK_VENV/bin/pip" install -q --disable-pip-version-check chaostoolkit chaostoolkit-lib docker; } >&2; then
    echo "[bench] Chaos Toolkit could not be installed: not measured" >&2
  fi
fi
export CHAOS_BENCH_CTK="$CTK_VENV/bin/chaos"
exec "$PY" -m benchmarks "$@"
