#!/usr/bin/env bash
# Usage: ./scripts/background_traffic.sh start|status|stop — gentle traffic in the background (pid file in .run/).
# Target: --target URL or TARGET_URL (default http://localhost:5000). --help for options.
LOADGEN_PROG=$(basename "$0") exec "$(dirname "$0")/_loadgen.sh" background "$@"
