#!/usr/bin/env bash
# Installs what `make demo` and `make test` need, from package registries only, with
# every version pinned (scripts/versions.env). Idempotent: a second run checks and
# skips. Prints each step and how long it took.
#
# Usage: scripts/bootstrap.sh [python|all|bench|images]   (default: all; bench adds wrk)
#        scripts/bootstrap.sh --print-venv                  (path of the Python environment)
#
# `images` (not part of `all`; `make test` runs it) installs podman, runc and debootstrap
# and makes sure the base image that services/*/Dockerfile start FROM is in podman's
# storage: a pulled official image is kept; otherwise a local stand-in is built with
# debootstrap (see install_base_image), its rootfs tarball cached in OBS_STACK_CACHE.
#
# Reads: OBS_STACK_CACHE (default ~/.cache/obs-stack), PYTHON (default python3).
# Installs into OBS_STACK_CACHE: the Python venv (requirements/dev.lock), the Jaeger
# binary, the Elasticsearch zip. As root, Elasticsearch is unpacked under
# /var/cache/obs-stack instead, because it must run as the unprivileged user
# `obs-es` and /root is not readable by other users.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${OBS_STACK_CACHE:-$HOME/.cache/obs-stack}
python=${PYTHON:-python3}
lock="$repo/requirements/dev.lock"
lock_id=$(sha256sum "$lock" | cut -c1-12)
py_id=$("$python" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
venv="$cache/venv-$py_id-$lock_id"

if [[ "${1:-}" == "--print-venv" ]]; then
  echo "$venv"
  exit 0
fi
what=${1:-all}
case "$what" in python|all|bench|images) ;; *) echo "usage: $0 [python|all|bench|images|--print-venv]" >&2; exit 2 ;; esac

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }
step() {
  local name=$1; shift
  local start=$SECONDS
  log "$name ..."
  "$@"
  log "$name: ok ($((SECONDS - start)) s)"
}

as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root for: $* (run as root or install sudo)"; fi
}

install_python() {
  if [[ -f "$venv/.complete" ]]; then log "  venv up to date: $venv"; return; fi
  "$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || die "Python >= 3.11 is required ($python is $("$python" --version 2>&1))"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
  touch "$venv/.complete"
  log "  installed $(grep -c '^[a-z]' "$lock") locked packages into $venv"
}

apt_updated=""
apt_install() {  # apt_install PACKAGE VERSION BINARY
  local package=$1 version=$2 binary=$3
  if [[ "$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true)" == "$version" ]] \
      && command -v "$binary" >/dev/null; then
    log "  $package $version already installed"
    return
  fi
  command -v apt-get >/dev/null || die "$package needs apt-get (Debian/Ubuntu); install $package $version by hand"
  if [[ -z "$apt_updated" ]]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "$package=$version" >/dev/null \
    || die "apt-get install $package=$version failed (is the version still in the archive? see scripts/versions.env)"
  log "  installed $package $version"
}

install_prometheus() {
  apt_install prometheus "$PROMETHEUS_DEB_VERSION" prometheus
  apt_install prometheus-alertmanager "$ALERTMANAGER_DEB_VERSION" prometheus-alertmanager
  apt_install prometheus-elasticsearch-exporter "$ELASTICSEARCH_EXPORTER_DEB_VERSION" \
    prometheus-elasticsearch-exporter
}

install_jaeger() {
  local binary="$cache/bin/jaeger-$JAEGER_MODULE_VERSION"
  if [[ -x "$binary" ]]; then log "  $binary present"; return; fi
  command -v go >/dev/null || die "Go is needed to build Jaeger (go >= 1.24)"
  mkdir -p "$cache/bin"
  export GOMODCACHE="$cache/gomod" GOTOOLCHAIN=local GOFLAGS=-modcacherw
  local dir
  dir=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" \
        | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  log "  building Jaeger $JAEGER_RELEASE (module $JAEGER_MODULE_VERSION); first time takes minutes"
  (cd "$dir" && go build -trimpath -o "$binary.tmp" ./cmd/jaeger) 2>"$cache/jaeger-build.log" \
    || { tail -n 30 "$cache/jaeger-build.log" >&2; die "go build of Jaeger failed (full log: $cache/jaeger-build.log)"; }
  mv "$binary.tmp" "$binary"
}

es_home() {
  if [[ $EUID -eq 0 ]]; then echo "/var/cache/obs-stack/elasticsearch-$ELASTICSEARCH_VERSION"
  else echo "$cache/elasticsearch-$ELASTICSEARCH_VERSION"; fi
}

