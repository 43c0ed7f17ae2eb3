#!/usr/bin/env bash
# Builds this checkout's native code for one GPU target on a GPU host without JDK or network (nvcc,
# cmake, python3 with NVIDIA's wheels in site-packages/nvidia/{cusparselt,cu13}) and checks and times
# the fused backward kernel (grad_split24) there:
#
#   tests/gpu/tune-kernels.sh [results-dir]          (default: /tmp/s24-tune)
#
# Steps (STEPS, default all; each under a time limit, each run even if an earlier one failed):
#   build      cmake + nvcc: libsparse24.so, s24_native_check, s24_kernel_bench   (BUILD_DIR is reused)
#   check      s24_kernel_bench check: every variant and s24_grad_split24 vs the CPU backend, byte-exact
#   bench      s24_kernel_bench bench: per kernel/variant median ms, bytes, GB/s, % of a copy measured in
#              the same run, and whether its outputs equal the two-kernel path's
#   ffn        s24_kernel_bench ffn at 16384x4096x16384 and 8192x8192x28672: backward dense / two-pass /
#              fused, and the two sparse paths' gradients compared
#   breakdown  s24_native_check breakdown 16384 4096 16384: each step of the FFN timed alone
#   racecheck  compute-sanitizer racecheck over `s24_kernel_bench check --ops-only` (every grad_split24 variant
#              and the two-kernel path, our kernels only: kns=s24; not in the default STEPS)
# The results folder gets one log a step and summary.txt, which is printed last (exit status 0 only if
# every step passed).
#
# Environment: BUILD_DIR=/tmp/s24-tune-build  GENCODE=-gencode=arch=compute_90a,code=sm_90a  JOBS=$(nproc)
#   CMAKE_ARGS (more CMake options, e.g. -DS24_BENCH_PLAIN_RANK_KEYS=ON with another BUILD_DIR: the benchmark
#   variant of the ranking keys)
#   PYTHON=python3  S24_NVIDIA_INCLUDE (a folder with cusparseLt.h, cublasLt.h, cusparse.h; found in the
#   wheels / the CUDA toolkit if unset)  SPARSE24_CUSPARSELT_PATH / SPARSE24_CUBLASLT_PATH (found in the
#   wheels if unset)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RES="${1:-/tmp/s24-tune}"
mkdir -p "$RES" || exit 2
RES="$(cd "$RES" && pwd)"
BUILD_DIR="${BUILD_DIR:-/tmp/s24-tune-build}"
GENCODE="${GENCODE:--gencode=arch=compute_90a,code=sm_90a}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 8)}"
STEPS="${STEPS:-build,check,bench,ffn,breakdown}"
PY="${PYTHON:-python3}"
SUMMARY="$RES/summary.txt"
command -v nvcc > /dev/null || { [[ -x /usr/local/cuda/bin/nvcc ]] && PATH="/usr/local/cuda/bin:$PATH"; }
: > "$SUMMARY"
FAILED=0
wanted() { [[ ",$STEPS," == *",$1,"* ]]; }
record() { printf '%-10s %-7s rc=%-4s %4ss\n' "$1" "$2" "$3" "$4" >> "$SUMMARY"; }
# step <name> <limit-s> <shell command>: output to the terminal and $RES/<name>.log
step() {
    local name="$1" limit="$2" cmd="$3"
    echo "==== $name: $cmd"
    local t0=$SECONDS rc status=PASS
    timeout --kill-after=10 "$limit" bash -c "$cmd" 2>&1 | tee "$RES/$name.log"
    rc=${PIPESTATUS[0]}
    if (( rc == 124 || rc == 137 )); then status=TIMEOUT; elif (( rc != 0 )); then status=FAIL; fi
    [[ $status != PASS ]] && FAILED=1
    record "$name" "$status" "$rc" "$(( SECONDS - t0 ))"
    return $rc
}

# ---- NVIDIA's libraries and headers from the Python wheels --------------------------------------------
FOUND="$("$PY" "$ROOT/tests/gpu/nvidia-libs.py" 2>/dev/null)"
get() { sed -n "s/^$1=//p" <<< "$FOUND"; }
export SPARSE24_CUSPARSELT_PATH="${SPARSE24_CUSPARSELT_PATH:-$(get CUSPARSELT_LIB)}"
export SPARSE24_CUBLASLT_PATH="${SPARSE24_CUBLASLT_PATH:-$(get CUBLASLT_LIB)}"
for p in "$SPARSE24_CUSPARSELT_PATH" "$SPARSE24_CUBLASLT_PATH"; do
    [[ -n "$p" ]] && LD_LIBRARY_PATH="$p${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH
if [[ -z "${S24_NVIDIA_INCLUDE:-}" ]]; then
    S24_NVIDIA_INCLUDE="$BUILD_DIR/nvidia-include"
    mkdir -p "$S24_NVIDIA_INCLUDE"
    CUDA_INC="$(dirname "$(dirname "$(command -v nvcc)")")/include"
    for h in cusparseLt.h cublasLt.h cusparse.h; do
        for d in "$(get CUSPARSELT_INC)" "$(get CU13_INC)" "$(get CUSPARSE_INC)" "$CUDA_INC" /usr/local/cuda/include; do
            if [[ -n "$d" && -f "$d/$h" ]]; then ln -sf "$d/$h" "$S24_NVIDIA_INCLUDE/$h"; break; fi
        done
        [[ -e "$S24_NVIDIA_INCLUDE/$h" ]] || echo "tune-kernels: $h not found (set S24_NVIDIA_INCLUDE)" >&2
    done
fi
{
    echo "# tune-kernels $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'no git')"
    echo "# gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n1)"
    echo "# cuSPARSELt: $SPARSE24_CUSPARSELT_PATH; cuBLASLt: $SPARSE24_CUBLASLT_PATH; $GENCODE"
} >> "$SUMMARY"

BIN="$BUILD_DIR"
if wanted build; then
    step build 400 "cmake -S '$ROOT/src-native' -B '$BUILD_DIR' -DCMAKE_BUILD_TYPE=Release -DS24_CUDA_GENCODE='$GENCODE' \
        -DS24_NVIDIA_INCLUDE='$S24_NVIDIA_INCLUDE' -DCMAKE_CUDA_COMPILER='$(command -v nvcc)' ${CMAKE_ARGS:-} > /dev/null &&
        cmake --build '$BUILD_DIR' -j $JOBS --target sparse24 s24_native_check s24_kernel_bench"
fi
KB="$BIN/s24_kernel_bench"
if wanted check; then step check 150 "'$KB' check"; fi
if wanted bench; then step bench 200 "'$KB' bench"; fi
if wanted ffn; then step ffn 240 "'$KB' ffn 16384 4096 16384 && '$KB' ffn 8192 8192 28672"; fi
if wanted breakdown; then step breakdown 150 "'$BIN/s24_native_check' breakdown 16384 4096 16384"; fi
if wanted racecheck; then
    SAN="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
    step racecheck 150 "'$SAN' --tool racecheck --error-exitcode 99 --kernel-name kns=s24 '$KB' check --ops-only"
fi

echo
echo "======== summary ($RES)"
[[ -f "$RES/check.log" ]] && { grep -c '^ok ' "$RES/check.log" | sed 's/^/check: ok /'; grep '^FAIL' "$RES/check.log" | head -20; tail -n1 "$RES/check.log"; }
[[ -f "$RES/bench.log" ]] && sed -n '/^kernel /,$p' "$RES/bench.log"
[[ -f "$RES/ffn.log" ]] && grep -E '^FFN|^  |FFN gradients' "$RES/ffn.log"
[[ -f "$RES/breakdown.log" ]] && cat "$RES/breakdown.log"
[[ -f "$RES/racecheck.log" ]] && { grep -c '^ok ' "$RES/racecheck.log" | sed 's/^/racecheck: ok /'; grep -E '^FAIL|RACECHECK SUMMARY' "$RES/racecheck.log" | head -5; }
if (( FAILED )); then echo "overall FAIL" >> "$SUMMARY"; else echo "overall PASS" >> "$SUMMARY"; fi
cat "$SUMMARY"
exit "$FAILED"
