#!/usr/bin/env bash
# sparse24 GPU test bundle: runs on a Linux x86-64 GPU host with no Java installed.
#
#   ./run.sh <results-dir>
#
# Steps, in this order (select with STEPS, default all but train):
#   native       s24_native_check check        -> native-check.txt
#   junit        the @Tag("gpu") JUnit tests but LibTorch's   -> junit/ (XML reports), junit.log
#   torch        the @Tag("gpu") tests of org.sparse24.torch, on LibTorch's CUDA build (TORCH_DIR)
#                -> torch-junit/, torch.log
#   bench        org.sparse24.bench.FfnBenchmark <results-dir>   (skipped if not in the bundle) -> bench.log
#   nativebench  s24_native_check bench <results-dir>/native-bench.json -> native-bench.log
#   train        the training example (org.sparse24.examples.GptTrain $TRAIN_ARGS, run in <results-dir>/train,
#                on LibTorch's CUDA build; skipped if the example is not in the bundle) -> train.log
#   multigpu     on ≥ 2 GPUs, LibTorch's CUDA build, NVLink multicast off: the examples' MultiGpuCheck
#                -> multigpu-check.log; TensorParallelBench on 2 ranks ($TP_ARGS) -> multigpu-tp/; GptTrain data
#                parallel on 2 ranks, one run per name of DDP_RUNS (dense, sparse-warmup, sparse: as train-gpu.sh)
#                with $TRAIN_ARGS -> multigpu-ddp-<name>/ (rank logs; the CSV if TRAIN_ARGS has no --csv)
# Every step runs under `timeout`, and a failing step does not stop the others. The results folder
# gets summary.txt (one line a step: name, PASS/FAIL/TIMEOUT/SKIPPED, exit status, seconds; under the
# JUnit steps one line a test class: tests ran, failed, skipped; then "overall PASS|FAIL"). A GPU test
# class (one with @Tag("gpu") tests; with JUNIT_SCAN=0, one that JUNIT_ARGS selects) that ran no test fails
# its step. The exit status is 0 only if no step failed.
#
# LibTorch: torch-assemble.sh <parts-dir> puts the uploaded parts together in /tmp/sparse24-torch; the torch
# and train steps fail without it (unless the bundle was built with --no-torch: then they are skipped).
#
# Environment:
#   STEPS="native,junit,torch,bench,nativebench"     the steps to run (add train, or STEPS=train)
#   TIMEOUT_NATIVE=300 TIMEOUT_JUNIT=300 TIMEOUT_TORCH=300 TIMEOUT_BENCH=400 TIMEOUT_NATIVEBENCH=300
#   TIMEOUT_TRAIN=600            (seconds)
#   TORCH_DIR=/tmp/sparse24-torch   where torch-assemble.sh put LibTorch (lib/*.jar)
#   TRAIN_ARGS                   the training example's arguments (train, multigpu)
#   TP_ARGS, DDP_RUNS="dense sparse-warmup", DENSE_WARMUP=300, TIMEOUT_MULTIGPU=600 (each of its runs)
#   BENCH_ARGS                   the benchmark's options after the results folder (e.g. --crossover)
#   SPARSE24_CUSPARSELT_PATH, SPARSE24_CUBLASLT_PATH   directory (or file) of libcusparseLt.so.0 /
#                                libcublasLt.so.13; found through python3's nvidia wheels if unset
#   PYTHON=python3               the Python asked where NVIDIA's wheels are
#   JAVA_OPTS                    extra JVM options (after the defaults: -Xmx8g ...)
#   JUNIT_TAGS=gpu               the tag expression selected (--include-tag)
#   JUNIT_ARGS                   extra console launcher options (e.g. "--select-class org.sparse24.X"
#                                together with JUNIT_SCAN=0)
#   JUNIT_SCAN=1                 scan test-classes (--scan-class-path); 0 to rely on JUNIT_ARGS' selectors
set -uo pipefail

B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
mkdir -p "$1" || { echo "run.sh: cannot create $1" >&2; exit 2; }
RES="$(cd "$1" && pwd)"
# shellcheck source=/dev/null
source "$B/bundle.env" || { echo "run.sh: $B/bundle.env missing (not a bundle folder?)" >&2; exit 2; }

