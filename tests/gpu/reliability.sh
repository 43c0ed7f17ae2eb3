#!/usr/bin/env bash
# sparse24 reliability run on a GPU host without JDK or network, from a GPU test bundle (make-bundle.sh):
#
#   tests/gpu/reliability.sh <bundle-dir> <results-dir>
#
# Steps (select with STEPS, default all; each under a time limit, each run even if an earlier one failed):
#   fuzz        GpuFuzzTest: FUZZ_CASES (1000) random shapes/dtypes/options, FFN + gemm + compress24 against the
#               float64 reference                                                      -> fuzz/
#   nan         GpuNanTest: NaN/Inf injected in every dtype and mode, compress24 lossless  -> nan/
#   stress      GpuConcurrencyTest: 8 threads closing tensors/FFNs/contexts under forward/backward, STRESS_SECONDS
#               (10) each                                                              -> stress/
#   soak        GpuSoakTest: SOAK_STEPS (10000) forward/backward steps, scoped and with forgotten outputs; host
#               RSS checked by the test, device memory sampled here with nvidia-smi: after the first fifth of the
#               run it may not grow by more than SOAK_DEVICE_MIB (64)                 -> soak/, soak-device.csv
#   memcheck    compute-sanitizer memcheck (leak check) over the native check         -> memcheck-native.txt
#   racecheck   compute-sanitizer racecheck over `s24_native_check check --ops-only` (on the GPU our kernels'
#               single ops, no GEMM and no FFN) with --kernel-name kns=s24: under racecheck with a kernel filter
#               the GEMM libraries' kernels fault inside the tool (cuSPARSELt: CUSPARSE_STATUS_INTERNAL_ERROR;
#               with CUDA_LAUNCH_BLOCKING=1 the first FFN's cublasLtMatmul: CUBLAS_STATUS_EXECUTION_FAILED; the
#               same with --racecheck-memcpy-async no, 2026-11-30); without the filter the GEMMs are instrumented
#               and the check does not finish in 7 min. tune-kernels.sh's racecheck step races grad_split24
#                                                                                      -> racecheck-native.txt
#   synccheck   compute-sanitizer synccheck over the native check                     -> synccheck-native.txt
#   memcheckjava, synccheckjava  memcheck / synccheck over the JUnit classes JAVA_CLASSES (GpuOpsTest: every op,
#               GpuConcurrencyTest: close/use with STRESS_SECONDS=2, GpuFfnTest: the FFN); classes named
#               torch.<Class> run on LibTorch's CUDA build (TORCH_DIR, as run.sh's torch step) with
#               --force-blocking-launches (with concurrent launches synccheck ran out of its own memory and did
#               not track ~5000 GEMM launches, 2026-11-30); JAVA_PROPS adds JVM options (e.g.
#               -Dsparse24.soakSteps=500)                                               -> memcheck-java/, ...
# summary.txt gets one line a step (PASS/FAIL/TIMEOUT) and "overall PASS|FAIL"; exit status 0 only if all passed.
#
# Environment: STEPS, FUZZ_CASES, STRESS_SECONDS, SOAK_STEPS, SOAK_DEVICE_MIB, JAVA_CLASSES, TIMEOUT_<STEP> (seconds;
# defaults below; TIMEOUT_JAVA_SANITIZE for the two Java steps), SANITIZER (compute-sanitizer), plus what run.sh reads
# (SPARSE24_CUSPARSELT_PATH, ...).
# Time on an H200 (measured 2026-11-29): memcheck 11 s and synccheck 24 s over the native check (460 checks, 0
# errors); racecheck 7 s (250 checks, 42 of them on the GPU, 0 hazards); memcheck over GpuOpsTest + GpuConcurrencyTest
# 10 s (168 tests), over GpuFfnTest 44 s, synccheck over GpuFfnTest 56 s (88 tests; 0 errors each); fuzz 60 s,
# nan 28 s, soak 13 s. 2026-11-30: memcheck / synccheck over "GpuNanTest GpuScratchTest IndexTensorOpsGpuTest
# GpuSoakTest GpuFuzzTest" with JAVA_PROPS="-Dsparse24.soakSteps=300 -Dsparse24.fuzzCases=200" 70 s / 115 s (409
# tests), synccheck over GpuOpsTest + GpuConcurrencyTest 13 s (168), over torch.TorchGpuTest memcheck 73 s,
# synccheck 53 s (12; 0 errors each).
set -uo pipefail

