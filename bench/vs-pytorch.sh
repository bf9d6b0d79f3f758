#!/usr/bin/env bash
# uinfo against a plain PyTorch implementation of the same work, one CPU thread each, in turn:
# one run of the default experiment (fc 3×100, batch 32, 100 epochs, linear decoders on 3 layers
# × 2 labels at 16 checkpoints: epochs 0–5 and every 10th), training steps at batch 32 and 1024,
# and one probe node of each decoder family (steps and nodes: the best of three, each side, as
# this VM's speed varies by a fifth from one moment to the next). Both sides start from uinfo's
# dataset and initial weights. Prints each side's numbers, the ratios, the final bits of both,
# and uinfo's fraction of one core's f32 peak (a loop of fused multiply-adds, measured in the
# same bench).
#
# Usage: bench/vs-pytorch.sh [WORK_DIR]
# Creates the PyTorch virtualenv at .venv-torch on first use (PyPI's Linux wheel of torch is the
# CUDA build, ~2.8 GB with its nvidia-* wheels; it runs on the CPU here). Not part of the tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
venv="${UINFO_TORCH_VENV:-$root/.venv-torch}"
reqs="$root/bench/requirements-torch.txt"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.uinfo-requirements.sha256" 2>/dev/null)" != "$(sha256sum "$reqs" | cut -d' ' -f1)" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
    sha256sum "$reqs" | cut -d' ' -f1 > "$venv/.uinfo-requirements.sha256"
fi
report_python="$("$root/scripts/python-env.sh" | tail -1)"

cd "$root"
cargo build --release --workspace --bins --features gpu/candle -q
cargo bench -p stages --bench checkerboard --no-run -q 2>/dev/null
bench="$(ls -t target/release/deps/checkerboard-* | grep -v '\.d$' | head -1)"
uinfo="$root/target/release/uinfo"

cat > "$work/one-run.toml" <<'TOML'
name = "one-run"
description = "bench/vs-pytorch.sh: one run of the default experiment, probed at 16 checkpoints"
[train]
seeds = 1
batch = 32
checkpoints = [0, 1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
[probe]
null = false
TOML

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1 POLARS_MAX_THREADS=1
store="$work/store"
rm -rf "$store"
echo "== uinfo: one whole run (-j 1, from an empty store)" >&2
/usr/bin/time -f "%e %M" -o "$work/uinfo-run.time" \
    "$uinfo" --store "$store" run -q -j 1 "$work/one-run.toml" >/dev/null
blob() {
    local d
    d="$("$uinfo" --store "$store" --json show "$1" | python3 -c 'import json,sys; print(list(json.load(sys.stdin)["manifest"]["outputs"].values())[0])')"
    echo "$store/blobs/${d:0:2}/$d"
}
dataset="$(blob dataset)"
init="$(blob 'init/seed=0')"
echo "== uinfo: training steps and probe nodes" >&2
taskset -c 0 "$bench" "$dataset" "$init" b32 b1024 linear mlp > "$work/uinfo.json"
echo "== PyTorch: the same, one thread" >&2
/usr/bin/time -f "%e %M" -o "$work/torch.time" taskset -c 0 \
    "$venv/bin/python" "$root/bench/pytorch_checkerboard.py" --dataset "$dataset" --init "$init" > "$work/torch.json"

"$report_python" - "$work" "$store" <<'PY'
import json, sys
import polars as pl
work, store = sys.argv[1], sys.argv[2]
u = json.load(open(f"{work}/uinfo.json"))
t = json.load(open(f"{work}/torch.json"))
run_s, run_kib = map(float, open(f"{work}/uinfo-run.time").read().split())
_, torch_kib = map(float, open(f"{work}/torch.time").read().split())
bits = pl.read_parquet(f"{store}/out/one-run/usable_info.parquet")
final = bits.filter(pl.col("epoch") == bits["epoch"].max())
u_final = {f"{r['layer']}.{r['label']}": r["bits"] for r in final.iter_rows(named=True)
           if r["label"] in ("color", "direction")}
rows = [
    ("training, ms per step, batch 32 (best of 3)", "train_ms_per_step_b32", t["train_ms_per_step_b32"], u["train_ms_per_step_b32"]),
    ("training, ms per step, batch 1024 (best of 3)", "train_ms_per_step_b1024", t["train_ms_per_step_b1024"], u["train_ms_per_step_b1024"]),
    ("linear probe node, s (best of 3)", "probe_node_s_linear", t["probe_node_s_linear"], u["probe_node_s_linear"]),
    ("MLP probe node, s (best of 3)", "probe_node_s_mlp", t["probe_node_s_mlp"], u["probe_node_s_mlp"]),
    ("one whole run, s", None, t["whole_run_s"], run_s),
]
print(f"{'':46} {'PyTorch':>10} {'uinfo':>10} {'ratio':>8}")
for name, _, a, b in rows:
    print(f"{name:46} {a:10.3f} {b:10.3f} {a / b:7.2f}x")
print(f"{'peak memory, MiB':46} {torch_kib / 1024:10.0f} {run_kib / 1024:10.0f}   (whole run: uinfo run -j 1; PyTorch: its process)")
print(f"one core's f32 peak (fused multiply-add loop): {u['peak_gflops']:.0f} GFLOP/s; uinfo reaches (of the dense work: the decoders skip dead features) "
      + ", ".join(f"{k} {v:.0%}" for k, v in u["peak_fraction"].items() if v is not None))
print("final bits (epoch 100)            PyTorch      uinfo")
for k in sorted(t["final_bits"]):
    print(f"  {k:30} {t['final_bits'][k]:9.4f} {u_final.get(k, float('nan')):9.4f}")
PY