STEPS="${STEPS:-native,junit,torch,bench,nativebench}"
TIMEOUT_NATIVE="${TIMEOUT_NATIVE:-300}"
TIMEOUT_JUNIT="${TIMEOUT_JUNIT:-300}"
TIMEOUT_TORCH="${TIMEOUT_TORCH:-300}"
TIMEOUT_TRAIN="${TIMEOUT_TRAIN:-600}"
TIMEOUT_MULTIGPU="${TIMEOUT_MULTIGPU:-600}"
TIMEOUT_BENCH="${TIMEOUT_BENCH:-400}"
TIMEOUT_NATIVEBENCH="${TIMEOUT_NATIVEBENCH:-300}"
SUMMARY="$RES/summary.txt"
JAVA="$B/jre/bin/java"

log() { echo "run.sh: $*"; }

# ---- cuSPARSELt / cuBLASLt, and the NVIDIA libraries LibTorch needs ---------------------------------------
# The native library searches the usual places itself; exporting the directories makes the choice
# explicit and visible in the summary. LD_LIBRARY_PATH is the fallback for anything else they need.
# NVLIBS: the NVIDIA wheels' library folders, the only LD_LIBRARY_PATH of the LibTorch steps.
NVLIBS=""
PY="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [[ -n "$PY" ]]; then
    FOUND="$("$PY" "$B/nvidia-libs.py" 2>/dev/null)"
    NVLIBS="$(sed -n 's/^NVLIBS=//p' <<< "$FOUND")"
    d="$(sed -n 's/^CUSPARSELT_LIB=//p' <<< "$FOUND")"
    [[ -z "${SPARSE24_CUSPARSELT_PATH:-}" && -n "$d" ]] && export SPARSE24_CUSPARSELT_PATH="$d"
    d="$(sed -n 's/^CUBLASLT_LIB=//p' <<< "$FOUND")"
    [[ -z "${SPARSE24_CUBLASLT_PATH:-}" && -n "$d" ]] && export SPARSE24_CUBLASLT_PATH="$d"
else
    log "no python3: leaving the search for cuSPARSELt/cuBLASLt to the native library"
fi
for v in SPARSE24_CUSPARSELT_PATH SPARSE24_CUBLASLT_PATH; do
    p="${!v:-}"
    [[ -z "$p" ]] && continue
    [[ -d "$p" ]] || p="$(dirname "$p")"
    case ":${LD_LIBRARY_PATH:-}:" in *":$p:"*) ;; *) LD_LIBRARY_PATH="$p${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
done
export LD_LIBRARY_PATH
# LibTorch's CUDA build (NVLIBS above): TORCH_DIR, TORCH_CP, TORCH_JVM, TORCH_ENV
# shellcheck source=torch-env.sh
source "$B/torch-env.sh"

# ---- the machine ----------------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
    GPUS="$(nvidia-smi -L 2>&1)"
    DRIVER="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)"
else
    GPUS="(no nvidia-smi)"; DRIVER="(unknown)"
fi
{
    echo "# sparse24 GPU bundle run, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname 2>/dev/null || echo '?')"
    echo "# bundle: $BUNDLE_GIT built $BUNDLE_CREATED; $APP_JAR; $JRE_VERSION"
    while IFS= read -r line; do echo "# gpu: $line"; done <<< "$GPUS"
    echo "# driver: ${DRIVER:-unknown}"
    echo "# cuSPARSELt: ${SPARSE24_CUSPARSELT_PATH:-(not set: the native library searches)}"
    echo "# cuBLASLt: ${SPARSE24_CUBLASLT_PATH:-(not set: the native library searches)}"
    echo "# LibTorch: $(ls "$TORCH_DIR"/lib/pytorch-*-gpu.jar 2>/dev/null || echo "(none in $TORCH_DIR)"); NVIDIA libraries: ${NVLIBS:-(not found)}"
    echo "# steps: $STEPS"
} > "$SUMMARY"
cat "$SUMMARY"

# ---- helpers --------------------------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/sparse24-bundle.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
JVM=(-Xmx8g "-Dorg.bytedeco.javacpp.cachedir=$TMP/javacpp" -Dorg.bytedeco.javacpp.logger.debug=false
     "-Djava.io.tmpdir=$TMP" "-XX:ErrorFile=$RES/hs_err_pid%p.log")
read -r -a USER_JVM <<< "${JAVA_OPTS:-}"
JVM+=("${USER_JVM[@]}")
CP="$(IFS=:; shopt -s nullglob; a=("$B"/lib/*.jar "$B/test-classes"); echo "${a[*]}")"

