#!/usr/bin/env bash
# Shared launcher of the traffic scripts: runs `obs-loadgen MODE ARGS...` (tools/obs_tools/loadgen) in the
# project's Python environment, installing that environment first if it is missing.
# Reads TARGET_URL (default http://localhost:5000) through the load generator.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=$("$here/bootstrap.sh" --print-venv)
if [[ ! -f "$venv/.complete" || ! -x "$venv/bin/obs-loadgen" ]]; then
  "$here/bootstrap.sh" python >&2
fi
mode=$1
shift
export LOADGEN_PROG=${LOADGEN_PROG:-$mode}
exec "$venv/bin/obs-loadgen" "$mode" "$@"
