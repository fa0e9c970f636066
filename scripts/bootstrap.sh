#!/usr/bin/env bash
# Installs what `make demo` and `make test` need, from package registries only, with
# every version pinned (scripts/versions.env). Idempotent: a second run checks and
# skips. Prints each step and how long it took.
#
# Usage: scripts/bootstrap.sh [python|all|bench]     (default: all; bench adds wrk)
#        scripts/bootstrap.sh --print-venv     (path of the Python environment)
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
case "$what" in python|all|bench) ;; *) echo "usage: $0 [python|all|bench|--print-venv]" >&2; exit 2 ;; esac

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

total=$SECONDS
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