torch_missing() { # <step>: why the step cannot run on LibTorch, or nothing
    if [[ "${TORCH_PARTS:-0}" == 0 ]]; then echo "SKIP the bundle was built with --no-torch"
    elif ! torch_assembled; then
        echo "FAIL no LibTorch in $TORCH_DIR: upload the $TORCH_PARTS parts and run torch-assemble.sh <parts-dir>"
    elif [[ -z "$NVLIBS" ]]; then echo "FAIL the NVIDIA libraries (python3's site-packages/nvidia/*/lib) were not found"
    fi
}

if command -v timeout >/dev/null; then HAVE_TIMEOUT=1; else HAVE_TIMEOUT=0; log "no 'timeout' command: steps run without a limit"; fi
FAILED=0

wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

# The native self-check runs from $TMP/native, next to the libsparse24.so taken out of the jar (its
# RPATH is $ORIGIN). Sets NATIVE_WHY when it cannot.
CHECK=""; NATIVE_WHY=""
prepare_native() {
    [[ -n "$CHECK" ]] && return 0
    [[ -n "$NATIVE_WHY" ]] && return 1
    local dir="$TMP/native" jar="$B/lib/$APP_JAR" entry="${NATIVE_LIB_IN_JAR:-}"
    [[ -x "$B/native/s24_native_check" ]] || { NATIVE_WHY="s24_native_check is not in the bundle"; return 1; }
    [[ -n "$entry" ]] || { NATIVE_WHY="$APP_JAR holds no libsparse24.so"; return 1; }
    mkdir -p "$dir/x" && cp "$B/native/s24_native_check" "$dir/"
    if [[ -x "$B/jre/bin/jar" ]]; then
        (cd "$dir/x" && "$B/jre/bin/jar" xf "$jar" "$entry")
    elif command -v unzip >/dev/null; then
        unzip -q -o "$jar" "$entry" -d "$dir/x"
    else
        "${PYTHON:-python3}" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$jar" "$entry" "$dir/x"
    fi
    [[ -f "$dir/x/$entry" ]] || { NATIVE_WHY="could not take $entry out of $APP_JAR"; return 1; }
    mv "$dir/x/$entry" "$dir/" && rm -rf "$dir/x"
    # the name the program was linked against, should the jar hold a versioned file name
    local base; base="$(basename "$entry")"
    [[ -e "$dir/libsparse24.so" ]] || ln -s "$base" "$dir/libsparse24.so"
    CHECK="$dir/s24_native_check"
}

# record <step> <status> <rc> <seconds> [note]
record() {
    printf '%-12s %-8s rc=%-4s %5ss%s\n' "$1" "$2" "$3" "$4" "${5:+  $5}" | tee -a "$SUMMARY"
}

# step <name> <limit-s> <log-file> <command...>: runs it under timeout, output to the terminal and the log
step() {
    local name="$1" limit="$2" logfile="$3"; shift 3
    echo
    log "==== $name (limit ${limit}s): $*"
    local t0=$SECONDS rc
    if (( HAVE_TIMEOUT )); then
        timeout --kill-after=30 "$limit" "$@" 2>&1 | tee "$logfile"
    else
        "$@" 2>&1 | tee "$logfile"
    fi
    rc=${PIPESTATUS[0]}
    local dt=$(( SECONDS - t0 )) status=PASS
    if (( rc == 124 || rc == 137 )) && (( HAVE_TIMEOUT )); then status=TIMEOUT; elif (( rc != 0 )); then status=FAIL; fi
    [[ $status != PASS ]] && FAILED=1
    record "$name" "$status" "$rc" "$dt"
}

skip() { record "$1" SKIPPED - 0 "$2"; }

# The GPU test classes (bundle.env) of the torch step and of the junit step.
TORCH_CLASSES=""; CORE_CLASSES=""
for c in ${GPU_TEST_CLASSES:-}; do
    if [[ "$c" == org.sparse24.torch.* ]]; then TORCH_CLASSES+=" $c"; else CORE_CLASSES+=" $c"; fi
done

