#!/usr/bin/env bash
# Usage: ./scripts/generate_traffic.sh N DURATION — N requests spread evenly over DURATION seconds.
# Target: --target URL or TARGET_URL (default http://localhost:5000). --help for options.
LOADGEN_PROG=$(basename "$0") exec "$(dirname "$0")/_loadgen.sh" generate "$@"
