#!/usr/bin/env bash
# Installs what `make demo` and `make test` need, from package registries only, with
# every version pinned (scripts/versions.env). Idempotent: a second run checks and
# skips. Prints each step and how long it took.
#
# Usage: scripts/bootstrap.sh [python|deploy|all|bench|images|k8s|browser]   (default: all; bench adds wrk)
#        scripts/bootstrap.sh --print-venv                      (path of the Python environment)
#        scripts/bootstrap.sh --print-deploy-venv               (path of the deploy tool's environment)
#        scripts/bootstrap.sh --print-checkov-venv              (path of checkov's environment)
#
# `deploy` (what `make up`, `status`, `open` and `down` run) makes the deploy tool's own
# small venv: any Python >= 3.10, requirements/deploy.lock (PyYAML, and setuptools to
# install tools/ editable), nothing of the development set.
#
# `images` (not part of `all`; `make test` runs it) installs podman, runc and debootstrap
# and makes sure the base image that services/*/Dockerfile start FROM is in podman's
# storage: a pulled official image is kept; otherwise a local stand-in is built with
# debootstrap (see install_base_image), its rootfs tarball cached in OBS_STACK_CACHE.
#
# `browser` (not part of `all`; `make test` runs it) installs Debian's chromium and
# chromium-driver for the UI tests (tests/e2e/browser/, marker browser).
#
# `k8s` (not part of `all`; `make validate` and `make test` run it) builds a Kubernetes
# control plane and its companions from the Go module proxy into OBS_STACK_CACHE/bin, one
# file per tool and version (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kubelet, kube-proxy, coredns, kwok, kube-state-metrics, prometheus, promtool,
# alertmanager, amtool, and prometheus-operator from its pinned source), installs a
# real node's runtime from Debian (containerd, runc,
# CNI plugins, iptables, conntrack), copies
# kwok's stage YAMLs, and makes checkov's own venv (requirements/checkov.lock: its pins
# clash with the dev set). A cold build takes 15-25 minutes on 2 cores and about 5 GB
# of Go caches (OBS_STACK_CACHE/gomod, OBS_STACK_CACHE/gocache); later runs skip what exists.
#
# Reads: OBS_STACK_CACHE (default ~/.cache/obs-stack), PYTHON (default python3),
# OBS_VENDOR_DIR, OBS_FLUENT_BIT_SOURCE, OBS_JAEGER_UI_SOURCE and
# OBS_PROMETHEUS_OPERATOR_SOURCE (where the pinned source archives are: pinned_source).
# Installs into OBS_STACK_CACHE: the Python venv (requirements/dev.lock), the deploy
# tool's venv (requirements/deploy.lock), the Jaeger
# binary, the Fluent Bit binary (built from source, bin/fluent-bit-<version>), the
# Elasticsearch zip. As root, Elasticsearch is unpacked under
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
# sha256sum is GNU coreutils; older macOS has only Perl's `shasum -a 256`, which
# prints the same "HASH  FILE" (issue #21).
if ! command -v sha256sum >/dev/null 2>&1; then
  sha256sum() { shasum -a 256 "$@"; }
fi
lock_id=$(sha256sum "$lock" | cut -c1-12)
py_id=$("$python" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
venv="$cache/venv-$py_id-$lock_id"
# `make up`/`status`/`open`/`down` need only PyYAML: a venv of their own, keyed like the
# dev venv, on any Python >= 3.10 (issue #21: Ubuntu 22.04 ships 3.10).
deploy_lock="$repo/requirements/deploy.lock"
deploy_venv="$cache/venv-deploy-$py_id-$( (sha256sum "$deploy_lock" 2>/dev/null || true) | cut -c1-12)"
checkov_lock="$repo/requirements/checkov.lock"
# Keyed by the lock's hash, like the dev venv; absent until `make lock` has written the lock.
checkov_venv="$cache/venv-checkov-$py_id-$( (sha256sum "$checkov_lock" 2>/dev/null || true) | cut -c1-12)"

if [[ "${1:-}" == "--print-venv" ]]; then
  echo "$venv"
  exit 0
fi
if [[ "${1:-}" == "--print-deploy-venv" ]]; then
  echo "$deploy_venv"
  exit 0
fi
if [[ "${1:-}" == "--print-checkov-venv" ]]; then
  echo "$checkov_venv"
  exit 0
fi
what=${1:-all}
case "$what" in
  python|deploy|all|bench|images|k8s|browser) ;;
  *) echo "usage: $0 [python|deploy|all|bench|images|k8s|browser|--print-venv|--print-deploy-venv|--print-checkov-venv]" >&2; exit 2 ;;
esac

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

make_venv() {  # make_venv VENV LOCK [MINIMUM_MINOR_VERSION_OF_PYTHON_3]
  local target=$1 requirements=$2 minor=${3:-11}
  # An interpreter that went away (a pyenv patch release uninstalled) means a new venv.
  if [[ -f "$target/.complete" ]] && "$target/bin/python" -c '' 2>/dev/null; then
    log "  venv up to date: $target"
    return
  fi
  # Exit status, not assert: an AssertionError traceback before the message confused
  # Ubuntu 22.04 users (issue #21).
  "$python" -c "import sys; sys.exit(sys.version_info < (3, $minor))" \
    || die "Python >= 3.$minor is required ($python is $("$python" --version 2>&1)); set PYTHON=/path/to/python3.$minor or newer"
  # Debian and Ubuntu split venv's pip bootstrap (ensurepip) into python3-venv, which
  # neither installs by default; without it `python3 -m venv` fails half-way.
  "$python" -c 'import ensurepip, venv' 2>/dev/null \
    || die "$python cannot create a venv (no ensurepip): install the package python3-venv (Debian, Ubuntu: sudo apt install python3-venv, or python$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv)"
  rm -rf "$target"
  "$python" -m venv "$target"
  "$target/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$requirements"
  touch "$target/.complete"
  log "  installed $(grep -c '^[a-z]' "$requirements") locked packages into $target"
}