# count_tests <step> <reports-dir> <class...>: one line a test class (ran, failed, skipped) from the JUnit XML
# report; a listed class (a GPU test class of the step) that ran no test fails the step.
count_tests() {
    local name="$1" dir="$2" out rc
    shift 2
    if [[ -z "$PY" ]]; then record "$name:classes" FAIL - 0 "no python3 to read $dir"; FAILED=1; return; fi
    out="$("$PY" - "$dir" "$@" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
folder, gpu = sys.argv[1], sys.argv[2:]
counts = {}
for f in glob.glob(folder + "/TEST-*.xml"):
    for case in ET.parse(f).iter("testcase"):
        n = counts.setdefault(case.get("classname", "?").split("$")[0], [0, 0, 0])
        if case.find("skipped") is not None:
            n[2] += 1
        else:
            n[0] += 1
            n[1] += case.find("failure") is not None or case.find("error") is not None
empty = [c for c in gpu if counts.get(c, [0])[0] == 0]
for c in sorted(set(counts) | set(empty)):
    ran, failed, skipped = counts.get(c, [0, 0, 0])
    print(f"    {c}: {ran} ran, {failed} failed, {skipped} skipped" + ("  <- ran no test" if c in empty else ""))
sys.exit(1 if empty else 0)
PY
)"
    rc=$?
    [[ -n "$out" ]] && echo "$out" | tee -a "$SUMMARY"
    if (( rc != 0 )); then record "$name:classes" FAIL "$rc" 0 "a GPU test class ran no test"; FAILED=1; fi
}

