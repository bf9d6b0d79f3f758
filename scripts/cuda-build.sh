#!/usr/bin/env bash
# Builds dist/uinfo-cuda, the uinfo binary with the CUDA backend (`cargo build --release -p
# pipeline --features cuda`), on a machine without a GPU or a CUDA install, and dist/uinfo-cuda.xz
# (at most 64 MiB, what can travel to a GPU machine).
#
# The CUDA 13.0 toolkit comes from PyPI wheels installed into a venv (.venv-cuda): nvcc and nvvm
# (candle's kernels are compiled to PTX at build time), the runtime headers, cuBLAS, cuRAND, NVRTC
# and cudart (linked dynamically). No wheel ships the driver, so the link uses a stub libcuda.so
# (SONAME libcuda.so.1, every driver entry point cudarc declares, each returning an error) that
# the binary never loads at run time: there the GPU machine's driver provides libcuda.so.1.
# nvcc stays at 13.0 so the embedded PTX is one a CUDA 13.0 driver (580) can JIT;
# CUDA_COMPUTE_CAP=90 targets sm_90 (H100/H200) since there is no GPU here to ask.
#
# Run time needs: libcuda.so.1 (the driver), libcublas.so.13, libcublasLt.so.13,
# libcurand.so.10 and libcudart.so.13 (e.g. LD_LIBRARY_PATH=/usr/local/cuda/lib64); the script
# prints what the binary asks for. Usage: scripts/cuda-build.sh (env: VENV, CUDA_COMPUTE_CAP).
set -euo pipefail

cd "$(dirname "$0")/.."
start=$SECONDS
venv=${VENV:-.venv-cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
limit=$((64 * 1024 * 1024))

# 1. The toolkit from PyPI (about 620 MB of wheels, 1.2 GB installed; skipped when present).
wheels=(
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cccl==13.0.85
    nvidia-curand==10.4.0.35 nvidia-cublas==13.1.0.3
)
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export CUDA_HOME=$site/nvidia/cu13
if [ ! -x "$CUDA_HOME/bin/nvcc" ] || [ ! -e "$CUDA_HOME/lib/libcublas.so.13" ]; then
    echo "== installing the CUDA 13.0 wheels into $venv"
    "$venv/bin/pip" install --quiet --no-deps "${wheels[@]}"
fi
export PATH=$CUDA_HOME/bin:$PATH
nvcc --version | tail -2

# 2. Unversioned names for the linker (libcublas.so -> libcublas.so.13, ...).
for lib in "$CUDA_HOME"/lib/lib*.so.*; do
    base=${lib%%.so.*}.so
    [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done

# 3. The stub driver: every cu* function cudarc's driver bindings declare.
cudarc_version=$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
cargo fetch --quiet
cudarc_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version" | head -1)
stubs=$CUDA_HOME/lib/stubs
mkdir -p "$stubs"
if [ ! -e "$stubs/libcuda.so" ]; then
    echo "== stub libcuda.so from cudarc $cudarc_version's driver bindings"
    grep -o '^pub unsafe fn cu[A-Za-z0-9_]*' "$cudarc_src/src/driver/sys/mod.rs" |
        awk '{ print $4 }' | sort -u |
        awk '{ print "int " $1 "(void) { return 100; } /* CUDA_ERROR_NO_DEVICE */" }' \
            >"$stubs/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/cuda_stub.c"
fi

# 4. The build.
echo "== cargo build --release -p pipeline --features cuda (CARGO_TARGET_DIR=target/cuda)"
build_start=$SECONDS
CARGO_TARGET_DIR=target/cuda cargo build --release -p pipeline --features cuda
echo "build: $((SECONDS - build_start)) s"

# 5. The binary and its compressed copy.
mkdir -p dist
cp target/cuda/release/uinfo dist/uinfo-cuda
rm -f dist/uinfo-cuda.xz
xz -T0 -6 -k dist/uinfo-cuda
size=$(stat -c %s dist/uinfo-cuda)
packed=$(stat -c %s dist/uinfo-cuda.xz)
echo "dist/uinfo-cuda: $size bytes; dist/uinfo-cuda.xz: $packed bytes"
if [ "$packed" -gt "$limit" ]; then
    echo "error: dist/uinfo-cuda.xz is over 64 MiB ($packed bytes)" >&2
    exit 1
fi

# 6. What it needs at run time.
echo "== ldd dist/uinfo-cuda"
ldd dist/uinfo-cuda || true
echo "== CUDA libraries it loads at run time (libcublas.so.13 brings libcublasLt.so.13):"
readelf -d dist/uinfo-cuda | awk '/NEEDED/ { gsub(/[][]/, "", $5); print $5 }' |
    grep -E '^lib(cuda|cublas|cublasLt|curand|cudart|nvrtc|cudnn)\.' | sed 's/^/  /'
echo "total: $((SECONDS - start)) s"
