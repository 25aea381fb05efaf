#!/usr/bin/env bash
# One command on a fresh Debian/Ubuntu machine: a Docker engine, the images, the
# web-replicas demo (3 replicas behind haproxy) and chaos-agent faulting it, then the report.
#
#   sudo scripts/demo.sh [--for DURATION] [--seed N] [--port PORT] [--keep]
#
#   --for D    how long the agent runs (default 2m; it stops earlier on Ctrl-C)
#   --seed N   make the agent's decisions reproducible
#   --port P   the balancer's port on 127.0.0.1 (default 8080)
#   --keep     leave the stack running at the end (tear it down later with the command
#              printed at the end)
#
# Without --keep, everything the demo started is removed on exit, Ctrl-C included.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE="$REPO/compose-examples/web-replicas"
PROJECT="${CHAOS_DEMO_PROJECT:-chaos-demo}"
DURATION="2m"
SEED=""
PORT="${WEB_PORT:-8080}"
KEEP=0

say() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf 'demo: error: %s\n' "$*" >&2
  exit 1
}

while (($#)); do
  case "$1" in
    --for)
      DURATION="${2:?--for needs a duration like 2m}"
      shift
      ;;
    --seed)
      SEED="${2:?--seed needs a number}"
      shift
      ;;
    --port)
      PORT="${2:?--port needs a port number}"
      shift
      ;;
    --keep) KEEP=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
[[ "$DURATION" =~ ^[0-9]+(ms|s|m|h)?$ ]] || die "--for: expected a duration like 90s or 2m"
[[ -z "$SEED" || "$SEED" =~ ^[0-9]+$ ]] || die "--seed: expected a whole number"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "--port: expected a port number"

# 1. the engine, then 2. the images (base, web, haproxy, agent; cached after the first run)
"$REPO/scripts/docker-engine.sh"
say "building images (first run: a few minutes; later: seconds)"
"$REPO/scripts/build-images.sh" web haproxy agent

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  die "no compose tool: install docker-compose (scripts/docker-engine.sh does) or the compose plugin"
fi

export WEB_PORT="$PORT" WEB_BIND=127.0.0.1
export WEB_IMAGE=chaos-web:latest HAPROXY_IMAGE=chaos-haproxy:latest AGENT_IMAGE=chaos-agent:latest
export AGENT_ARGS="--for $DURATION${SEED:+ --seed $SEED}"
# The demo's agent targets only this demo's containers (by compose project), never other
# containers on the host that opted in with chaos.enable=true.
AGENT_CONFIG="$(mktemp "${TMPDIR:-/tmp}/chaos-demo-agent.XXXXXX.toml")"
chmod 0644 "$AGENT_CONFIG"
awk -v project="$PROJECT" '
  { print }
  /^\[targets\]/ { print "label = \"com.docker.compose.project\""; print "value = \"" project "\"" }
' "$EXAMPLE/agent.toml" >"$AGENT_CONFIG"
export AGENT_CONFIG
compose() { (cd "$EXAMPLE" && "${COMPOSE[@]}" -p "$PROJECT" "$@"); }

teardown() {
  local code=$?
  trap - EXIT INT TERM
  if [[ "$KEEP" == 1 ]]; then
    say "left running (--keep). Tear down with:"
    printf '  cd %q && %s -p %q down -v\n' "$EXAMPLE" "${COMPOSE[*]}" "$PROJECT" >&2
  else
    say "tearing down"
    # `down` stops the agent first (SIGTERM): it heals what is active before it exits.
    compose down -v --remove-orphans -t 15 >/dev/null 2>&1 || true
    rm -f "$AGENT_CONFIG"
  fi
  exit "$code"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting 3 web replicas and the balancer on http://127.0.0.1:$PORT/"
compose up -d --no-build web balancer
# Plain bash (no curl or python needed on the host): GET / through the balancer.
# shellcheck disable=SC2016 # the inner script expands its own $1 and $status
site_ok() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
    IFS= read -r status <&3
    [[ "$status" == *" 200 "* ]]' _ "$PORT" 2>/dev/null
}
for _ in $(seq 1 60); do
  site_ok && break
  sleep 1
done
site_ok || die "the balancer does not answer on 127.0.0.1:$PORT"

say "starting chaos-agent for $DURATION (Ctrl-C stops it early; faults are healed)"
compose up -d --no-build agent
# Follow the agent's output until it exits (--for) or Ctrl-C.
compose logs --no-color -f agent || true
docker wait "$(compose ps -q agent)" >/dev/null 2>&1 || true

say "the report (chaos-agent report inside the agent's image, on the agent's journal)"
compose run --rm --no-deps --entrypoint chaos-agent agent \
  report --journal /var/lib/chaos-agent/journal.jsonl || true
