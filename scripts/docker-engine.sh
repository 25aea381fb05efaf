#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
#
#   scripts/docker-engine.sh
#
# - If `docker info` answers: leave the engine alone (a laptop with Docker running); only
#   install docker-compose if no compose tool exists and we are root.
# - Else (root needed): install the distribution's packages if missing (docker.io,
#   iptables, and docker-compose when no compose tool exists), clear a stale pid file or
#   containerd socket left by a dockerd that was killed, start dockerd in the background
#   with its output in $DOCKERD_LOG, and wait (at most $DOCKERD_WAIT seconds) until
#   `docker info` answers. Prints the log's tail when it does not.
# Idempotent: run it as often as you like.
#
# Environment: DOCKERD_LOG (default /var/log/chaos-agent-dockerd.log),
#              DOCKERD_WAIT (default 60), DOCKER_HOST is honoured by `docker info`.
set -euo pipefail

LOG="${DOCKERD_LOG:-/var/log/chaos-agent-dockerd.log}"
WAIT="${DOCKERD_WAIT:-60}"

say() { printf '[docker-engine] %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

engine_answers() { have docker && timeout 20 docker info >/dev/null 2>&1; }

have_compose() { have docker-compose || { have docker && docker compose version >/dev/null 2>&1; }; }

if engine_answers; then
  say "the Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
  # The engine is left alone; only a missing compose tool is added (the examples need one).
  if ! have_compose && [[ "$(id -u)" == 0 ]] && have apt-get; then
    say "installing docker-compose (distribution package)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  fi
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  if have dockerd || have docker; then
    die "the Docker engine does not answer and starting it needs root: run 'sudo $0', or start Docker your usual way (e.g. 'sudo systemctl start docker'), or add yourself to the docker group"
  fi
  die "Docker is not installed and installing it needs root: run 'sudo $0'"
fi

# --- install from the distribution's packages ------------------------------------------
packages=()
have dockerd || packages+=(docker.io)
have iptables || packages+=(iptables)
have_compose || packages+=(docker-compose)
if ((${#packages[@]})); then
  have apt-get || die "no apt-get: install Docker for your distribution, then run this again"
  say "installing ${packages[*]} (distribution packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
have dockerd || die "dockerd is still missing after installing docker.io"

# --- a service manager may own it --------------------------------------------------------
if [[ -d /run/systemd/system ]] && have systemctl; then
  say "starting docker with systemctl"
  systemctl start docker.service >/dev/null 2>&1 || say "systemctl start docker failed; starting dockerd by hand"
  for _ in $(seq 1 15); do
    engine_answers && {
      say "the Docker engine answers"
      exit 0
    }
    sleep 1
  done
fi

# --- stale files from a dockerd (or its containerd) killed without cleanup ----------------
pid_alive() { [[ "$1" =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null; }
pid_is() { [[ "$(cat "/proc/$1/comm" 2>/dev/null || true)" == "$2" ]]; }

# A dockerd that runs but does not answer yet (starting, or busy): wait for it, never
# start a second one and never touch its files.
running_dockerd="$(pgrep -x -o dockerd 2>/dev/null || true)"
if [[ -z "$running_dockerd" ]]; then
  if [[ -f /var/run/docker.pid ]]; then
    old="$(tr -dc '0-9' </var/run/docker.pid || true)"
    say "removing stale /var/run/docker.pid (pid '${old:-?}' is not a running dockerd)"
    rm -f /var/run/docker.pid
  fi
  # dockerd's managed containerd: a pid file naming a dead (or reused, non-containerd)
  # pid makes dockerd wait for a containerd that will never answer. A live containerd is
  # left alone: dockerd reconnects to it.
  f=/var/run/docker/containerd/containerd.pid
  if [[ -f "$f" ]]; then
    old="$(tr -dc '0-9' <"$f" || true)"
    if pid_alive "$old" && pid_is "$old" containerd; then
      say "reusing the managed containerd still running (pid $old)"
    else
      say "removing stale $f (pid '${old:-?}' is not a running containerd)"
      rm -f "$f" /var/run/docker/containerd/containerd.sock \
        /var/run/docker/containerd/containerd-debug.sock
    fi
  fi
fi

# --- start ----------------------------------------------------------------------------
if [[ -n "$running_dockerd" ]]; then
  say "dockerd (pid $running_dockerd) is running but not answering yet; waiting"
else
  mkdir -p "$(dirname "$LOG")"
  say "starting dockerd in the background (log: $LOG)"
  # setsid: the daemon outlives this script and its terminal; nohup: and SIGHUP.
  printf '\n--- %s: started by %s ---\n' "$(date -Is)" "$0" >>"$LOG"
  setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
  running_dockerd=$!
fi

for ((i = 0; i < WAIT; i++)); do
  if engine_answers; then
    say "the Docker engine answers after ${i}s"
    exit 0
  fi
  if ! kill -0 "$running_dockerd" 2>/dev/null; then
    say "dockerd exited; last lines of $LOG:"
    tail -n 30 "$LOG" >&2 || true
    exit 1
  fi
  sleep 1
done
say "dockerd did not answer within ${WAIT}s; last lines of $LOG:"
tail -n 30 "$LOG" >&2 || true
exit 1