# The repository's own packages, editable, so that the commands and the tests run this
# checkout's code: the tooling (tools/: obs-stack, obs-deploy, obs-views, obs-loadgen,
# obs-bench) and the three service packages (services/telemetry, frontend, backend).
# Their dependencies come from the hashed lock above (--no-deps); the venv's own
# setuptools builds them (--no-build-isolation: nothing is downloaded). The venv is
# shared by every checkout with the same lock: reinstalled when it points at another.
editable_packages=(tools services/telemetry services/frontend services/backend)
install_tools() {
  local installed
  installed=$("$venv/bin/python" -c '
import os, obs_tools, obs_telemetry, frontend, backend
print(" ".join(os.path.dirname(os.path.dirname(m.__file__)) for m in (obs_tools, obs_telemetry, frontend, backend)))' 2>/dev/null || true)
  if [[ "$installed" == "${editable_packages[*]/#/$repo/}" && -x "$venv/bin/obs-deploy" ]]; then
    log "  obs-tools and the services installed from $repo"
    return
  fi
  local args=() package
  for package in "${editable_packages[@]}"; do args+=(--editable "$repo/$package"); done
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation "${args[@]}" \
    || die "pip install --editable of ${editable_packages[*]} failed"
  log "  installed (editable) from $repo: ${editable_packages[*]}"
}

install_python() { make_venv "$venv" "$lock"; install_tools; }

# The deploy tool alone (tools/, editable, for its obs-deploy command) in the small venv.
install_deploy() {
  make_venv "$deploy_venv" "$deploy_lock" 10
  if [[ "$("$deploy_venv/bin/python" -c 'import obs_tools, os; print(os.path.dirname(os.path.dirname(obs_tools.__file__)))' 2>/dev/null)" == "$repo/tools" \
        && -x "$deploy_venv/bin/obs-deploy" ]]; then
    log "  obs-deploy installed from $repo/tools"
    return
  fi
  "$deploy_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation --editable "$repo/tools" || die "pip install --editable $repo/tools failed"
  log "  installed (editable) from $repo: tools (obs-deploy)"
}

apt_updated=""
apt_install() {  # apt_install PACKAGE VERSION BINARY (a command, or a file it installs)
  local package=$1 version=$2 binary=$3
  if [[ "$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true)" == "$version" ]] \
      && { command -v "$binary" >/dev/null || [[ -f "$binary" ]]; }; then
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

# The folders that may hold the pinned source archives of ../shared/vendor/README.md,
# in order: OBS_VENDOR_DIR; ../shared/vendor beside this checkout; and, when this
# checkout is a clone of a local one (`git clone . /tmp/x`, as CI does), beside that one.
vendor_dirs() {
  [[ -n "${OBS_VENDOR_DIR:-}" ]] && echo "$OBS_VENDOR_DIR"
  echo "$repo/../shared/vendor"
  local origin
  origin=$(git -C "$repo" config --get remote.origin.url 2>/dev/null || true)
  [[ "$origin" == /* && -d "$origin" ]] && echo "$origin/../shared/vendor"
  return 0
}

# pinned_source FILE ENV_VAR VENDOR_SHA256 GITHUB_SHA256 GITHUB_SHA256_NAME URL
# Prints the path of the source archive FILE whose sha256 is one of the two pinned in
# scripts/versions.env. Looks, in order, in the vendor folders above, at the path in
# ENV_VAR, in OBS_STACK_CACHE/dl (a copy of the archive used last time, so a later
# checkout elsewhere needs neither), then downloads URL (the tag's GitHub archive) when
# its sha256 is pinned.
pinned_source() {
  local file=$1 env_var=$2 vendor_sha=$3 github_sha=$4 github_sha_name=$5 url=$6
  local archive="" dir sum cached="$cache/dl/$file"
  while read -r dir; do
    [[ -f "$dir/$file" ]] && { archive="$dir/$file"; break; }
  done < <(vendor_dirs)
  if [[ -z "$archive" && -n "${!env_var:-}" ]]; then
    [[ -f "${!env_var}" ]] || die "$env_var=${!env_var} is not a file"
    archive=${!env_var}
  fi
  if [[ -z "$archive" && -f "$cached" ]]; then archive=$cached; fi
  if [[ -z "$archive" ]]; then
    [[ -n "$github_sha" ]] || die "no source for $file: not in $(vendor_dirs | paste -sd' '), \
$env_var is unset, and the GitHub archive's sha256 is not pinned ($github_sha_name in \
scripts/versions.env is empty), so it is not downloaded"
    mkdir -p "$cache/dl"
    curl -fsSL --retry 3 -o "$cached.tmp" "$url" || die "download of $url failed"
    mv "$cached.tmp" "$cached"
    archive=$cached
  fi
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
  if [[ "$sum" != "$vendor_sha" && ( -z "$github_sha" || "$sum" != "$github_sha" ) ]]; then
    die "$archive has sha256 $sum, which is neither pinned hash in scripts/versions.env"
  fi
  if [[ "$archive" != "$cached" ]]; then
    mkdir -p "$cache/dl" && cp "$archive" "$cached.tmp" && mv "$cached.tmp" "$cached"
  fi
  log "  source $archive (sha256 $sum, pinned)" >&2
  echo "$archive"
}

# The Jaeger UI (jaeger-ui, the version that Jaeger's release embeds) from its pinned
# source (scripts/versions.env), built with the machine's Node.js and npm into
# OBS_STACK_CACHE/jaeger-ui-<version> (vite's build/ folder); npm's cache is
# OBS_STACK_CACHE/npm. The source archive: pinned_source (above), OBS_JAEGER_UI_SOURCE.
jaeger_ui_source() {
  pinned_source "jaeger-ui-${JAEGER_UI_VERSION#v}-src.tar.gz" OBS_JAEGER_UI_SOURCE \
    "$JAEGER_UI_VENDOR_SHA256" "$JAEGER_UI_GITHUB_SHA256" JAEGER_UI_GITHUB_SHA256 \
    "https://github.com/jaegertracing/jaeger-ui/archive/refs/tags/$JAEGER_UI_VERSION.tar.gz"
}
jaeger_ui_assets() { echo "$cache/jaeger-ui-$JAEGER_UI_VERSION"; }
install_jaeger_ui() {
  local assets archive start=$SECONDS
  assets=$(jaeger_ui_assets)
  if [[ -f "$assets/index.html" ]]; then log "  $assets present"; return; fi
  command -v npm >/dev/null || die "Node.js and npm are needed to build the Jaeger UI (node >= 20)"
  archive=$(jaeger_ui_source)
  local work="$cache/build/jaeger-ui-$JAEGER_UI_VERSION" log="$cache/logs/jaeger-ui.build.log"
  mkdir -p "$cache/logs" "$cache/npm"
  rm -rf "$work"
  mkdir -p "$work"
  : >"$log"
  tar -xzf "$archive" -C "$work" --strip-components=1
  # The repository's .npmrc asks for Node >= 24 (engine-strict); it builds with 20.
  # --ignore-scripts: its postinstall hooks only set up git hooks and patch tooling that the
  # two builds below do not use (../shared/vendor/README.md, the recipe that worked here).
  log "  npm ci (about 1400 packages, ~2 min; log: $log)"
  (cd "$work" && nice -n 10 env npm_config_cache="$cache/npm" npm ci --ignore-scripts \
      --no-audit --no-fund --engine-strict=false) >>"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "npm ci of jaeger-ui failed (full log: $log)"; }
  log "  npm ci done ($((SECONDS - start)) s); building plexus, then the UI with vite (~4-5 min)"
  (cd "$work" && nice -n 10 env npm_config_cache="$cache/npm" \
      npm run --workspace @jaegertracing/plexus prepublishOnly) >>"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "the plexus build of jaeger-ui failed (full log: $log)"; }
  (cd "$work/packages/jaeger-ui" && nice -n 10 env npm_config_cache="$cache/npm" npm run build) >>"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "the vite build of jaeger-ui failed (full log: $log)"; }
  [[ -f "$work/packages/jaeger-ui/build/index.html" ]] \
    || die "the jaeger-ui build made no build/index.html (full log: $log)"
  rm -rf "$assets.tmp" "$assets"
  mv "$work/packages/jaeger-ui/build" "$assets.tmp"
  mv "$assets.tmp" "$assets"
  rm -rf "$work"
  log "  built $assets ($(du -sh "$assets" | cut -f1), $((SECONDS - start)) s)"
}

# Jaeger from its Go module, with the UI above embedded: the module zip lacks the assets,
# so a writable copy of it gets them gzipped into cmd/query/app/ui/actual/ (Jaeger's own
# `make build-ui` recipe), where cmd/query/app/ui/assets.go embeds them; without them the
# binary serves a placeholder page. The binary's name carries the UI's version, so that a
# binary built without the UI (jaeger-<module version>) is never taken for this one.
install_jaeger() {
  local binary="$cache/bin/jaeger-$JAEGER_MODULE_VERSION-ui-$JAEGER_UI_VERSION" start=$SECONDS
  if [[ -x "$binary" ]]; then log "  $binary present"; return; fi
  command -v go >/dev/null || die "Go is needed to build Jaeger (go >= 1.24)"
  install_jaeger_ui
  local work="$cache/build/jaeger-$JAEGER_MODULE_VERSION" log="$cache/logs/jaeger.build.log"
  copy_jaeger_module "$work"
  local actual="$work/cmd/query/app/ui/actual"
  rm -rf "$actual"
  mkdir -p "$actual"
  cp -r "$(jaeger_ui_assets)/." "$actual/"
  find "$actual" -type f -exec gzip --no-name {} +
  [[ -f "$actual/index.html.gz" ]] || die "no index.html.gz in $actual"
  log "  go build ./cmd/jaeger (Jaeger $JAEGER_RELEASE, module $JAEGER_MODULE_VERSION, UI $JAEGER_UI_VERSION embedded; 3-6 min cold; log: $log)"
  (cd "$work" && nice -n 10 go build -trimpath -o "$binary.tmp" ./cmd/jaeger) >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "go build of Jaeger failed (full log: $log)"; }
  mv "$binary.tmp" "$binary"
  rm -rf "$work"
  log "  built $binary ($((SECONDS - start)) s)"
}

# copy_jaeger_module WORK: a writable copy of Jaeger's Go module at WORK, to build its
# commands in (`go install pkg@version` refuses the module: its go.mod has a replace
# directive). Sets the Go caches under OBS_STACK_CACHE for the build that follows.
copy_jaeger_module() {
  mkdir -p "$cache/bin" "$cache/logs"
  export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOTOOLCHAIN=local GOFLAGS=-modcacherw
  local module
  module=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" \
        | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$1"
  mkdir -p "$(dirname "$1")"
  cp -r "$module" "$1"
  chmod -R u+w "$1"
}

# Jaeger's es-index-cleaner (cmd/es-index-cleaner of the same module): deletes the
# daily jaeger-* indices older than N days, since Jaeger itself deletes nothing. The
# Kubernetes CronJob runs the upstream image of this command; the tests run this build.
install_jaeger_es_index_cleaner() {
  local binary="$cache/bin/jaeger-es-index-cleaner-$JAEGER_MODULE_VERSION" start=$SECONDS
  if [[ -x "$binary" ]]; then log "  $binary present"; return; fi
  command -v go >/dev/null || die "Go is needed to build Jaeger's es-index-cleaner (go >= 1.24)"
  local work="$cache/build/jaeger-es-index-cleaner-$JAEGER_MODULE_VERSION"
  local log="$cache/logs/jaeger-es-index-cleaner.build.log"
  copy_jaeger_module "$work"
  log "  go build ./cmd/es-index-cleaner (module $JAEGER_MODULE_VERSION; 1-4 min cold; log: $log)"
  (cd "$work" && nice -n 10 go build -trimpath -o "$binary.tmp" ./cmd/es-index-cleaner) >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "go build of es-index-cleaner failed (full log: $log)"; }
  mv "$binary.tmp" "$binary"
  rm -rf "$work"
  log "  built $binary ($((SECONDS - start)) s)"
}

# The web UI of Debian's Alertmanager, which its package leaves out: the files that the
# same upstream release embeds (the Go module's package asset, /static: index.html, the
# compiled Elm script.js, fonts and CSS), written to OBS_STACK_CACHE/alertmanager-ui-<version>
# by a small program in a wrapper module; `make demo` passes that folder as --web.ui-path.
install_alertmanager_ui() {
  local ui="$cache/alertmanager-ui-$ALERTMANAGER_UI_VERSION"
  if [[ -f "$ui/script.js" ]]; then log "  $ui present"; return; fi
  command -v go >/dev/null || die "Go is needed to unpack Alertmanager's web UI (go >= 1.24)"
  local dir="$cache/src/alertmanager-ui-$ALERTMANAGER_UI_VERSION" log="$cache/logs/alertmanager-ui.log"
  mkdir -p "$cache/logs" "$dir"
  export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOTOOLCHAIN=local GOFLAGS=-modcacherw
  printf 'module example.local/obs-stack-alertmanager-ui\n\ngo 1.22\n\nrequire github.com/prometheus/alertmanager %s\n' \
    "$ALERTMANAGER_UI_VERSION" >"$dir/go.mod"
  cat >"$dir/main.go" <<'GO'
// Writes the web UI that Alertmanager's release embeds (package asset, /static) to os.Args[1].
package main

import (
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"

	"github.com/prometheus/alertmanager/asset"
)

func copyTree(fs http.FileSystem, from, to string) {
	file, err := fs.Open(from)
	if err != nil {
		log.Fatal(err)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		log.Fatal(err)
	}
	if !info.IsDir() {
		out, err := os.Create(to)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := io.Copy(out, file); err != nil {
			log.Fatal(err)
		}
		if err := out.Close(); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		log.Fatal(err)
	}
	entries, err := file.Readdir(-1)
	if err != nil {
		log.Fatal(err)
	}
	for _, entry := range entries {
		copyTree(fs, from+"/"+entry.Name(), filepath.Join(to, entry.Name()))
	}
}

func main() { copyTree(asset.Assets, "/static", os.Args[1]) }
GO
  rm -rf "$ui.tmp"
  (cd "$dir" && go mod tidy && go run . "$ui.tmp") >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "unpacking Alertmanager $ALERTMANAGER_UI_VERSION's web UI failed (full log: $log)"; }
  [[ -f "$ui.tmp/script.js" && -f "$ui.tmp/index.html" ]] || die "no script.js or index.html in $ui.tmp"
  chmod -R a+rX "$ui.tmp"
  mv "$ui.tmp" "$ui"
  rm -rf "$dir"
  log "  wrote $ui ($(du -sh "$ui" | cut -f1))"
}

# Fluent Bit from its pinned source (scripts/versions.env), built with cmake into
# OBS_STACK_CACHE/bin/fluent-bit-<version>; the build folder goes once the binary exists.
# The source archive: pinned_source (above), OBS_FLUENT_BIT_SOURCE.
fluent_bit_binary() { echo "$cache/bin/fluent-bit-$FLUENT_BIT_VERSION"; }
fluent_bit_source() {
  pinned_source "fluent-bit-${FLUENT_BIT_VERSION#v}-src.tar.gz" OBS_FLUENT_BIT_SOURCE \
    "$FLUENT_BIT_VENDOR_SHA256" "$FLUENT_BIT_GITHUB_SHA256" FLUENT_BIT_GITHUB_SHA256 \
    "https://github.com/fluent/fluent-bit/archive/refs/tags/$FLUENT_BIT_VERSION.tar.gz"
}
install_fluent_bit() {
  local binary archive start=$SECONDS
  binary=$(fluent_bit_binary)
  if [[ -x "$binary" ]]; then log "  $binary present"; return; fi
  apt_install cmake "$CMAKE_DEB_VERSION" cmake
  apt_install flex "$FLEX_DEB_VERSION" flex
  apt_install bison "$BISON_DEB_VERSION" bison
  apt_install libyaml-dev "$LIBYAML_DEV_DEB_VERSION" /usr/include/yaml.h
  apt_install libssl-dev "$LIBSSL_DEV_DEB_VERSION" /usr/include/openssl/ssl.h
  apt_install libsqlite3-dev "$LIBSQLITE3_DEV_DEB_VERSION" /usr/include/sqlite3.h
  archive=$(fluent_bit_source)
  local work="$cache/build/fluent-bit-$FLUENT_BIT_VERSION" log="$cache/logs/fluent-bit.build.log"
  mkdir -p "$cache/bin" "$cache/logs"
  rm -rf "$work"
  mkdir -p "$work/src"
  : >"$log"
  tar -xzf "$archive" -C "$work/src" --strip-components=1
  # Flags from ../shared/vendor/README.md: system sqlite (the vendor archive lacks the
  # bundled one), no Lua/WASM (unused by fluent-bit/), simdutf off (gcc 12 fails on it).
  log "  cmake, then make -j2 fluent-bit-bin (4-8 min on 2 cores; log: $log)"
  nice -n 10 cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DFLB_PREFER_SYSTEM_LIBS=On -DFLB_LUAJIT=Off -DFLB_LUA=Off -DFLB_WASM=Off \
    -DFLB_USE_SIMDUTF=No -DFLB_UNICODE_ENCODER=Off -DFLB_EXAMPLES=Off -DFLB_SHARED_LIB=Off \
    -DFLB_TESTS_RUNTIME=Off -DFLB_TESTS_INTERNAL=Off >>"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "cmake of Fluent Bit failed (full log: $log)"; }
  log "  cmake done ($((SECONDS - start)) s); compiling"
  nice -n 10 make -C "$work/build" -j2 fluent-bit-bin >>"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "make of Fluent Bit failed (full log: $log)"; }
  "$work/build/bin/fluent-bit" --version | grep -q "Fluent Bit $FLUENT_BIT_VERSION" \
    || die "the built binary does not report Fluent Bit $FLUENT_BIT_VERSION"
  mv "$work/build/bin/fluent-bit" "$binary"
  rm -rf "$work"
  log "  built $binary ($((SECONDS - start)) s)"
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

install_browser() {
  apt_install chromium "$CHROMIUM_DEB_VERSION" chromium
  apt_install chromium-driver "$CHROMIUM_DRIVER_DEB_VERSION" chromedriver
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
  # awk reads to the end: an early exit would kill tar with SIGPIPE, and pipefail
  # would stop the bootstrap (exit 141) on a first run.
  python_version=$(tar -xOf "$tarball" ./var/lib/dpkg/status \
    | awk '/^Package: /{p=$2} p=="python3" && /^Version: /{v=$2} END{print v}')
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

# --- `k8s`: a control plane and its companions, built from the Go module proxy ---------

k8s_go_env() {
  command -v go >/dev/null || die "Go is needed to build the Kubernetes binaries (go >= 1.24)"
  # Caches of their own under OBS_STACK_CACHE (deletable once the binaries exist); two
  # compiles at a time: one k8s.io/kubernetes compile peaks near 2 GB of memory.
  export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOTOOLCHAIN=local \
    GOMAXPROCS=2 GOFLAGS="-modcacherw -p=2 -buildvcs=false"
  mkdir -p "$cache/bin" "$cache/logs"
}

k8s_bin() { echo "$cache/bin/$1-$2"; }  # k8s_bin NAME VERSION

# go_or_die LOG NAME COMMAND...: runs a go command niced, its output in LOG; on failure
# shows the log's tail and stops.
go_or_die() {
  local log=$1 name=$2; shift 2
  nice -n 10 "$@" >>"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "$name failed: $* (full log: $log)"; }
}

# go_build_tool BINARY DIR LDFLAGS PACKAGE: `go build` inside the wrapper module DIR, written to
# BINARY.tmp first so that an interrupted build never leaves a half-written binary.
go_build_tool() {
  local binary=$1 dir=$2 ldflags=$3 package=$4 name start=$SECONDS
  name=$(basename "$binary")
  if [[ -x "$binary" ]]; then log "  $name present"; return; fi
  local log="$cache/logs/$name.build.log"
  : >"$log"
  rm -f "$binary.tmp"
  (cd "$dir" && go_or_die "$log" "go build of $name" \
    go build -trimpath -ldflags="$ldflags" -o "$binary.tmp" "$package")
  mv "$binary.tmp" "$binary"
  log "  built $name ($((SECONDS - start)) s)"
}

# go_install_tool BINARY LDFLAGS PACKAGE@VERSION: `go install` with the module's own go.mod (the
# dependency versions of the upstream release), into a scratch GOBIN, then renamed.
go_install_tool() {
  local binary=$1 ldflags=$2 package=$3 name start=$SECONDS
  name=$(basename "$binary")
  if [[ -x "$binary" ]]; then log "  $name present"; return; fi
  local log="$cache/logs/$name.build.log" gobin="$binary.tmp.d"
  : >"$log"
  rm -rf "$gobin"
  mkdir -p "$gobin"
  go_or_die "$log" "go install of $name" \
    env GOBIN="$gobin" go install -trimpath -ldflags="$ldflags" "$package"
  mv "$gobin/$(basename "${package%@*}")" "$binary"
  rm -rf "$gobin"
  log "  built $name ($((SECONDS - start)) s)"
}

# The wrapper module for k8s.io/kubernetes: its go.mod replaces every k8s.io/* staging
# module with ./staging/..., which only exists in a git checkout; the wrapper requires
# the release and points those replaces at the published staging modules instead. etcd
# builds in the same module (etcdmain, as etcd's own main package does).
k8s_wrapper() {
  # "-node": the wrapper also imports the node's binaries (kubelet, kube-proxy); a
  # wrapper made before they were added is left alone and this one made beside it.
  local dir="$cache/src/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-node"
  if [[ -f "$dir/.complete" ]]; then echo "$dir"; return; fi
  local log="$cache/logs/k8s-wrapper.log" mod
  : >"$log"
  rm -rf "$dir"
  mkdir -p "$dir/cmd/etcd"
  go_or_die "$log" "downloading k8s.io/kubernetes@$K8S_VERSION" \
    go mod download k8s.io/kubernetes@"$K8S_VERSION"
  mod="$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
  {
    printf 'module example.local/obs-stack-k8s\n\ngo 1.24.0\n\ngodebug default=go1.24\n\n'
    printf 'require (\n\tk8s.io/kubernetes %s\n\tgo.etcd.io/etcd/server/v3 %s\n)\n\nreplace (\n' \
      "$K8S_VERSION" "$ETCD_VERSION"
    grep -E '^\s+k8s.io/[a-z0-9-]+ => ./staging' "$mod" \
      | awk -v sv="$K8S_STAGING_VERSION" '{print "\t" $1 " => " $1 " " sv}'
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/cmd/etcd/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package k8s

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  # tidy fills go.sum (checked against sum.golang.org) and the indirect requirements.
  (cd "$dir" && go_or_die "$log" "go mod tidy (Kubernetes wrapper)" go mod tidy)
  # Minimal version selection could raise etcd above the pin if Kubernetes required more.
  local etcd
  etcd=$(cd "$dir" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  [[ "$etcd" == "$ETCD_VERSION" ]] \
    || die "the Kubernetes wrapper resolved etcd $etcd, not ETCD_VERSION=$ETCD_VERSION (scripts/versions.env)"
  touch "$dir/.complete"
  echo "$dir"
}

# The ldflags `make release` sets: without them the servers report v0.0.0-master.
k8s_ldflags() {
  local minor flags="-s -w" package
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $package.gitVersion=$K8S_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
    flags+=" -X $package.gitTreeState=clean"
  done
  echo "$flags"
}

# Prometheus projects print this in --version (otherwise an empty version).
prometheus_ldflags() { echo "-s -w -X github.com/prometheus/common/version.Version=${1#v}"; }

install_control_plane() {
  k8s_go_env
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubectl) name missing=""
  for name in "${names[@]}"; do [[ -x $(k8s_bin "$name" "$K8S_VERSION") ]] || missing=1; done
  [[ -x $(k8s_bin etcd "$ETCD_VERSION") ]] || missing=1
  if [[ -z "$missing" ]]; then log "  etcd $ETCD_VERSION, Kubernetes $K8S_VERSION binaries present"; return; fi
  log "  building Kubernetes $K8S_VERSION and etcd $ETCD_VERSION; a cold build takes 15-25 minutes"
  local dir
  dir=$(k8s_wrapper)
  go_build_tool "$(k8s_bin etcd "$ETCD_VERSION")" "$dir" "-s -w" ./cmd/etcd
  for name in "${names[@]}"; do
    go_build_tool "$(k8s_bin "$name" "$K8S_VERSION")" "$dir" "$(k8s_ldflags)" "k8s.io/kubernetes/cmd/$name"
  done
}

# A real node for the tests (tests/support/real_node.py): the kubelet and kube-proxy of
# the control plane's release, built in the same wrapper module; containerd, runc, the
# CNI plugins, iptables and conntrack from Debian; CoreDNS (the cluster DNS that kubeadm
# deploys, pinned to kubeadm's version) from the Go module proxy.
install_node() {
  k8s_go_env
  apt_install containerd "$CONTAINERD_DEB_VERSION" containerd
  apt_install runc "$RUNC_DEB_VERSION" runc
  apt_install containernetworking-plugins "$CNI_PLUGINS_DEB_VERSION" /usr/lib/cni/bridge
  apt_install iptables "$IPTABLES_DEB_VERSION" /usr/sbin/iptables
  apt_install conntrack "$CONNTRACK_DEB_VERSION" /usr/sbin/conntrack
  local name dir=""
  for name in kubelet kube-proxy; do
    if [[ ! -x $(k8s_bin "$name" "$K8S_VERSION") ]]; then
      [[ -n "$dir" ]] || dir=$(k8s_wrapper)
      go_build_tool "$(k8s_bin "$name" "$K8S_VERSION")" "$dir" "$(k8s_ldflags)" "k8s.io/kubernetes/cmd/$name"
    else
      log "  $name-$K8S_VERSION present"
    fi
  done
  go_install_tool "$(k8s_bin coredns "$COREDNS_VERSION")" \
    "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
}

install_kwok() {
  k8s_go_env
  go_install_tool "$(k8s_bin kwok "$KWOK_VERSION")" "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok refuses to run without Stage objects; they ship inside the module.
  local stages="$cache/kwok-$KWOK_VERSION-stages"
  if [[ -d "$stages" ]]; then log "  $(basename "$stages") present"; return; fi
  local log="$cache/logs/kwok-stages.log" dir
  : >"$log"
  go_or_die "$log" "downloading sigs.k8s.io/kwok@$KWOK_VERSION" \
    go mod download sigs.k8s.io/kwok@"$KWOK_VERSION"
  dir="$GOMODCACHE/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  [[ -d "$dir" ]] || die "no kustomize/stage in sigs.k8s.io/kwok@$KWOK_VERSION ($dir)"
  rm -rf "$stages.tmp"
  cp -r "$dir" "$stages.tmp"
  chmod -R u+w "$stages.tmp"
  mv "$stages.tmp" "$stages"
  log "  copied $(find "$stages" -name '*.yaml' | wc -l) stage files to $stages"
}

# kube-state-metrics builds inside a wrapper module that requires the release: `go install
# k8s.io/kube-state-metrics/v2@v2.13.0` looks up the module's deprecation in its version
# list, and the proxy answers that with 403 ("This module version is not available").
install_kube_state_metrics() {
  k8s_go_env
  local binary dir="$cache/src/kube-state-metrics-$KUBE_STATE_METRICS_VERSION"
  binary=$(k8s_bin kube-state-metrics "$KUBE_STATE_METRICS_VERSION")
  if [[ -x "$binary" ]]; then log "  $(basename "$binary") present"; return; fi
  if [[ ! -f "$dir/.complete" ]]; then
    local log="$cache/logs/kube-state-metrics-wrapper.log"
    : >"$log"
    rm -rf "$dir"
    mkdir -p "$dir"
    printf 'module example.local/obs-stack-ksm\n\ngo 1.22.0\n\nrequire k8s.io/kube-state-metrics/v2 %s\n' \
      "$KUBE_STATE_METRICS_VERSION" >"$dir/go.mod"
    printf '//go:build tools\n\npackage ksm\n\nimport _ "k8s.io/kube-state-metrics/v2"\n' >"$dir/tools.go"
    (cd "$dir" && go_or_die "$log" "go mod tidy (kube-state-metrics wrapper)" go mod tidy)
    touch "$dir/.complete"
  fi
  go_build_tool "$binary" "$dir" "$(prometheus_ldflags "$KUBE_STATE_METRICS_VERSION")" k8s.io/kube-state-metrics/v2
}

install_prometheus_tools() {
  k8s_go_env
  local tool
  for tool in promtool prometheus; do
    go_install_tool "$(k8s_bin "$tool" "$PROMETHEUS_RELEASE")" "$(prometheus_ldflags "$PROMETHEUS_RELEASE")" \
      "github.com/prometheus/prometheus/cmd/$tool@$PROMETHEUS_MODULE_VERSION"
  done
  go_install_tool "$(k8s_bin amtool "$ALERTMANAGER_VERSION")" "$(prometheus_ldflags "$ALERTMANAGER_VERSION")" \
    "github.com/prometheus/alertmanager/cmd/amtool@$ALERTMANAGER_VERSION"
  install_alertmanager
}

# The alertmanager binary embeds its web UI (ui/app/dist), which the release builds with
# npm and which the module zip does not contain, so `go install` fails with "pattern
# app/dist: no matching files found". It builds from a copy of the module with a one-page
# placeholder there: the API, routing and notifications are the release's code; only the
# browser UI is missing (amtool and the API v2 are what the tests use).
install_alertmanager() {
  local binary dir="$cache/src/alertmanager-$ALERTMANAGER_VERSION"
  binary=$(k8s_bin alertmanager "$ALERTMANAGER_VERSION")
  if [[ -x "$binary" ]]; then log "  $(basename "$binary") present"; return; fi
  if [[ ! -f "$dir/.complete" ]]; then
    local log="$cache/logs/alertmanager-source.log" module
    : >"$log"
    go_or_die "$log" "downloading github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" \
      go mod download github.com/prometheus/alertmanager@"$ALERTMANAGER_VERSION"
    module="$GOMODCACHE/github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION"
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    cp -r "$module" "$dir"
    chmod -R u+w "$dir"
    mkdir -p "$dir/ui/app/dist"
    cat >"$dir/ui/app/dist/index.html" <<'HTML'
<!doctype html>
<title>Alertmanager</title>
<p>This Alertmanager was built by obs-stack's scripts/bootstrap.sh from the Go module,
which does not contain the npm-built web UI. The API (/api/v2/) works; use amtool.</p>
HTML
    touch "$dir/.complete"
  fi
  go_build_tool "$binary" "$dir" "$(prometheus_ldflags "$ALERTMANAGER_VERSION")" ./cmd/alertmanager
}

# prometheus-operator from its pinned source (scripts/versions.env), for the tests that run
# it against the real control plane (tests/k8s/test_kube_prometheus_stack.py). Its go.mod
# replaces pkg/apis/monitoring and pkg/client with local folders that the proxy's module zip
# lacks, so it builds from the full source tree; the dependencies come from the proxy. The
# binary goes to OBS_STACK_CACHE/bin/prometheus-operator-<version>, and the CRDs the tests
# apply (example/prometheus-operator-crd/) to OBS_STACK_CACHE/prometheus-operator-<version>-crds.
# The source archive: pinned_source (above), OBS_PROMETHEUS_OPERATOR_SOURCE.
prometheus_operator_source() {
  pinned_source "prometheus-operator-${PROMETHEUS_OPERATOR_VERSION#v}-src.tar.gz" \
    OBS_PROMETHEUS_OPERATOR_SOURCE "$PROMETHEUS_OPERATOR_VENDOR_SHA256" \
    "$PROMETHEUS_OPERATOR_GITHUB_SHA256" PROMETHEUS_OPERATOR_GITHUB_SHA256 \
    "https://github.com/prometheus-operator/prometheus-operator/archive/refs/tags/$PROMETHEUS_OPERATOR_VERSION.tar.gz"
}
install_prometheus_operator() {
  k8s_go_env
  local binary crds archive
  binary=$(k8s_bin prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")
  crds="$cache/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION-crds"
  if [[ -x "$binary" && -d "$crds" ]]; then log "  $(basename "$binary") and its CRDs present"; return; fi
  archive=$(prometheus_operator_source)
  local dir="$cache/src/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
  rm -rf "$dir"
  mkdir -p "$dir"
  tar -xzf "$archive" -C "$dir" --strip-components=1
  [[ -d "$dir/example/prometheus-operator-crd" ]] \
    || die "no example/prometheus-operator-crd/ in $archive"
  rm -rf "$crds.tmp"
  cp -r "$dir/example/prometheus-operator-crd" "$crds.tmp"
  rm -rf "$crds"
  mv "$crds.tmp" "$crds"
  # The version package the upstream Makefile sets, so that --version names the release.
  go_build_tool "$binary" "$dir" "$(prometheus_ldflags "$PROMETHEUS_OPERATOR_VERSION")" ./cmd/operator
  "$binary" --version 2>&1 | grep -q "${PROMETHEUS_OPERATOR_VERSION#v}" \
    || die "$binary --version does not report ${PROMETHEUS_OPERATOR_VERSION#v}: $("$binary" --version 2>&1 | head -n 3)"
  rm -rf "$dir"
}

install_checkov() {
  [[ -f "$checkov_lock" ]] || die "$checkov_lock is missing: run \`make lock\`"
  make_venv "$checkov_venv" "$checkov_lock"
}

total=$SECONDS
if [[ "$what" == deploy ]]; then
  step "deploy tool venv ($deploy_venv)" install_deploy
  exit 0
fi
if [[ "$what" == k8s ]]; then
  step "python venv ($venv)" install_python
  step "etcd $ETCD_VERSION, Kubernetes $K8S_VERSION (go build)" install_control_plane
  step "a real node: kubelet, kube-proxy $K8S_VERSION (go build), containerd, CNI (Debian), CoreDNS $COREDNS_VERSION" \
    install_node
  step "kwok $KWOK_VERSION and its stages (go install)" install_kwok
  step "kube-state-metrics $KUBE_STATE_METRICS_VERSION (go build)" install_kube_state_metrics
  step "Prometheus $PROMETHEUS_RELEASE, Alertmanager $ALERTMANAGER_VERSION (go install)" \
    install_prometheus_tools
  step "prometheus-operator $PROMETHEUS_OPERATOR_VERSION (go build, from source; ~2-4 min)" \
    install_prometheus_operator
  step "checkov venv ($checkov_venv)" install_checkov
  log "all done in $((SECONDS - total)) s"
  exit 0
fi
if [[ "$what" == browser ]]; then
  step "chromium, chromium-driver $CHROMIUM_DEB_VERSION (Debian)" install_browser
  log "all done in $((SECONDS - total)) s"
  exit 0
fi
if [[ "$what" == images ]]; then
  step "podman, runc, debootstrap (Debian)" install_container_tools
  step "base image of services/*/Dockerfile" install_base_image
  log "all done in $((SECONDS - total)) s"
  exit 0
fi
step "python venv ($venv)" install_python
if [[ "$what" == all || "$what" == bench ]]; then
  step "prometheus, alertmanager, elasticsearch exporter (Debian)" install_prometheus
  step "alertmanager web UI $ALERTMANAGER_UI_VERSION (from its Go module)" install_alertmanager_ui
  step "jaeger $JAEGER_RELEASE with its UI $JAEGER_UI_VERSION (npm + go build, from source)" install_jaeger
  step "jaeger es-index-cleaner $JAEGER_MODULE_VERSION (go build, from source)" install_jaeger_es_index_cleaner
  step "fluent-bit $FLUENT_BIT_VERSION (cmake, from source)" install_fluent_bit
  step "elasticsearch $ELASTICSEARCH_VERSION (Maven Central)" install_elasticsearch
fi
if [[ "$what" == bench ]]; then
  step "wrk $WRK_DEB_VERSION (Debian)" apt_install wrk "$WRK_DEB_VERSION" wrk
fi
log "all done in $((SECONDS - total)) s"
