#!/usr/bin/env bash
# Sparse GEMM plans and FFN scheduling on a GPU host (no JDK needed): s24_plan_tune, steps below.
#
#   tests/gpu/tune-plans.sh <results-dir>
#   tests/gpu/tune-plans.sh --build-only      (on a build machine: fills $PLAN_BUILD, to be copied along)
#
# The programs come from $PLAN_BUILD (default .gpu/plan, ignored by git: bin/s24_plan_tune and
# lib/libsparse24.so, as `cmake --install` of src-native puts them); where they are missing, the script
# builds src-native there first with CMake + nvcc for sm_90a only (a few minutes), taking the cuSPARSELt,
# cuBLAS and cuSPARSE headers from $S24_NVIDIA_INCLUDE, else ~/.cache/sparse24/nvidia-include (what
# cppbuild.sh fetched), else python3's NVIDIA wheels (site-packages/nvidia/{cusparselt,cu13}/include) and the
# CUDA toolkit. cuSPARSELt and cuBLASLt are loaded from python3's NVIDIA wheels (as tests/gpu/run.sh does).
#
# Steps (each under `timeout`; a failing step does not stop the others), shapes S1 = 16384x4096x16384 and
# S2 = 8192x8192x28672, bf16, plan cache in <results-dir>/plan-cache (cleared first); about 2-3 minutes:
#   tune-A1, tune-A2  process A: every GEMM of the FFN (Z, dX, dW2, dW1) tuned, every candidate printed (form,
#           algorithm id, split-K, validation, median ms), the chosen plan; then each GEMM through s24_spmm with
#           that plan and the dense cuBLASLt GEMM of the same shape, same run. Writes the plan cache.
#   ffn1, ffn2  FFN forward/backward: sparse with the side stream, sparse on one stream, dense (same run).
#   use-B1  process B: S1's GEMMs with the plans read back from the cache (validated, not tuned): the
#           run-to-run spread with cached plans is A1's "plan in use" vs B1's.
#   tune-C1 process C (no plan cache): S1's GEMMs tuned again: the spread before (cusparseLtMatmulSearch's
#           choice in A1 vs in C1, marked "search's choice") and of the tuning.
#   graph1  the sparse FFN's forward + backward call by call vs captured into a CUDA graph and replayed (S1).
#   cachecheck  the plan cache file: written, read back, a damaged file rewritten, cleared (its own directory).
#   colc    dW2 at S1 with a column-major C allowed as well (SPARSE24_SPMM_FORMS; no plan cache), last and
#           alone: a column-major C once left a sticky fault in the context on an H100.
# Optional (name them in STEPS): use-B2, graph2 (S2); structb: dW2 at S1 with the structured operand as B
# (its tuning did not finish within 120 s on the H200; the library tunes it only when asked).
# STEPS (comma-separated step names; default: the steps above but the optional ones) selects the steps.
# Prints a summary at the end; full logs in
# <results-dir>/*.log.
set -uo pipefail
if [[ $# -lt 1 ]]; then sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PLAN_BUILD="${PLAN_BUILD:-$ROOT/.gpu/plan}"
PY="${PYTHON:-python3}"
BUILD_ONLY=0
if [[ "$1" == --build-only ]]; then BUILD_ONLY=1; RES="$PLAN_BUILD"; mkdir -p "$RES"
else mkdir -p "$1" && RES="$(cd "$1" && pwd)" || exit 2; fi
NV="$("$PY" -c 'import nvidia, os; print(os.path.realpath(list(nvidia.__path__)[0]))' 2>/dev/null)"

if [[ "$BUILD_ONLY" == 1 || ! -x "$PLAN_BUILD/bin/s24_plan_tune" ]]; then
    echo "tune-plans.sh: building src-native (sm_90a) into $PLAN_BUILD"
    HDR="${S24_NVIDIA_INCLUDE:-$HOME/.cache/sparse24/nvidia-include}"
    if [[ ! -f "$HDR/cusparseLt.h" ]]; then
        [[ -n "$NV" ]] || { echo "tune-plans.sh: no cuSPARSELt headers (S24_NVIDIA_INCLUDE, python3's nvidia wheels)"; exit 1; }
        HDR="$RES/nvidia-include"
        mkdir -p "$HDR"
        cp "$NV"/cusparselt/include/*.h "$NV"/cu13/include/cublas*.h "$HDR"/ 2>/dev/null
        CUDA_INC="$(dirname "$(dirname "$(command -v nvcc)")")/include"
        [[ -f "$HDR/cusparse.h" ]] || cp "$CUDA_INC"/cusparse*.h "$HDR"/ 2>/dev/null || cp "$NV"/cu13/include/cusparse*.h "$HDR"/
    fi
    { cmake -S "$ROOT/src-native" -B "$PLAN_BUILD/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PLAN_BUILD" \
          -DS24_NVIDIA_INCLUDE="$HDR" -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
          "-DS24_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a" &&
      cmake --build "$PLAN_BUILD/build" -j "$(nproc)" &&
      cmake --install "$PLAN_BUILD/build"; } > "$RES/build.log" 2>&1 \
        || { tail -40 "$RES/build.log"; echo "tune-plans.sh: build failed"; exit 1; }
    [[ "$BUILD_ONLY" == 1 ]] && { echo "tune-plans.sh: built $PLAN_BUILD/bin/s24_plan_tune"; exit 0; }
fi
[[ -n "$NV" ]] || { echo "tune-plans.sh: python3 does not see NVIDIA's wheels (import nvidia)"; exit 1; }
export SPARSE24_CUSPARSELT_PATH="$NV/cusparselt/lib" SPARSE24_CUBLASLT_PATH="$NV/cu13/lib"
export LD_LIBRARY_PATH="$NV/cusparselt/lib:$NV/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
TOOL="$PLAN_BUILD/bin/s24_plan_tune"
export LD_LIBRARY_PATH="$PLAN_BUILD/lib:$LD_LIBRARY_PATH"
export SPARSE24_CACHE_DIR="$RES/plan-cache"

{
    echo "# $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,uuid --format=csv,noheader 2>/dev/null)"
    echo "# cuSPARSELt $SPARSE24_CUSPARSELT_PATH; tool $TOOL"
} | tee "$RES/summary.txt"

STEPS="${STEPS:-clear,tune-A1,tune-A2,ffn1,ffn2,use-B1,tune-C1,graph1,cachecheck,colc}"
step() {  # step NAME LIMIT [ENV=VALUE...] -- ARGS...   (skipped unless NAME is in $STEPS)
    local name="$1" limit="$2"; shift 2
    case ",$STEPS," in *",$name,"*) ;; *) return 0 ;; esac
    local envs=()
    while [[ "$1" != -- ]]; do envs+=("$1"); shift; done
    shift
    local t0=$SECONDS
    env ${envs[@]+"${envs[@]}"} timeout "$limit" "$TOOL" "$@" > "$RES/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t0))s: $*" | tee -a "$RES/summary.txt"
}

S1="16384 4096 16384"; S2="8192 8192 28672"
step clear 60 -- clear
step structb 60 SPARSE24_PLAN_CACHE=0 SPARSE24_SPMM_FORMS=row_c,structured_b -- gemms $S1 --tune --only dw2
step tune-A1 180 -- gemms $S1 --tune
step tune-A2 180 -- gemms $S2 --tune
step ffn1 120 -- ffn $S1
step ffn2 120 -- ffn $S2
step use-B1 120 -- gemms $S1
step use-B2 120 -- gemms $S2
step tune-C1 180 SPARSE24_PLAN_CACHE=0 -- gemms $S1 --tune
step graph1 120 -- graph $S1
step graph2 120 -- graph $S2
step cachecheck 120 -- cachecheck
step colc 60 SPARSE24_PLAN_CACHE=0 SPARSE24_SPMM_FORMS=row_c,col_c -- gemms $S1 --tune --only dw2

echo
echo "==== plan cache ($SPARSE24_CACHE_DIR)"; cat "$SPARSE24_CACHE_DIR"/plans/*.txt 2>/dev/null
for f in structb tune-A1 tune-A2 tune-C1 colc; do
    [[ -f "$RES/$f.log" ]] || continue
    echo "==== $f: chosen plans, search's choice, dW2 forms"
    grep -E "^tune |chosen|search's choice|best per form|FAIL" "$RES/$f.log" 2>/dev/null
done
for f in tune-A1 use-B1 tune-C1 tune-A2 use-B2 ffn1 ffn2 graph1 graph2; do
    [[ -f "$RES/$f.log" ]] || continue
    echo "==== $f"
    sed -n '/^summary\|^== ffn\|^== graph/,$p' "$RES/$f.log" | grep -v "^tune \|^  form\|^  row_c\|^  col_c\|^  structured_b"
    grep -E "FAIL" "$RES/$f.log"
done
echo "==== cachecheck"; grep -E "^PASS|^FAIL" "$RES/cachecheck.log" 2>/dev/null
echo "==== steps"; grep " rc=" "$RES/summary.txt"
