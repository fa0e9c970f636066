#!/usr/bin/env bash
# Usage: ./scripts/quick_test.sh — hits every endpoint a few times (errors included) and prints a summary.
# Target: --target URL or TARGET_URL (default http://localhost:5000). --help for options.
LOADGEN_PROG=$(basename "$0") exec "$(dirname "$0")/_loadgen.sh" quick "$@"
