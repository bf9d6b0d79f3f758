#!/usr/bin/env bash
# The GPU check (issue 11): run on a machine with an NVIDIA GPU, on the binary that
# scripts/cuda-build.sh built (carried as dist/uinfo-cuda.xz), in under 5 minutes:
#   (a) CPU vs CUDA: a forward pass within 1e-4 relative and one training step within 1e-3,
#       for fc, allcnn and resnet18, TF32 off;
#   (b) determinism: one segment twice, and a chain of segments against an uninterrupted run,
#       compared by digest;
#   (c) the checkerboard default with --device cuda: its time and its verdicts;
#   (d) resnet18 training images/s at batch 128 on CIFAR-shaped data, beside the same network
#       and step in PyTorch (bench/pytorch_resnet18.py) on the same card, TF32 off on both;
#   (e) one summary line, also written to $OUT/gpu-check.txt when OUT is set.
# Usage: scripts/gpu-check.sh [BINARY]   (default dist/uinfo-cuda)
# Where no GPU is found it stops after the checks that need none, with exit status 3.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-dist/uinfo-cuda}
if [[ ! -x $bin && -f $bin.xz ]]; then
    xz -dkf "$bin.xz"
    chmod +x "$bin"
fi
[[ -x $bin ]] || { echo "gpu-check: no binary at $bin (scripts/cuda-build.sh builds it)" >&2; exit 2; }
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

# The CUDA libraries the binary needs at run time (README lists them): from LD_LIBRARY_PATH, or
# from the NVIDIA wheels of an installed PyTorch.
if ldd "$bin" | grep -q "not found"; then
    for py in python3 python; do
        site=$("$py" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null) || continue
        for lib in "$site"/nvidia/*/lib; do LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}; done
        export LD_LIBRARY_PATH
        break
    done
fi
if ldd "$bin" | grep "not found"; then
    echo "gpu-check: the libraries above are missing (see README, 'GPU')" >&2
    exit 2
fi
"$bin" --version

if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no GPU here (nvidia-smi lists none); the checks (a)-(d) need one"
    "$bin" check-device --device cuda && exit 1 # must fail without a GPU
    exit 3
fi
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"

# (a), (b) and the uinfo side of (d).
"$bin" --json check-device --device cuda --speed-batch 128 | tee "$out/check-device.json"

# (c) the default experiment on the GPU, from an empty store.
store=$(mktemp -d)
start=$(date +%s.%N)
"$bin" --store "$store" run --device cuda -q | tee "$out/default-run.txt"
default_s=$(echo "$(date +%s.%N) - $start" | bc)
verdicts=$(grep -h '^### C' "$store"/out/checkerboard/report.md | sed 's/^### //' | paste -sd ';' -)
echo "default experiment on cuda: ${default_s} s; $verdicts"

# (d) PyTorch, same network and step, same card.
torch_json=$(python3 bench/pytorch_resnet18.py --batch 128 --steps 30)
echo "pytorch: $torch_json" | tee "$out/pytorch.json"

python3 - "$out/check-device.json" "$torch_json" "$default_s" "$verdicts" "$card" <<'EOF' | tee "$out/gpu-check.txt"
import json, sys
check = json.load(open(sys.argv[1]))
torch = json.loads(sys.argv[2])
ours = check["speed"]["images_per_second"]
theirs = torch["images_per_second"]
agree = all(a["ok"] for a in check["agreement"])
determ = all(d["identical"] for d in check["determinism"])
print(
    f"gpu-check {sys.argv[5]}: agreement {'ok' if agree else 'FAILED'} "
    f"(max forward {max(a['forward'] for a in check['agreement']):.1e}, "
    f"step {max(a['step'] for a in check['agreement']):.1e}); "
    f"determinism {'bit-identical' if determ else 'DIFFERS'}; "
    f"default experiment {float(sys.argv[3]):.0f} s ({sys.argv[4]}); "
    f"resnet18 batch 128: uinfo {ours:.0f} img/s, PyTorch {theirs:.0f} img/s, "
    f"step time ratio {theirs / ours:.2f}x PyTorch's"
)
sys.exit(0 if agree and determ else 1)
EOF
