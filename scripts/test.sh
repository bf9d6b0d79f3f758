#!/usr/bin/env bash
# Runs every check of the project: formatting, clippy, the Rust tests (release build: the tests
# train networks; the CUDA backend's code also runs on candle's CPU device), the Python
# interoperability tests in their own virtualenv, the headless-Chromium report test, the remote
# tests against a SeaweedFS S3 server on loopback, and the Slurm tests against a one-host Slurm
# cluster emulating three nodes (with accounting).
# Ends with one line: "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
# One feature set for every cargo step (so nothing builds twice): the CUDA backend's code on
# candle's CPU device, which its tests compare with the CPU backend.
features=(--features gpu/candle)
log="$(mktemp)"
trap 'rm -f "$log"; bash scripts/s3-local-stop.sh >/dev/null; bash scripts/slurm-local-stop.sh >/dev/null' EXIT

echo "== python environment"
scripts/python-env.sh
echo "== chromium (for the report test)"
scripts/chromium.sh
echo "== strace (the file:// remote's fsync test)"
if ! command -v strace >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
fi
echo "== S3 server (SeaweedFS on loopback, for the remote tests; stopped on exit)"
bash scripts/s3-local.sh
echo "== Slurm (slurmctld, 3 x slurmd, slurmdbd on loopback, for the Slurm tests; stopped on exit)"
SLURM_LOCAL_DBD=1 SLURM_LOCAL_NODES=3 bash scripts/slurm-local.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --workspace --all-targets "${features[@]}" -- -D warnings
echo "== build (release)"
cargo build --release --workspace --bins "${features[@]}"
echo "== cargo test (release)"
cargo test --release --workspace "${features[@]}" 2>&1 | tee -a "$log"
echo "== python interop tests"
UINFO_BIN="$PWD/target/release/uinfo" "${UINFO_VENV:-$PWD/.venv}/bin/python" -m pytest -q tests/python 2>&1 | tee -a "$log"

passed=$(grep -oE '([0-9]+) passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -oE '([0-9]+) failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "$passed passed, $failed failed"