if [[ $# -lt 2 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
B="$(cd "$1" && pwd)" || exit 2
[[ -x "$B/run.sh" && -f "$B/bundle.env" ]] || { echo "reliability.sh: $B is not a GPU test bundle" >&2; exit 2; }
mkdir -p "$2" || exit 2
RES="$(cd "$2" && pwd)"
STEPS="${STEPS:-fuzz,nan,stress,soak,memcheck,racecheck,synccheck,memcheckjava,synccheckjava}"
JAVA_CLASSES="${JAVA_CLASSES:-GpuOpsTest GpuConcurrencyTest GpuFfnTest}"
FUZZ_CASES="${FUZZ_CASES:-1000}"
STRESS_SECONDS="${STRESS_SECONDS:-10}"
SOAK_STEPS="${SOAK_STEPS:-10000}"
SOAK_DEVICE_MIB="${SOAK_DEVICE_MIB:-64}"
SANITIZER="${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}"
SUMMARY="$RES/summary.txt"
: > "$SUMMARY"
FAILED=0
wanted() { [[ ",$STEPS," == *",$1,"* ]]; }
record() { printf '%-13s %-8s rc=%-4s %5ss\n' "$1" "$2" "$3" "$4" | tee -a "$SUMMARY"; }

# finish <name> <rc> <t0>
finish() {
    local status=PASS
    if (( $2 == 124 || $2 == 137 )); then status=TIMEOUT; elif (( $2 != 0 )); then status=FAIL; fi
    [[ $status != PASS ]] && FAILED=1
    record "$1" "$status" "$2" $(( SECONDS - $3 ))
}

# junit <name> <limit> <java options> <class...>: the bundle's run.sh, JUnit step only, the named classes
junit() {
    local name="$1" limit="$2" opts="$3"; shift 3
    local sel="" c
    for c in "$@"; do sel+=" --select-class org.sparse24.$c"; done
    local t0=$SECONDS
    STEPS=junit JUNIT_SCAN=0 JUNIT_ARGS="$sel" JAVA_OPTS="$opts ${JAVA_OPTS:-}" TIMEOUT_JUNIT="$limit" \
        "$B/run.sh" "$RES/$name" > "$RES/$name.log" 2>&1
    finish "$name" $? "$t0"
}

# The native check next to the libsparse24.so of the bundle's jar (run.sh does the same for its own steps).
native_check() {
    [[ -n "${CHECK:-}" ]] && return 0
    # shellcheck source=/dev/null
    source "$B/bundle.env"
    local dir="$RES/.native"
    mkdir -p "$dir" && cp "$B/native/s24_native_check" "$dir/" || return 1
    (cd "$dir" && "$B/jre/bin/jar" xf "$B/lib/$APP_JAR" "$NATIVE_LIB_IN_JAR") || return 1
    mv "$dir/$NATIVE_LIB_IN_JAR" "$dir/" && rm -rf "${dir:?}/${NATIVE_LIB_IN_JAR%%/*}"
    [[ -e "$dir/libsparse24.so" ]] || ln -s "$(basename "$NATIVE_LIB_IN_JAR")" "$dir/libsparse24.so"
    CHECK="$dir/s24_native_check"
}

# The library paths run.sh would export (the sanitizer steps run the programs directly).
library_paths() {
    [[ -n "${LIBS_DONE:-}" ]] && return
    LIBS_DONE=1
    STEPS=none "$B/run.sh" "$RES/.paths" > /dev/null 2>&1
    local d
    d="$(sed -n 's/^# cuSPARSELt: \(\/.*\)/\1/p' "$RES/.paths/summary.txt")"
    [[ -n "$d" ]] && export SPARSE24_CUSPARSELT_PATH="$d" LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
    d="$(sed -n 's/^# cuBLASLt: \(\/.*\)/\1/p' "$RES/.paths/summary.txt")"
    [[ -n "$d" ]] && export SPARSE24_CUBLASLT_PATH="$d" LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
}

# sanitize <name> <limit> <tool options...> -- <program...>: 0 only with "ERROR SUMMARY: 0 errors" (racecheck:
# "RACECHECK SUMMARY: 0 hazards displayed (0 errors, ...)"
sanitize() {
    local name="$1" limit="$2"; shift 2
    local opts=()
    while [[ "$1" != -- ]]; do opts+=("$1"); shift; done
    shift
    library_paths
    local t0=$SECONDS rc
    timeout --kill-after=30 "$limit" "$SANITIZER" --error-exitcode 99 "${opts[@]}" "$@" > "$RES/$name.txt" 2>&1
    rc=$?
    if (( rc == 0 )) && ! grep -qE "ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards displayed \(0 errors" "$RES/$name.txt"
    then rc=98; fi
    tail -n 3 "$RES/$name.txt"
    finish "$name" "$rc" "$t0"
}

if wanted fuzz; then
    junit fuzz "${TIMEOUT_FUZZ:-300}" "-Dsparse24.fuzzCases=$FUZZ_CASES" GpuFuzzTest
fi
if wanted nan; then
    junit nan "${TIMEOUT_NAN:-180}" "" GpuNanTest
fi
if wanted stress; then
    junit stress "${TIMEOUT_STRESS:-120}" "-Dsparse24.stressSeconds=$STRESS_SECONDS" GpuConcurrencyTest
fi
if wanted soak; then
    CSV="$RES/soak-device.csv"
    ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -n1
        sleep 1; done ) > "$CSV" &
    SAMPLER=$!
    junit soak "${TIMEOUT_SOAK:-300}" "-Dsparse24.soakSteps=$SOAK_STEPS" GpuSoakTest
    kill "$SAMPLER" 2>/dev/null
    # device memory (MiB, one sample a second): after the first fifth, at most SOAK_DEVICE_MIB above that level
    if ! awk -v allow="$SOAK_DEVICE_MIB" '{ v[NR] = $1 } END {
            if (NR < 5) { print "soak-device: only " NR " samples"; exit 1 }
            w = v[int(NR / 5) + 1]; m = w; for (i = int(NR / 5) + 1; i <= NR; i++) if (v[i] > m) m = v[i];
            print "soak-device: " NR " samples, " w " MiB after warm-up, max " m " MiB afterwards";
            exit (m - w > allow) }' "$CSV"; then
        record soak-device FAIL 1 0; FAILED=1
    else
        record soak-device PASS 0 0
    fi
