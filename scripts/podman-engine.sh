#!/usr/bin/env bash
# Make sure a rootful Podman answers its Docker-compatible API on this machine, beside
# (never instead of) the Docker engine.
#
#   scripts/podman-engine.sh [IMAGE...]      default images: chaos-web:latest
#
# - Installs Debian's `podman` if missing (root needed).
# - Starts `podman system service --time=0 unix://$PODMAN_SOCK` in the background (log in
#   $PODMAN_LOG) unless something already answers there, and waits until it answers.
# - These machines withhold CAP_SYS_RESOURCE and cap nofile at 20000: with Podman's default
#   ulimits no container starts ("error setting rlimit type 7"). The service gets its own
#   containers.conf ($PODMAN_CONF, via CONTAINERS_CONF) with ulimits that fit.
# - Copies each IMAGE from Docker (`docker save | podman load`) unless Podman already holds
#   the same image id. Docker keeps its socket: nothing here sets DOCKER_HOST or touches
#   /var/run/docker.sock, and the agent prefers Docker's socket when both exist.
# Idempotent: run it as often as you like.
#
# Environment: PODMAN_SOCK (default /run/podman/podman.sock), PODMAN_LOG (default
#              /var/log/chaos-agent-podman.log), PODMAN_CONF (default
#              /etc/chaos-agent/podman-containers.conf), PODMAN_WAIT (default 30).
set -euo pipefail

SOCK="${PODMAN_SOCK:-/run/podman/podman.sock}"
LOG="${PODMAN_LOG:-/var/log/chaos-agent-podman.log}"
CONF="${PODMAN_CONF:-/etc/chaos-agent/podman-containers.conf}"
WAIT="${PODMAN_WAIT:-30}"
images=("$@")
((${#images[@]})) || images=(chaos-web:latest)

say() { printf '[podman-engine] %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

answers() {
  have curl || return 1
  [[ -S "$SOCK" ]] && curl -fsS --max-time 10 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1
}

[[ "$(id -u)" == 0 ]] || die "rootful Podman needs root: run 'sudo $0'"

need=()
have podman || need+=(podman)
have curl || need+=(curl)
if ((${#need[@]})); then
  have apt-get || die "no apt-get: install podman for your distribution, then run this again"
  say "installing ${need[*]} (distribution packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$(dirname "$CONF")"
cat >"$CONF.tmp" <<'EOF'
# Written by scripts/podman-engine.sh: this machine drops CAP_SYS_RESOURCE and caps
# nofile at 20000, so Podman's default ulimits would stop every container from starting.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
EOF
mv "$CONF.tmp" "$CONF"

if answers; then
  say "Podman answers on $SOCK"
else
  mkdir -p "$(dirname "$SOCK")" "$(dirname "$LOG")"
  rm -f "$SOCK"
  say "starting podman system service on $SOCK (log: $LOG)"
  printf '\n--- %s: started by %s ---\n' "$(date -Is)" "$0" >>"$LOG"
  CONTAINERS_CONF="$CONF" setsid nohup podman system service --time=0 "unix://$SOCK" \
    >>"$LOG" 2>&1 </dev/null &
  pid=$!
  for ((i = 0; i <= WAIT; i++)); do
    answers && break
    kill -0 "$pid" 2>/dev/null || {
      tail -n 20 "$LOG" >&2 || true
      die "podman system service exited"
    }
    ((i < WAIT)) || {
      tail -n 20 "$LOG" >&2 || true
      die "Podman did not answer within ${WAIT}s"
    }
    sleep 1
  done
  say "Podman answers on $SOCK after ${i}s"
fi

for image in "${images[@]}"; do
  want="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  [[ -n "$want" ]] || die "image $image is not in Docker (scripts/build-images.sh all first)"
  got="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  if [[ "sha256:${got#sha256:}" == "$want" ]]; then
    continue
  fi
  say "copying $image from Docker into Podman"
  docker save "$image" | podman load -q >/dev/null
done
say "ready: CONTAINER_HOST=unix://$SOCK"