install_elasticsearch() {
  local home zip="$cache/dl/elasticsearch-$ELASTICSEARCH_VERSION.zip"
  home=$(es_home)
  command -v java >/dev/null || die "Elasticsearch needs a JDK >= 17 on the PATH (apt-get install openjdk-17-jdk-headless)"
  if [[ ! -f "$zip" ]]; then
    command -v mvn >/dev/null || die "mvn is needed to fetch Elasticsearch from Maven Central (apt-get install maven)"
    mvn -q -B -Dstyle.color=never dependency:copy \
      -Dmaven.repo.local="$cache/m2" \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ELASTICSEARCH_VERSION:zip" \
      -DoutputDirectory="$cache/dl"
  fi
  if [[ ! -f "$home/.complete" ]]; then
    mkdir -p "$(dirname "$home")"
    rm -rf "$home" "$home.tmp"
    mkdir "$home.tmp"
    (cd "$home.tmp" && unzip -q "$zip")
    mv "$home.tmp/elasticsearch-$ELASTICSEARCH_VERSION" "$home"
    rmdir "$home.tmp"
    chmod -R a+rX "$home"
    touch "$home/.complete"
  fi
  if [[ $EUID -eq 0 ]] && ! id obs-es >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin obs-es
    log "  created system user obs-es (Elasticsearch refuses to run as root)"
  fi
  log "  Elasticsearch $ELASTICSEARCH_VERSION at $home"
}

install_container_tools() {
  # runc first: it then satisfies podman's "crun | runc" dependency, and the image
  # tests' OCI runtime wrapper (tests/support/oci_runtime.py) calls runc.
  apt_install runc "$RUNC_DEB_VERSION" runc
  apt_install podman "$PODMAN_DEB_VERSION" podman
  # Absolute path: /usr/sbin is not on a normal user's PATH.
  apt_install debootstrap "$DEBOOTSTRAP_DEB_VERSION" /usr/sbin/debootstrap
}

