#!/usr/bin/env bash
# Builds the native library into cppbuild/<platform>/{include,lib,bin}.
#  CUDA build (default where nvcc is on the PATH):
#   1. the headers the CUDA toolkit lacks (always cusparseLt.h; cublasLt.h, cublas_api.h, cusparse.h where
#      the toolkit has no cuBLAS / cuSPARSE headers) are read out of NVIDIA's pip wheels by fetch-headers.py
#      with range requests (~200 KB, not the wheels' ~700 MB) and cached in
#      ${SPARSE24_CACHE:-~/.cache/sparse24}/nvidia-include; the libraries are opened at run time, never linked,
#   2. CMake + nvcc build src-native: sm_80 and sm_90a machine code, compute_90 PTX.
#  CPU-only build (no nvcc on the PATH, or SPARSE24_CUDA=false, which `mvn -Dsparse24.cuda=false` sets):
#   CMake + g++ build the C API and the CPU backend; the CUDA backend reports itself unavailable.
# Usage: ./cppbuild.sh [platform]   (only linux-x86_64 is supported)
# SPARSE24_CMAKE_ARGS adds CMake options, e.g. -DS24_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a
# (one GPU target: a faster build while developing).
# SPARSE24_OUT puts the build into another folder (relative to this script's folder; default
# cppbuild/<platform>), e.g. a benchmark variant beside the normal build:
#   SPARSE24_OUT=cppbuild/plain-keys SPARSE24_CMAKE_ARGS=-DS24_BENCH_PLAIN_RANK_KEYS=ON ./cppbuild.sh
set -euo pipefail
cd "$(dirname "$0")"
PLATFORM="${1:-linux-x86_64}"
if [[ "$PLATFORM" != linux-x86_64 ]]; then
    echo "cppbuild.sh: platform '$PLATFORM' is not supported (linux-x86_64 only)" >&2; exit 1
fi
CACHE="${SPARSE24_CACHE:-$HOME/.cache/sparse24}"
HEADERS="$CACHE/nvidia-include"
# wheel==version:headers (the versions the library is built and tested against)
CUSPARSELT_WHEEL="nvidia-cusparselt-cu13==0.8.1:cusparseLt.h"
CUBLAS_WHEEL="nvidia-cublas==13.1.1.3:cublasLt.h,cublas_api.h"
CUSPARSE_WHEEL="nvidia-cusparse==12.6.3.3:cusparse.h"

# The toolkit's include folder: next to nvcc's real location, or $CUDA_HOME / /usr/local/cuda.
toolkit_include() {
    local nvcc dir
    nvcc="$(command -v nvcc)"
    # nvcc may be a wrapper script (exec /path/bin/nvcc "$@"): follow it
    dir="$(sed -n 's|^exec \(/[^ ]*\)/bin/nvcc .*|\1|p' "$nvcc" 2>/dev/null | head -n1)"
    for d in "$dir" "$(dirname "$(dirname "$(readlink -f "$nvcc")")")" "${CUDA_HOME:-}" /usr/local/cuda; do
        [[ -n "$d" && -f "$d/include/cuda_runtime.h" ]] && { echo "$d/include"; return; }
    done
}

fetch_headers() {
    [[ -f "$HEADERS/.complete" ]] && return 0
    local include wheels=("$CUSPARSELT_WHEEL")
    include="$(toolkit_include)"
    [[ -n "$include" && -f "$include/cublasLt.h" && -f "$include/cublas_api.h" ]] || wheels+=("$CUBLAS_WHEEL")
    [[ -n "$include" && -f "$include/cusparse.h" ]] || wheels+=("$CUSPARSE_WHEEL")
    command -v python3 >/dev/null || { echo "cppbuild.sh: python3 is needed to fetch NVIDIA's headers" >&2; exit 1; }
    echo "cppbuild.sh: fetching headers into $HEADERS (first build only)"
    rm -rf "$HEADERS"
    python3 fetch-headers.py "$HEADERS" "${wheels[@]}"
    touch "$HEADERS/.complete"
}

OUT="${SPARSE24_OUT:-cppbuild/$PLATFORM}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
CUDA_ARGS=()
case "${SPARSE24_CUDA:-auto}" in
    false|off|OFF|0) WHY="CUDA is off (sparse24.cuda=false)" ;;
    *) if command -v nvcc >/dev/null; then WHY=""; else WHY="nvcc is not on the PATH"; fi ;;
esac
if [[ -z "$WHY" ]]; then
    fetch_headers
    CUDA_ARGS=(-DS24_CUDA=ON -DS24_NVIDIA_INCLUDE="$HEADERS" -DCMAKE_CUDA_COMPILER="$(command -v nvcc)")
else
    echo "cppbuild.sh: $WHY: building the CPU backend only (the CUDA backend will report itself unavailable)"
    CUDA_ARGS=(-DS24_CUDA=OFF)
fi
cmake -S src-native -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$OUT" \
      "${CUDA_ARGS[@]}" ${SPARSE24_CMAKE_ARGS:-} > "$OUT/cmake.log" 2>&1 \
    || { cat "$OUT/cmake.log" >&2; exit 1; }
cmake --build "$OUT/build" -j 2
cmake --install "$OUT/build" > /dev/null
echo "cppbuild.sh: built $OUT/lib/libsparse24.so ($([[ -z "$WHY" ]] && echo "CPU and CUDA backends" || echo "CPU backend only"))"
