#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian/Ubuntu machine (as root) or on a
# developer machine that already has Docker. Everything the tests need is
# installed and started here: system packages, the Docker engine, the images.
#
#   scripts/test.sh [PYTEST ARGS...]     e.g. scripts/test.sh -k planner
#
# Environment: CHAOS_TEST_VENV (default .venv) - where the Python deps go;
#              CHAOS_SKIP_SETUP=1 - skip apt/engine/images (you did them already).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[test] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

if [[ "${CHAOS_SKIP_SETUP:-0}" != 1 ]]; then
  # system tools the tests exercise for real: OpenSSH server, Chromium, tmux,
  # nsenter/iptables/tc, debootstrap for the images
  need=()
  have sshd || need+=(openssh-server)
  have ssh-keygen || need+=(openssh-client)
  have chromium || need+=(chromium)
  have tmux || need+=(tmux)
  have iptables || need+=(iptables)
  have nft || need+=(nftables)
  have tc || need+=(iproute2)
  have nsenter || need+=(util-linux)
  have debootstrap || need+=(debootstrap)
  have pgrep || need+=(procps)
  have prometheus || need+=(prometheus) # scrapes the agent in tests/test_metrics.py
  if ((${#need[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
      say "missing ${need[*]}: install them (needs root) and run again"
      exit 1
    fi
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  scripts/docker-engine.sh
  time_start=$(date +%s)
  scripts/build-images.sh all
  say "images ready in $(($(date +%s) - time_start))s"
  # rootful Podman beside Docker (its own socket; Docker's stays the default)
  scripts/podman-engine.sh
fi

VENV="${CHAOS_TEST_VENV:-.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'

# Chaos Toolkit and the chaosagent extension live in their own venv: chaos-agent itself
# has no Chaos Toolkit dependency. Newest releases that run on Python 3.11.
CTK_VENV="${CHAOS_CTK_VENV:-.venv-ctk}"
if ! "$CTK_VENV/bin/python" -c 'import chaosagent, chaostoolkit' >/dev/null 2>&1 ||
  [[ ! -x "$CTK_VENV/bin/chaos" ]]; then
  say "creating $CTK_VENV (Chaos Toolkit + integrations/chaostoolkit)"
  python3 -m venv "$CTK_VENV"
  "$CTK_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    'chaostoolkit==1.19.0' 'chaostoolkit-lib==1.44.0' -e integrations/chaostoolkit
fi

say "ruff"
"$VENV/bin/ruff" check agent tests benchmarks scripts integrations
"$VENV/bin/ruff" format --check agent tests benchmarks scripts integrations

say "mypy (strict on the pure core) and import-linter (layering contracts)"
"$VENV/bin/mypy"  # settings and module lists in pyproject.toml
"$VENV/bin/lint-imports"

say "pytest"
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "$@"
