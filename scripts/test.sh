#!/usr/bin/env bash
# Runs every check of the project: formatting, clippy, the Rust tests (release build: training
# needs optimised candle) and the Python interoperability tests in their own virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== python environment"
scripts/python-env.sh
echo "== chromium (for the report test)"
scripts/chromium.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== build (release)"
cargo build --release --workspace --bins
echo "== cargo test (release)"
cargo test --release --workspace
echo "== python interop tests"
UINFO_BIN="$PWD/target/release/uinfo" "${UINFO_VENV:-$PWD/.venv}/bin/python" -m pytest -q tests/python
echo "== cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings
