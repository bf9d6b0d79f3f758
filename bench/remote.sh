#!/usr/bin/env bash
# Benchmark: push and pull throughput (MB/s, objects/s) of 1,000 small (4 KiB) and 10 large
# (32 MiB) blobs to the loopback SeaweedFS S3 server and to a file:// remote, each against a
# plain std::fs::copy of the same blobs in the same process (artifacts/benches/remote.rs).
# Usage: bench/remote.sh   (starts the S3 server with scripts/s3-local.sh if it is not running)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/s3-local.sh"
# shellcheck disable=SC1091
. "${S3_LOCAL_RUN:-/run/s3-local}/env"
cd "$root"
cargo bench --workspace --bench remote
