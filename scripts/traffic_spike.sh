#!/usr/bin/env bash
# Usage: ./scripts/traffic_spike.sh THREADS DURATION — THREADS concurrent clients for DURATION seconds.
# Target: --target URL or TARGET_URL (default http://localhost:5000). --help for options.
LOADGEN_PROG=$(basename "$0") exec "$(dirname "$0")/_loadgen.sh" spike "$@"
