#!/usr/bin/env bash
# Usage: ./scripts/continuous_traffic.sh low|medium|high [--max-duration S] — 1, 5 or 20 req/s until Ctrl-C.
# Target: --target URL or TARGET_URL (default http://localhost:5000). --help for options.
LOADGEN_PROG=$(basename "$0") exec "$(dirname "$0")/_loadgen.sh" continuous "$@"
