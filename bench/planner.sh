#!/usr/bin/env bash
# Benchmark: planning (`uinfo status`) and a fully cached `uinfo run` on an experiment of more
# than 10,000 nodes (120 runs x 30 one-epoch segments, probed every epoch), against the start-up
# time of `uinfo --version` measured in the same script. Fills the store first (a few minutes).
# Usage: bench/planner.sh [STORE_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
uinfo="$root/target/release/uinfo"
[ -x "$uinfo" ] || (cd "$root" && cargo build --release --bins)
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
cat > "$work/many.toml" <<'TOML'
name = "many"
description = "planner benchmark: 120 tiny runs, a checkpoint every epoch"
[dataset]
n = 300
[model]
depth = 1
width = 4
[train]
seeds = 60
epochs = 30
batch = [8, 16]
checkpoints = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]
[probe]
labels = ["color"]
steps = 10
TOML
cd "$work"
nodes=$("$uinfo" --store "$work/store" --json dag many.toml | grep -c '"stage"')
echo "nodes: $nodes"
if ! "$uinfo" --store "$work/store" run -q many.toml | grep -q "nothing to do"; then
  echo "store filled"
fi
python3 - "$uinfo" "$work/store" "$nodes" <<'PY'
import subprocess, sys, time
uinfo, store, nodes = sys.argv[1], sys.argv[2], sys.argv[3]
def best(*args):
    times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([uinfo, *args], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return min(times)
base = best("--version")
status = best("--store", store, "status", "many.toml")
cached = best("--store", store, "run", "-q", "many.toml")
print(f"uinfo --version (baseline): {base:.3f} s")
print(f"uinfo status, {nodes} nodes:     {status:.3f} s ({status / base:.1f}x baseline)")
print(f"uinfo run, all cached:      {cached:.3f} s ({cached / base:.1f}x baseline)")
PY
