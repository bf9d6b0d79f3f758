#!/usr/bin/env bash
# From ../shared/recipes (the project keeps its own copy so CI needs nothing outside the repo).
# s3-local-stop.sh — stop the SeaweedFS started by s3-local.sh, by its pid file.
set -uo pipefail
RUN=${S3_LOCAL_RUN:-/run/s3-local}
pid=$(cat "$RUN/weed.pid" 2>/dev/null) || exit 0
if [ -n "$pid" ] && grep -q '^weed$' "/proc/$pid/comm" 2>/dev/null; then
  kill -TERM "$pid"
  # graceful shutdown flushes the volume/filer stores; usually 3-10 s
  for _ in $(seq 200); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  if [ -d "/proc/$pid" ]; then kill -KILL "$pid"; echo "killed weed ($pid) after 20 s"; else echo "stopped weed ($pid)"; fi
fi
rm -f "$RUN/weed.pid"
