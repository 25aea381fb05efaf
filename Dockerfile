# chaos-agent's own image.
#
# With a registry:      docker build -t chaos-agent .
# Without a registry:   scripts/build-images.sh agent
#   (builds FROM a Debian rootfs imported with debootstrap, and puts wheels downloaded on the
#    host into the build context's wheels/ directory: nothing is fetched from inside a build).
#
# The image carries the label chaos.agent=true: the agent never targets a container that
# carries it (it also excludes itself by container id).
#
# Privileges (the trade-off, see docs/agent-image.md):
# - Container faults (kill, stop, pause, restart) need only the Docker socket. The socket is
#   root-equivalent on the host whatever user the agent runs as, and a read-only bind mount
#   of it is not a permission boundary.
# - `kill` in crash mode signals the container's main process by its host PID: it needs
#   `pid: host` and root (CAP_KILL) in the agent's container.
# - Network faults (partition, loss, bandwidth) enter the target's network namespace with
#   nsenter and run iptables/tc there: they need `pid: host` and the capabilities
#   NET_ADMIN, SYS_ADMIN and SYS_PTRACE, i.e. root.
# So the default user is root. For container faults through the API only, run it as the
# unprivileged user `chaos` (uid 10001) with the socket's group added, e.g. in compose:
#   user: "10001"
#   group_add: ["${DOCKER_GID}"]     # stat -c %g /var/run/docker.sock
# and [agent] state_dir = "/var/lib/chaos-agent/user" (the state directory must be owned by
# the user the agent runs as, or root: /var/lib/chaos-agent itself is root's).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Marks the throw-away build stage (scripts/build-images.sh removes it after a build).
LABEL chaos.build.stage="agent-build"
WORKDIR /src
COPY . /src
# Offline when the context carries wheels (scripts/build-images.sh), from PyPI otherwise.
RUN set -eu; \
    python3 -m venv /opt/chaos-agent; \
    if ls /src/wheels/*.whl >/dev/null 2>&1; then \
      /opt/chaos-agent/bin/pip install --no-cache-dir --no-index --find-links /src/wheels chaos-agent; \
    else \
      /opt/chaos-agent/bin/pip install --no-cache-dir /src; \
    fi; \
    /opt/chaos-agent/bin/pip uninstall -y -q pip setuptools >/dev/null 2>&1 || true; \
    find /opt/chaos-agent -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
# iptables, nftables (nft: heal removes an empty filter table iptables-nft created),
# iproute2 (tc, ip), util-linux (nsenter), tzdata (schedule windows). The local
# base already has them (they cannot be installed from inside a build there).
RUN set -eu; \
    if ! command -v iptables >/dev/null || ! command -v tc >/dev/null || ! command -v nft >/dev/null \
       || ! command -v nsenter >/dev/null || [ ! -e /usr/share/zoneinfo/UTC ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends iptables nftables iproute2 util-linux tzdata; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    useradd --system --uid 10001 --home-dir /var/lib/chaos-agent --shell /usr/sbin/nologin chaos; \
    mkdir -p /var/lib/chaos-agent/user /etc/chaos-agent; \
    chown chaos /var/lib/chaos-agent/user; chmod 0700 /var/lib/chaos-agent/user
COPY --from=build /opt/chaos-agent /opt/chaos-agent
ENV PATH=/opt/chaos-agent/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
LABEL chaos.agent="true" \
      org.opencontainers.image.title="chaos-agent" \
      org.opencontainers.image.description="A Chaos Monkey for self-hosted Docker stacks"
VOLUME /var/lib/chaos-agent
# The agent heals every active fault on SIGTERM within [agent] stop_timeout (default 8 s),
# inside Docker's default 10 s stop grace period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["chaos-agent"]
CMD ["run"]