# junit_step <step> <limit> <reports-dir> <log> "<GPU test classes>" <command...> -- <launcher options...>
junit_step() {
    local name="$1" limit="$2" reports="$3" logfile="$4" classes="$5"; shift 5
    local cmd=() launcher=()
    while [[ $# -gt 0 && "$1" != -- ]]; do cmd+=("$1"); shift; done
    [[ $# -gt 0 ]] && shift
    launcher=("$@")
    local args=(--disable-banner --disable-ansi-colors --details=tree --include-engine=junit-jupiter
                --include-tag "${JUNIT_TAGS:-gpu}" --reports-dir "$reports" --fail-if-no-tests)
    [[ "${JUNIT_SCAN:-1}" == 1 ]] && args+=(--scan-class-path "$B/test-classes")
    read -r -a user <<< "${JUNIT_ARGS:-}"
    if [[ "${JUNIT_SCAN:-1}" != 1 ]]; then  # explicit selectors: only the GPU classes they name must run tests
        local c picked=""
        for c in $classes; do [[ " ${JUNIT_ARGS:-} " == *" --select-class $c "* ]] && picked+=" $c"; done
        classes="$picked"
    fi
    # shellcheck disable=SC2086
    step "$name" "$limit" "$logfile" "${cmd[@]}" org.junit.platform.console.ConsoleLauncher $JUNIT_EXECUTE \
        "${args[@]}" "${launcher[@]}" "${user[@]}"
    # shellcheck disable=SC2086
    count_tests "$name" "$reports" $classes
}
missing() { record "$1" FAIL - 0 "$2"; FAILED=1; }

# ---- the steps ------------------------------------------------------------------------------------------
if wanted native; then
    if prepare_native; then step native "$TIMEOUT_NATIVE" "$RES/native-check.txt" "$CHECK" check
    else missing native "$NATIVE_WHY"; fi
fi

if wanted junit; then
    if [[ -x "$JAVA" ]]; then
        junit_step junit "$TIMEOUT_JUNIT" "$RES/junit" "$RES/junit.log" "$CORE_CLASSES" \
            "$JAVA" "${JVM[@]}" -cp "$CP:$B/junit/$JUNIT_JAR" -- --exclude-package org.sparse24.torch
    else
        missing junit "no Java runtime at $JAVA"
    fi
fi

if wanted torch; then
    why="$(torch_missing)"
    if [[ ! -x "$JAVA" ]]; then missing torch "no Java runtime at $JAVA"
    elif [[ "$why" == SKIP* ]]; then skip torch "${why#SKIP }"
    elif [[ -n "$why" ]]; then missing torch "${why#FAIL }"
    else
        junit_step torch "$TIMEOUT_TORCH" "$RES/torch-junit" "$RES/torch.log" "$TORCH_CLASSES" \
            "${TORCH_ENV[@]}" "$JAVA" "${JVM[@]}" "${TORCH_JVM[@]}" -cp "$CP:$TORCH_CP:$B/junit/$JUNIT_JAR" \
            -- --include-package org.sparse24.torch
    fi
fi

if wanted bench; then
    if [[ "${BENCH_PRESENT:-0}" != 1 ]]; then skip bench "$BENCH_CLASS is not in the bundle"
    elif [[ ! -x "$JAVA" ]]; then missing bench "no Java runtime at $JAVA"
    else
        read -r -a BENCH <<< "${BENCH_ARGS:-}"
        step bench "$TIMEOUT_BENCH" "$RES/bench.log" "$JAVA" "${JVM[@]}" -cp "$CP" "$BENCH_CLASS" "$RES" "${BENCH[@]}"
    fi
fi

if wanted nativebench; then
    if prepare_native; then
        step nativebench "$TIMEOUT_NATIVEBENCH" "$RES/native-bench.log" "$CHECK" bench "$RES/native-bench.json"
    else missing nativebench "$NATIVE_WHY"; fi
fi

if wanted train; then
    why="$(torch_missing)"
    EXAMPLES_CP="$(IFS=:; shopt -s nullglob; a=("$B"/examples/*.jar "$B"/examples/lib/*.jar); echo "${a[*]}")"
    if [[ "${EXAMPLES_PRESENT:-0}" != 1 ]]; then skip train "the training example is not in the bundle"
    elif [[ ! -x "$JAVA" ]]; then missing train "no Java runtime at $JAVA"
    elif [[ "$why" == SKIP* ]]; then skip train "${why#SKIP }"
    elif [[ -n "$why" ]]; then missing train "${why#FAIL }"
    else
        mkdir -p "$RES/train"
        read -r -a TRAIN <<< "${TRAIN_ARGS:-}"
        # shellcheck disable=SC2016
        step train "$TIMEOUT_TRAIN" "$RES/train.log" bash -c 'cd "$0" && exec "$@"' "$RES/train" \
            "${TORCH_ENV[@]}" "$JAVA" "${JVM[@]}" "${TORCH_JVM[@]}" -cp "$CP:$EXAMPLES_CP:$TORCH_CP" \
            "$TRAIN_CLASS" "${TRAIN[@]}"
    fi
fi

if wanted multigpu; then
    why="$(torch_missing)"
    EXAMPLES_CP="$(IFS=:; shopt -s nullglob; a=("$B"/examples/*.jar "$B"/examples/lib/*.jar); echo "${a[*]}")"
    NGPU="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')"
    if [[ "${EXAMPLES_PRESENT:-0}" != 1 ]]; then skip multigpu "the examples are not in the bundle"
    elif (( NGPU < 2 )); then skip multigpu "$NGPU GPU(s) visible, 2 needed"
    elif [[ "$why" == SKIP* ]]; then skip multigpu "${why#SKIP }"
    elif [[ -n "$why" ]]; then missing multigpu "${why#FAIL }"
    else
        export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
        MCP="$CP:$EXAMPLES_CP:$TORCH_CP"
        step multigpu-check "$TIMEOUT_MULTIGPU" "$RES/multigpu-check.log" \
            "${TORCH_ENV[@]}" "$JAVA" "${JVM[@]}" "${TORCH_JVM[@]}" -cp "$MCP" org.sparse24.examples.MultiGpuCheck
        read -r -a TP <<< "${TP_ARGS:-}"
        step multigpu-tp "$TIMEOUT_MULTIGPU" "$RES/multigpu-tp.log" "${TORCH_ENV[@]}" \
            MAIN=org.sparse24.examples.TensorParallelBench JAVA_OPTS="${JVM[*]} ${TORCH_JVM[*]}" \
            "$B/train-ddp.sh" "$JAVA" "$MCP" 2 "$RES/multigpu-tp" "${TP[@]}"
        read -r -a TRAIN <<< "${TRAIN_ARGS:-}"
        # the run names' GptTrain options (make-bundle.sh copies it with train-ddp.sh)
        # shellcheck source=../../examples/train-runs.sh
        source "$B/train-runs.sh"
        for name in ${DDP_RUNS:-dense sparse-warmup}; do
            if ! train_run_options "$name"; then
                missing "multigpu-ddp-$name" "unknown run (dense, sparse-warmup, sparse)"; continue
            fi
            dir="$RES/multigpu-ddp-$name"
            csv=(); [[ " ${TRAIN[*]} " == *" --csv "* ]] || csv=(--csv "$dir/$name.csv")
            step "multigpu-ddp-$name" "$TIMEOUT_MULTIGPU" "$RES/multigpu-ddp-$name.log" "${TORCH_ENV[@]}" \
                JAVA_OPTS="${JVM[*]} ${TORCH_JVM[*]}" "$B/train-ddp.sh" "$JAVA" "$MCP" 2 "$dir" \
                "${TRAIN[@]}" "${RUN_OPTIONS[@]}" "${csv[@]}"
        done
    fi
fi

echo
if (( FAILED )); then echo "overall FAIL" >> "$SUMMARY"; else echo "overall PASS" >> "$SUMMARY"; fi
log "results in $RES:"
cat "$SUMMARY"
exit "$FAILED"
