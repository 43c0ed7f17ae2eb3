#!/usr/bin/env bash
# Builds the native library into cppbuild/<platform>/{include,lib,bin}.
#  1. fetches the cuSPARSELt, cuBLAS and cuSPARSE headers from NVIDIA's pip wheels (cached under
#     ${SPARSE24_CACHE:-~/.cache/sparse24}; only the headers are extracted: the libraries are opened at
#     run time, never linked),
#  2. configures and builds src-native with CMake + nvcc (sm_80 and sm_90a).
# Usage: ./cppbuild.sh [platform]   (only linux-x86_64 is supported)
# SPARSE24_CMAKE_ARGS adds CMake options, e.g. -DS24_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a
# (one GPU target: a faster build while developing).
set -euo pipefail
cd "$(dirname "$0")"
PLATFORM="${1:-linux-x86_64}"
if [[ "$PLATFORM" != linux-x86_64 ]]; then
    echo "cppbuild.sh: platform '$PLATFORM' is not supported (linux-x86_64 only)" >&2; exit 1
fi
CACHE="${SPARSE24_CACHE:-$HOME/.cache/sparse24}"
HEADERS="$CACHE/nvidia-include"
WHEELS=(nvidia-cusparselt-cu13==0.8.1 nvidia-cublas==13.1.1.3 nvidia-cusparse==12.6.3.3)

fetch_headers() {
    [[ -f "$HEADERS/.complete" ]] && return 0
    command -v python3 >/dev/null || { echo "cppbuild.sh: python3 (with pip) is needed to fetch NVIDIA's wheels" >&2; exit 1; }
    mkdir -p "$CACHE/wheels" "$HEADERS"
    echo "cppbuild.sh: fetching ${WHEELS[*]} into $CACHE/wheels"
    python3 -m pip download --quiet --retries 1 --timeout 20 --no-deps --only-binary=:all: --platform manylinux_2_27_x86_64 \
        --platform manylinux2014_x86_64 --python-version 3.11 -d "$CACHE/wheels" "${WHEELS[@]}"
    for whl in "$CACHE"/wheels/nvidia_*.whl; do
        python3 - "$whl" "$HEADERS" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if "/include/" in name and name.endswith(".h"):
            target = os.path.join(out, os.path.basename(name))
            with z.open(name) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
    done
    for h in cusparseLt.h cublasLt.h cusparse.h; do
        [[ -f "$HEADERS/$h" ]] || { echo "cppbuild.sh: $h missing from the wheels" >&2; exit 1; }
    done
    touch "$HEADERS/.complete"
}

command -v nvcc >/dev/null || { echo "cppbuild.sh: nvcc (CUDA 13 toolkit) is not on the PATH" >&2; exit 1; }
fetch_headers
OUT="$PWD/cppbuild/$PLATFORM"
mkdir -p "$OUT"
cmake -S src-native -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$OUT" \
      -DS24_NVIDIA_INCLUDE="$HEADERS" -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" ${SPARSE24_CMAKE_ARGS:-} > "$OUT/cmake.log" 2>&1 \
    || { cat "$OUT/cmake.log" >&2; exit 1; }
cmake --build "$OUT/build" -j 2
cmake --install "$OUT/build" > /dev/null
echo "cppbuild.sh: built $OUT/lib/libsparse24.so"