base_image() {  # the one image that every services/*/Dockerfile starts FROM
  local images
  images=$(awk 'toupper($1) == "FROM" {print $2}' "$repo"/services/*/Dockerfile | sort -u)
  [[ -n "$images" && $(wc -l <<<"$images") -eq 1 ]] \
    || die "services/*/Dockerfile must all start FROM one base image; found: ${images:-none}"
  echo "$images"
}

# The stand-in's identity: what goes into the rootfs. The machine's CA bundle is added
# in a layer of its own (below), so that a new CA does not rebuild the rootfs.
standin_key=$(printf '%s\n' "$STANDIN_DEBIAN_SUITE" "$STANDIN_PACKAGES" "$DEBOOTSTRAP_DEB_VERSION" minbase \
  | sha256sum | cut -c1-12)
standin_rootfs_image="localhost/obs-stack/standin-rootfs:$standin_key"
standin_label=io.obs-stack.standin

build_standin_rootfs() {  # build_standin_rootfs TARBALL
  local tarball=$1 work
  mkdir -p "$(dirname "$tarball")"
  work=$(mktemp -d "${TMPDIR:-/tmp}/obs-standin.XXXXXX")
  log "  debootstrap --variant=minbase $STANDIN_DEBIAN_SUITE with $STANDIN_PACKAGES (first time only)"
  as_root debootstrap --variant=minbase --include="$STANDIN_PACKAGES" \
      "$STANDIN_DEBIAN_SUITE" "$work/rootfs" >"$cache/images/debootstrap.log" 2>&1 \
    || { tail -n 30 "$cache/images/debootstrap.log" >&2; as_root rm -rf "$work"
         die "debootstrap failed (full log: $cache/images/debootstrap.log)"; }
  # As slim as the official image: no package lists or downloaded .debs. debootstrap
  # copied the host's resolv.conf and hostname; the container runtime provides its own.
  as_root rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin \
    "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/etc/resolv.conf" "$work/rootfs/etc/hostname"
  as_root tar --numeric-owner -C "$work/rootfs" -cf "$tarball.tmp" .
  as_root chown "$(id -u):$(id -g)" "$tarball.tmp"
  as_root rm -rf "$work"
  mv "$tarball.tmp" "$tarball"
  # Only the current key's tarball is worth keeping.
  find "$(dirname "$tarball")" -maxdepth 1 -name 'rootfs-*.tar' ! -path "$tarball" -delete
  log "  rootfs cached: $tarball ($(du -m "$tarball" | cut -f1) MB)"
}

import_standin() {  # import_standin BASE TARBALL CA_ID
  local base=$1 tarball=$2 ca_id=$3 python_version ctx old_id
  python_version=$(tar -xOf "$tarball" ./var/lib/dpkg/status \
    | awk '/^Package: /{p=$2} p=="python3" && /^Version: /{print $2; exit}')
  if ! podman image exists "$standin_rootfs_image"; then
    podman import --quiet \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
      "$tarball" "$standin_rootfs_image" >/dev/null
  fi
  # The machine's CA bundle: package downloads inside a build (pip) may go through a
  # TLS-intercepting proxy whose CA only this bundle has.
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/obs-standin-ctx.XXXXXX")
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM $standin_rootfs_image
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
LABEL $standin_label="$standin_key-$ca_id" \\
      $standin_label.python="$python_version" \\
      org.opencontainers.image.description="LOCAL STAND-IN for $base, built by scripts/bootstrap.sh images: Debian $STANDIN_DEBIAN_SUITE minbase (debootstrap) with Debian's python3 $python_version. Not the official image."
CONTAINERFILE
  old_id=$(podman image inspect --format '{{.Id}}' "$base" 2>/dev/null || true)
  # --layers=false: one image, no untagged intermediate left behind.
  podman build --quiet --pull=never --layers=false -t "$base" -f "$ctx/Containerfile" "$ctx" >/dev/null
  rm -rf "$ctx"
  # The stand-in it replaces (older rootfs or CA), now untagged.
  if [[ -n "$old_id" && "$old_id" != "$(podman image inspect --format '{{.Id}}' "$base")" ]]; then
    podman rmi "$old_id" >/dev/null 2>&1 || true
  fi
  # Raw imports of older recipes.
  podman images --format '{{.Repository}}:{{.Tag}}' localhost/obs-stack/standin-rootfs \
    | grep -vxF "$standin_rootfs_image" | xargs -r podman rmi >/dev/null 2>&1 || true
}

install_base_image() {
  local base tarball ca_id have
  base=$(base_image)
  tarball="$cache/images/rootfs-$STANDIN_DEBIAN_SUITE-minbase-$standin_key.tar"
  ca_id=$(sha256sum /etc/ssl/certs/ca-certificates.crt | cut -c1-12)
  if podman image exists "$base"; then
    have=$(podman image inspect --format "{{index .Labels \"$standin_label\"}}" "$base")
    if [[ -z "$have" || "$have" == "<no value>" ]]; then
      log "  $base is in podman's storage and is not our stand-in (pulled): using it"
      return
    fi
  fi
  if [[ "${have:-}" != "$standin_key-$ca_id" ]]; then
    [[ -f "$tarball" ]] || build_standin_rootfs "$tarball"
    import_standin "$base" "$tarball" "$ca_id"
  fi
  local python_version
  python_version=$(podman image inspect --format "{{index .Labels \"$standin_label.python\"}}" "$base")
  log "  ################################################################################"
  log "  # STAND-IN BASE IMAGE: $base"
  log "  # This is NOT the official image. No container registry is reachable from the"
  log "  # machines this project is tested on, so it was built here with debootstrap:"
  log "  # Debian $STANDIN_DEBIAN_SUITE minbase + Debian's python3 $python_version, this machine's CA bundle."
  log "  # To build on the real base instead: podman pull $base"
  log "  # (this step keeps a pulled image)."
  log "  ################################################################################"
}

total=$SECONDS
if [[ "$what" == images ]]; then
  step "podman, runc, debootstrap (Debian)" install_container_tools
  step "base image of services/*/Dockerfile" install_base_image
  log "all done in $((SECONDS - total)) s"
  exit 0
fi
step "python venv ($venv)" install_python
if [[ "$what" == all || "$what" == bench ]]; then
  step "prometheus, alertmanager, elasticsearch exporter (Debian)" install_prometheus
  step "jaeger $JAEGER_RELEASE (go build)" install_jaeger
  step "elasticsearch $ELASTICSEARCH_VERSION (Maven Central)" install_elasticsearch
fi
if [[ "$what" == bench ]]; then
  step "wrk $WRK_DEB_VERSION (Debian)" apt_install wrk "$WRK_DEB_VERSION" wrk
fi
log "all done in $((SECONDS - total)) s"
