#!/usr/bin/env bash
# Checks that the CPU stages' bytes do not depend on the CPU: runs a small experiment natively,
# then recomputes every node under QEMU user mode emulating other CPU models (no AVX; AVX
# without FMA; AVX2 with FMA) and reports any node whose output digest differs.
#
#   scripts/cpu-portability.sh [CPU_MODEL...]     # default: Nehalem-v1 SandyBridge-v1 Haswell-v4
#
# Needs Debian's qemu-user (installed if missing, as root). Each model takes about 3 minutes:
# emulation is slow. Exit code 1 when any node differs.
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(Nehalem-v1 SandyBridge-v1 Haswell-v4)
if ! command -v qemu-x86_64 >/dev/null; then
    apt-get install -y -q qemu-user >/dev/null
fi
cargo build --release --bin uinfo -q
bin="$PWD/target/release/uinfo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/portable.toml" <<'TOML'
name = "portable"
[dataset]
n = 1000
[train]
seeds = 1
epochs = 2
batch = 32
momentum = 0.9
checkpoints = [0, 1, 2]
[probe]
labels = ["color", "direction"]
decoders = ["linear", "mlp"]
steps = 60
null = true
TOML
"$bin" --store "$work/store" run -q "$work/portable.toml" >/dev/null
status=0
for model in "${models[@]}"; do
    start=$(date +%s)
    out="$(qemu-x86_64 -cpu "$model" "$bin" --store "$work/store" verify --recompute -j 1 2>/dev/null)"
    nodes=$(grep -c '^recomputed' <<<"$out" || true)
    differing=$(grep 'DIFFERS' <<<"$out" || true)
    echo "$model: $nodes nodes recomputed in $(( $(date +%s) - start )) s, $(grep -c DIFFERS <<<"$out" || true) differ"
    if [[ -n "$differing" ]]; then
        echo "$differing"
        status=1
    fi
done
exit $status
