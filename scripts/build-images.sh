#!/usr/bin/env bash
# Build every image chaos-agent's tests and demos need, WITHOUT a container registry.
#
#   scripts/build-images.sh [--force] [TARGET...]
#
# TARGET: base web agent php mariadb haproxy swarmnode | all (default: web agent)
#   base     chaos-base:bookworm    Debian minbase + python3 + ca-certificates
#   web      chaos-web:latest       tiny python3 HTTP replica (scripts/images/web)
#   agent    chaos-agent:latest     the agent itself (Dockerfile at the repo root)
#   php      chaos-php:latest       apache2 + mod_php + php-mysql (scripts/images/php)
#   mariadb  chaos-mariadb:latest   mariadb-server, primary/replica entrypoint
#   haproxy  chaos-haproxy:latest   haproxy reading /usr/local/etc/haproxy/haproxy.cfg
#   systemd  chaos-systemd:latest   systemd as PID 1 + the agent (tests the systemd unit)
#   swarmnode chaos-swarmnode:latest a Docker engine (docker.io) in a container: Swarm tests
#
# How: `debootstrap --variant=minbase` a Debian rootfs from the mirror the host's own apt
# sources name, install packages with apt *in a chroot* (containers here cannot reach
# package mirrors), `tar | docker import`, then a small `docker build` FROM that.
# Air-gapped homelabs need exactly this, so it is part of the product.
#
# Caching: every imported image carries a label `chaos.build.key` (a hash of what went into
# it); an image whose key matches is not rebuilt, so a second run takes seconds. `--force`
# rebuilds everything. Downloaded .debs, wheels and the base rootfs tarball are kept in
# $CHAOS_IMAGE_CACHE (default /var/cache/chaos-agent-images); delete it to start from zero.
#
# Environment: CHAOS_MIRROR (Debian mirror URL), CHAOS_SUITE (default bookworm),
#              CHAOS_IMAGE_CACHE, DOCKER (docker CLI, default docker).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES_DIR="$REPO/scripts/images"
CACHE="${CHAOS_IMAGE_CACHE:-/var/cache/chaos-agent-images}"
SUITE="${CHAOS_SUITE:-bookworm}"
DOCKER="${DOCKER:-docker}"
# Bump RECIPE_VERSION when the base rootfs recipe changes (re-runs debootstrap), and
# IMPORT_VERSION when the way rootfs images are imported changes (re-imports them).
RECIPE_VERSION=2
IMPORT_VERSION=2
# The legacy builder resolves FROM against local images and never needs buildx.
export DOCKER_BUILDKIT=0

BASE_PACKAGES="python3 ca-certificates"
AGENT_PACKAGES="python3-venv iptables nftables iproute2 util-linux tzdata"
PHP_PACKAGES="apache2 libapache2-mod-php php-mysql"
MARIADB_PACKAGES="mariadb-server mariadb-client"
HAPROXY_PACKAGES="haproxy"
SYSTEMD_PACKAGES="systemd systemd-sysv dbus procps"
SWARMNODE_PACKAGES="docker.io iptables procps"

FORCE=0
TARGETS=()

# --- state cleaned up by the EXIT trap ------------------------------------------------
MOUNTS=()   # mount points, unmounted in reverse order
TMPDIRS=()  # removed only once nothing is mounted below them

