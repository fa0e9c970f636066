#!/usr/bin/env bash
# Shared launcher of the traffic scripts: runs `python -m loadgen MODE ARGS...` in the
# project's Python environment, installing that environment first if it is missing.
# Reads TARGET_URL (default http://localhost:5000) through the load generator.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=$("$here/bootstrap.sh" --print-venv)
if [[ ! -f "$venv/.complete" ]]; then
  "$here/bootstrap.sh" python >&2
fi
mode=$1
shift
export LOADGEN_PROG=${LOADGEN_PROG:-$mode}
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$venv/bin/python" -m loadgen "$mode" "$@"
