#!/bin/sh
# Make /sys and the cgroup hierarchies writable (the container is not --privileged, so
# Docker mounts them read-only), then run dockerd as PID 1's only child.
set -eu
mount -o remount,rw /sys 2>/dev/null || true
if [ -d /sys/fs/cgroup ]; then
  mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
  for dir in /sys/fs/cgroup/*; do
    if mountpoint -q "$dir" 2>/dev/null; then
      mount -o remount,bind,rw "$dir" 2>/dev/null || true
    fi
  done
fi
rm -f /var/run/docker.pid /run/docker/containerd/containerd.pid
mkdir -p /run/swarmnode
exec dockerd --host unix:///var/run/docker.sock --host unix:///run/swarmnode/docker.sock \
  --storage-driver "${SWARMNODE_STORAGE:-overlay2}" "$@"