log() { printf '[build-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

cleanup() {
  local i dir
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    if mountpoint -q "${MOUNTS[i]}" 2>/dev/null; then
      umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
    fi
  done
  MOUNTS=()
  for dir in "${TMPDIRS[@]}"; do
    [[ -d "$dir" ]] || continue
    # Never rm -rf through a mount that is still there (it would delete the cache).
    if grep -qF " $dir/" /proc/self/mounts 2>/dev/null; then
      log "warning: $dir still has mounts below it; left in place"
      continue
    fi
    rm -rf --one-file-system "$dir"
  done
  TMPDIRS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# --- arguments ---------------------------------------------------------------------
while (($#)); do
  case "$1" in
    --force) FORCE=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    all) TARGETS+=(base web agent php mariadb haproxy systemd swarmnode) ;;
    base | web | agent | php | mariadb | haproxy | systemd | swarmnode) TARGETS+=("$1") ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
  shift
done
((${#TARGETS[@]})) || TARGETS=(web agent)

# --- helpers -------------------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }

need_root() {
  [[ "$(id -u)" == 0 ]] || die "building $1 needs root (debootstrap and chroot): run with sudo"
}

apt_install_host() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  need_root "host packages (${missing[*]})"
  log "installing on the host: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The Debian mirror named by the host's apt sources (one-line .list and deb822 .sources),
# for the suite we build; else deb.debian.org.
detect_mirror() {
  local uri="" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r "$f" ]] || continue
    uri="$(awk -v suite="$SUITE" '
      function flush() {
        if (uris != "" && enabled != "no" && (" " suites " ") ~ (" " suite " ") && types ~ /(^| )deb( |$)/) {
          split(uris, u, " "); print u[1]; found = 1; exit
        }
        uris = ""; suites = ""; types = ""; enabled = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "uris:" { $1 = ""; uris = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      END { if (!found) flush() }
    ' "$f" | head -n1)"
    [[ -n "$uri" ]] && break
  done
  if [[ -z "$uri" ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -r "$f" ]] || continue
      uri="$(awk -v suite="$SUITE" '
        $1 == "deb" {
          i = 2
          if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
          if ($(i + 1) == suite) { print $i; exit }
        }' "$f")"
      [[ -n "$uri" ]] && break
    done
  fi
  uri="${uri:-http://deb.debian.org/debian}"
  printf '%s\n' "${uri%/}"
}

hash_of() { printf '%s' "$*" | sha256sum | cut -c1-16; }

image_key() {
  "$DOCKER" image inspect --format '{{ index .Config.Labels "chaos.build.key" }}' "$1" 2>/dev/null ||
    true
}

up_to_date() { [[ "$FORCE" == 0 && -n "$2" && "$(image_key "$1")" == "$2" ]]; }

# Prepare a chroot for apt: no service starts, /proc, and the shared .deb cache.
chroot_enter() {
  local root="$1"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  mkdir -p "$root/proc" "$CACHE/debs/partial" "$root/var/cache/apt/archives"
  MOUNTS+=("$root/proc")
  mount -t proc proc "$root/proc"
  MOUNTS+=("$root/var/cache/apt/archives")
  mount --bind "$CACHE/debs" "$root/var/cache/apt/archives"
}

chroot_leave() {
  local root="$1" i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    case "${MOUNTS[i]}" in
      "$root"/*) if mountpoint -q "${MOUNTS[i]}"; then umount "${MOUNTS[i]}"; fi ;;
    esac
  done
  rm -f "$root/usr/sbin/policy-rc.d"
  : >"$root/etc/resolv.conf"
}

chroot_apt() {
  local root="$1"
  shift
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
    apt-get -o Dpkg::Use-Pty=0 -o APT::Keep-Downloaded-Packages=true "$@"
}

REPLACED=()  # ids of images this run re-tagged, removed at the end
remember_old() {
  local id
  id="$("$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true)"
  [[ -n "$id" ]] && REPLACED+=("$id")
  return 0
}

# tar a rootfs into `docker import`, leaving out what an image must not carry.
import_rootfs() {
  local root="$1" image="$2" key="$3"
  remember_old "$image"
  tar --numeric-owner --xattrs -C "$root" \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' --exclude='./run/*.pid' \
    --exclude='./tmp/*' --exclude='./var/lib/apt/lists/*' --exclude='./var/cache/apt/*' \
    --exclude='./var/cache/debconf/*-old' --exclude='./var/log/*.log' --exclude='./var/log/apt/*' \
    --exclude='./usr/share/man/*' --exclude='./usr/share/info/*' \
    -c . |
    "$DOCKER" import \
      --change "LABEL chaos.build.key=$key" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      - "$image" >/dev/null
}

# --- the base rootfs (kept as a tarball in the cache) -----------------------------------
BASE_KEY="$(hash_of "v$RECIPE_VERSION $SUITE minbase $BASE_PACKAGES")"
BASE_TAR="$CACHE/rootfs-$SUITE-base.tar"

ensure_base_tar() {
  if [[ "$FORCE" == 0 && -s "$BASE_TAR" && "$(cat "$BASE_TAR.key" 2>/dev/null)" == "$BASE_KEY" ]]; then
    return 0
  fi
  [[ "${BASE_TAR_DONE:-0}" == 1 ]] && return 0
  need_root "the base rootfs"
  apt_install_host debootstrap
  local mirror keyring=() root
  mirror="${CHAOS_MIRROR:-$(detect_mirror)}"
  if [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
    keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
  else
    apt_install_host debian-archive-keyring
    keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
  fi
  mkdir -p "$CACHE/debootstrap" "$CACHE/debs/partial"
  root="$(mktemp -d "$CACHE/tmp.base.XXXXXX")"
  TMPDIRS+=("$root")
  log "debootstrap --variant=minbase $SUITE from $mirror"
  if ! debootstrap --variant=minbase "${keyring[@]}" --cache-dir="$CACHE/debootstrap" \
    "$SUITE" "$root/rootfs" "$mirror" >"$root/debootstrap.log" 2>&1; then
    tail -n 30 "$root/debootstrap.log" >&2 || true
    tail -n 30 "$root/rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die "debootstrap failed (mirror $mirror; set CHAOS_MIRROR to override)"
  fi
  chroot_enter "$root/rootfs"
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  chroot_apt "$root/rootfs" install -y -q --no-install-recommends $BASE_PACKAGES >"$root/apt.log" 2>&1 ||
    {
      tail -n 30 "$root/apt.log" >&2
      die "apt-get install $BASE_PACKAGES failed in the base chroot"
    }
  chroot_leave "$root/rootfs"
  tar --numeric-owner --xattrs -C "$root/rootfs" \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./var/cache/apt/archives/*' \
    -cf "$BASE_TAR.tmp" .
  mv -f "$BASE_TAR.tmp" "$BASE_TAR"
  printf '%s\n' "$BASE_KEY" >"$BASE_TAR.key"
  BASE_TAR_DONE=1
  cleanup_one "$root"
}

cleanup_one() {
  local dir="$1" kept=() d
  if grep -qF " $dir/" /proc/self/mounts 2>/dev/null; then
    die "$dir still has mounts below it"
  fi
  rm -rf --one-file-system "$dir"
  for d in "${TMPDIRS[@]}"; do [[ "$d" == "$dir" ]] || kept+=("$d"); done
  TMPDIRS=("${kept[@]+"${kept[@]}"}")
}

# --- images -------------------------------------------------------------------------------
# A rootfs image: the base rootfs plus PACKAGES, imported as IMAGE.
build_rootfs_image() {
  local image="$1" packages="$2" key root
  key="$(hash_of "$BASE_KEY $IMPORT_VERSION $packages")"
  if up_to_date "$image" "$key"; then
    log "$image is up to date"
    return 0
  fi
  ensure_base_tar
  need_root "$image"
  root="$(mktemp -d "$CACHE/tmp.rootfs.XXXXXX")"
  TMPDIRS+=("$root")
  mkdir "$root/rootfs"
  tar --numeric-owner --xattrs -C "$root/rootfs" -xf "$BASE_TAR"
  if [[ -n "$packages" ]]; then
    chroot_enter "$root/rootfs"
    log "$image: apt-get install $packages (in a chroot)"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    {
      chroot_apt "$root/rootfs" update -q &&
        chroot_apt "$root/rootfs" install -y -q --no-install-recommends $packages
    } >"$root/apt.log" 2>&1 || {
      tail -n 40 "$root/apt.log" >&2
      die "apt-get install $packages failed for $image"
    }
    chroot_leave "$root/rootfs"
  fi
  # Images start from clean state: the entrypoints create data dirs with the env's settings.
  case "$image" in
    chaos-mariadb-rootfs:*) find "$root/rootfs/var/lib/mysql" -mindepth 1 -delete 2>/dev/null || true ;;
  esac
  import_rootfs "$root/rootfs" "$image" "$key"
  cleanup_one "$root"
}

# docker build (layer-cached: seconds when nothing changed); output shown only on failure.
docker_build() {
  local image="$1" context="$2" out
  shift 2
  out="$(mktemp)"
  remember_old "$image"
  local no_cache=()
  [[ "$FORCE" == 1 ]] && no_cache=(--no-cache)
  if ! "$DOCKER" build --rm --force-rm "${no_cache[@]+"${no_cache[@]}"}" -t "$image" "$@" "$context" >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    die "docker build of $image failed"
  fi
  rm -f "$out"
}

build_base() {
  local key
  key="$(hash_of "$BASE_KEY $IMPORT_VERSION")"
  if up_to_date chaos-base:"$SUITE" "$key"; then
    log "chaos-base:$SUITE is up to date"
    return 0
  fi
  ensure_base_tar
  local root
  root="$(mktemp -d "$CACHE/tmp.import.XXXXXX")"
  TMPDIRS+=("$root")
  tar --numeric-owner --xattrs -C "$root" -xf "$BASE_TAR"
  import_rootfs "$root" chaos-base:"$SUITE" "$key"
  cleanup_one "$root"
}

build_web() {
  build_base
  docker_build chaos-web:latest "$IMAGES_DIR/web" --build-arg BASE_IMAGE=chaos-base:"$SUITE"
}

build_php() {
  build_rootfs_image chaos-php-rootfs:"$SUITE" "$BASE_PACKAGES $PHP_PACKAGES"
  docker_build chaos-php:latest "$IMAGES_DIR/php" --build-arg BASE_IMAGE=chaos-php-rootfs:"$SUITE"
}

build_mariadb() {
  build_rootfs_image chaos-mariadb-rootfs:"$SUITE" "$BASE_PACKAGES $MARIADB_PACKAGES"
  docker_build chaos-mariadb:latest "$IMAGES_DIR/mariadb" \
    --build-arg BASE_IMAGE=chaos-mariadb-rootfs:"$SUITE"
}

build_haproxy() {
  build_rootfs_image chaos-haproxy-rootfs:"$SUITE" "$BASE_PACKAGES $HAPROXY_PACKAGES"
  docker_build chaos-haproxy:latest "$IMAGES_DIR/haproxy" \
    --build-arg BASE_IMAGE=chaos-haproxy-rootfs:"$SUITE"
}

build_swarmnode() {
  build_rootfs_image chaos-swarmnode-rootfs:"$SUITE" "$BASE_PACKAGES $SWARMNODE_PACKAGES"
  docker_build chaos-swarmnode:latest "$IMAGES_DIR/swarmnode" \
    --build-arg BASE_IMAGE=chaos-swarmnode-rootfs:"$SUITE"
}

# The agent: wheels are downloaded ON THE HOST (containers cannot reach PyPI here) into the
# build context and installed in the image with `pip install --no-index`.
build_agent() {
  local src_key key ctx py arch deps
  build_rootfs_image chaos-agent-rootfs:"$SUITE" "$BASE_PACKAGES $AGENT_PACKAGES"
  src_key="$(
    cd "$REPO" &&
      find Dockerfile pyproject.toml agent -type f \( -name '*.py' -o -name '*.toml' -o -name 'Dockerfile' -o -name '*.typed' \) \
        -not -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
  )"
  key="$(hash_of "$(image_key chaos-agent-rootfs:"$SUITE") $src_key")"
  if up_to_date chaos-agent:latest "$key"; then
    log "chaos-agent:latest is up to date"
    return 0
  fi
  py=python3
  have "$py" || apt_install_host python3
  "$py" -m pip --version >/dev/null 2>&1 || apt_install_host python3-pip
  ctx="$(mktemp -d "${TMPDIR:-/tmp}/chaos-agent-ctx.XXXXXX")"
  TMPDIRS+=("$ctx")
  cp -a "$REPO/Dockerfile" "$REPO/pyproject.toml" "$ctx/"
  (cd "$REPO" && find agent -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 |
    xargs -0 cp --parents -t "$ctx/")
  if [[ -f "$REPO/README.md" ]]; then
    cp "$REPO/README.md" "$ctx/"
  else
    printf '# chaos-agent\n' >"$ctx/README.md"
  fi
  mkdir -p "$ctx/wheels" "$CACHE/wheels"
  log "chaos-agent: building the project wheel and downloading its dependencies on the host"
  "$py" -m pip wheel -q --no-deps --wheel-dir "$ctx/wheels" "$ctx" >"$ctx/pip.log" 2>&1 || {
    tail -n 30 "$ctx/pip.log" >&2
    die "pip wheel of the project failed"
  }
  deps="$("$py" - "$ctx/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"].get("dependencies", [])))
PY
)"
  arch="$(uname -m)"
  if [[ -n "$deps" ]]; then
    local platforms=() tag
    for tag in manylinux_2_36 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_24 \
      manylinux_2_17 manylinux2014 manylinux_2_12 manylinux2010 manylinux_2_5 manylinux1; do
      platforms+=(--platform "${tag}_${arch}")
    done
    # The image's python3 is Debian bookworm's 3.11, whatever python the host has.
    mapfile -t dep_list <<<"$deps"
    "$py" -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
      "${platforms[@]}" --dest "$CACHE/wheels" "${dep_list[@]}" >"$ctx/pip.log" 2>&1 || {
      tail -n 30 "$ctx/pip.log" >&2
      die "pip download of the agent's dependencies failed (is PyPI reachable?)"
    }
    cp -l "$CACHE"/wheels/*.whl "$ctx/wheels/" 2>/dev/null || cp "$CACHE"/wheels/*.whl "$ctx/wheels/"
  fi
  docker_build chaos-agent:latest "$ctx" --build-arg BASE_IMAGE=chaos-agent-rootfs:"$SUITE" \
    --label "chaos.build.key=$key"
  # The legacy builder keeps the multi-stage build's first stage as an untagged image.
  local stage
  for stage in $("$DOCKER" images -q --filter dangling=true --filter label=chaos.build.stage=agent-build); do
    "$DOCKER" image rm "$stage" >/dev/null 2>&1 || true
  done
  cleanup_one "$ctx"
}

# systemd as PID 1 beside the agent's venv (copied from chaos-agent:latest): the unit's test bed.
build_systemd() {
  "$DOCKER" image inspect chaos-agent:latest >/dev/null 2>&1 || build_agent
  build_rootfs_image chaos-systemd-rootfs:"$SUITE" "$BASE_PACKAGES $AGENT_PACKAGES $SYSTEMD_PACKAGES"
  docker_build chaos-systemd:latest "$IMAGES_DIR/systemd" \
    --build-arg BASE_IMAGE=chaos-systemd-rootfs:"$SUITE" --build-arg AGENT_IMAGE=chaos-agent:latest
}

# --- main --------------------------------------------------------------------------------
have "$DOCKER" || die "no docker CLI: run scripts/docker-engine.sh first"
"$DOCKER" info >/dev/null 2>&1 || die "the Docker engine does not answer: run scripts/docker-engine.sh"
mkdir -p "$CACHE"

declare -A BUILT=()
total_start=$SECONDS
for target in "${TARGETS[@]}"; do
  [[ -n "${BUILT[$target]:-}" ]] && continue
  BUILT["$target"]=1
  start=$SECONDS
  "build_$target"
  case "$target" in
    base) image="chaos-base:$SUITE" ;;
    *) image="chaos-$target:latest" ;;
  esac
  size="$("$DOCKER" image inspect --format '{{.Size}}' "$image")"
  log "$(printf '%-22s ready in %4ds (%d MB)' "$image" "$((SECONDS - start))" "$((size / 1000000))")"
done
# Rebuilt images leave their previous versions untagged: remove exactly those (by id, no
# force: one still used by a container or a child image stays).
for old_id in "${REPLACED[@]+"${REPLACED[@]}"}"; do
  # still tagged (a cache hit rebuilt the same image): keep it
  tags="$("$DOCKER" image inspect --format '{{len .RepoTags}}' "$old_id" 2>/dev/null || echo 1)"
  if [[ "$tags" == 0 ]]; then "$DOCKER" image rm "$old_id" >/dev/null 2>&1 || true; fi
done
log "done in $((SECONDS - total_start))s"