fi
if wanted memcheck || wanted racecheck || wanted synccheck; then
    if ! native_check; then echo "reliability.sh: cannot prepare the native check" >&2; FAILED=1; fi
fi
if wanted memcheck && [[ -n "${CHECK:-}" ]]; then
    sanitize memcheck-native "${TIMEOUT_MEMCHECK:-300}" --tool memcheck --leak-check full -- "$CHECK" check
fi
if wanted racecheck && [[ -n "${CHECK:-}" ]]; then
    sanitize racecheck-native "${TIMEOUT_RACECHECK:-240}" --tool racecheck --kernel-name kns=s24 -- "$CHECK" check --ops-only
fi
if wanted synccheck && [[ -n "${CHECK:-}" ]]; then
    sanitize synccheck-native "${TIMEOUT_SYNCCHECK:-180}" --tool synccheck -- "$CHECK" check
fi
# sanitize_java <step> <tool>: the tool over the JUnit classes JAVA_CLASSES (with --target-processes all). The JVM's
# own signals and JIT are invisible to the sanitizer; only CUDA API calls and kernels are checked.
sanitize_java() {
    # shellcheck source=/dev/null
    source "$B/bundle.env"
    library_paths
    local cp sel=() c extra=() torch=() props=() tool=(--tool "$2" --target-processes all)
    cp="$(IFS=:; shopt -s nullglob; a=("$B"/lib/*.jar "$B/test-classes" "$B/junit/$JUNIT_JAR"); echo "${a[*]}")"
    for c in $JAVA_CLASSES; do sel+=(--select-class "org.sparse24.$c"); done
    if [[ " $JAVA_CLASSES" == *" torch."* ]]; then
        # as run.sh's torch step
        NVLIBS="$(python3 "$B/nvidia-libs.py" 2>/dev/null | sed -n 's/^NVLIBS=//p')"
        # shellcheck source=torch-env.sh
        source "$B/torch-env.sh"
        if ! torch_assembled; then
            echo "no LibTorch in $TORCH_DIR (torch-assemble.sh)" > "$RES/$1.txt"; finish "$1" 1 "$SECONDS"; return
        fi
        cp+=":$TORCH_CP"
        torch=("${TORCH_ENV[@]}")
        tool+=(--force-blocking-launches)
        props=("${TORCH_JVM[@]}" "-Dorg.bytedeco.javacpp.cachedir=${TMPDIR:-/tmp}/sparse24-sanitize-javacpp")
    fi
    read -r -a extra <<< "${JAVA_PROPS:-}"
    mkdir -p "$RES/$1"
    sanitize "$1" "${TIMEOUT_JAVA_SANITIZE:-300}" "${tool[@]}" -- "${torch[@]}" \
        "$B/jre/bin/java" -Xmx8g "-Dsparse24.stressSeconds=2" "${props[@]}" "${extra[@]}" -cp "$cp" \
        org.junit.platform.console.ConsoleLauncher \
        $JUNIT_EXECUTE --disable-banner --details=summary --include-engine=junit-jupiter --include-tag gpu \
        --reports-dir "$RES/$1" --fail-if-no-tests "${sel[@]}"
}
if wanted memcheckjava; then sanitize_java memcheck-java memcheck; fi
if wanted synccheckjava; then sanitize_java synccheck-java synccheck; fi

if (( FAILED )); then echo "overall FAIL" >> "$SUMMARY"; else echo "overall PASS" >> "$SUMMARY"; fi
cat "$SUMMARY"
exit "$FAILED"
