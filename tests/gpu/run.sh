#!/usr/bin/env bash
# sparse24 GPU test bundle: runs on a Linux x86-64 GPU host with no Java installed.
#
#   ./run.sh <results-dir>
#
# Steps, in this order (select with STEPS, default all):
#   native       s24_native_check check        -> native-check.txt
#   junit        the @Tag("gpu") JUnit tests   -> junit/ (XML reports), junit.log
#   bench        org.sparse24.bench.FfnBenchmark <results-dir>   (skipped if not in the bundle) -> bench.log
#   nativebench  s24_native_check bench <results-dir>/native-bench.json -> native-bench.log
# Every step runs under `timeout`, and a failing step does not stop the others. The results folder
# gets summary.txt (one line a step: name, PASS/FAIL/TIMEOUT/SKIPPED, exit status, seconds, then
# "overall PASS|FAIL"). The exit status is 0 only if no step failed.
#
# Environment:
#   STEPS="native,junit,bench,nativebench"     the steps to run
#   TIMEOUT_NATIVE=300 TIMEOUT_JUNIT=300 TIMEOUT_BENCH=400 TIMEOUT_NATIVEBENCH=300   (seconds)
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

STEPS="${STEPS:-native,junit,bench,nativebench}"
TIMEOUT_NATIVE="${TIMEOUT_NATIVE:-300}"
TIMEOUT_JUNIT="${TIMEOUT_JUNIT:-300}"
TIMEOUT_BENCH="${TIMEOUT_BENCH:-400}"
TIMEOUT_NATIVEBENCH="${TIMEOUT_NATIVEBENCH:-300}"
SUMMARY="$RES/summary.txt"
JAVA="$B/jre/bin/java"

log() { echo "run.sh: $*"; }

# ---- cuSPARSELt / cuBLASLt ------------------------------------------------------------------------------
# The native library searches the usual places itself; exporting the directories makes the choice
# explicit and visible in the summary. LD_LIBRARY_PATH is the fallback for anything else they need.
if [[ -z "${SPARSE24_CUSPARSELT_PATH:-}" || -z "${SPARSE24_CUBLASLT_PATH:-}" ]]; then
    PY="${PYTHON:-$(command -v python3 || command -v python || true)}"
    if [[ -n "$PY" ]]; then
        FOUND="$("$PY" - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = []
try:
    import nvidia  # namespace package of NVIDIA's pip wheels
    roots += list(nvidia.__path__)
except Exception:
    pass
try:
    sites = site.getsitepackages() + [site.getusersitepackages()]
except Exception:
    sites = []
roots += [os.path.join(p, "nvidia") for p in sites + sys.path if p]
def find(subdirs, pattern):
    for r in roots:
        for s in subdirs:
            d = os.path.join(r, s)
            if glob.glob(os.path.join(d, pattern)):
                return os.path.realpath(d)
    return ""
print("CUSPARSELT=" + find(["cusparselt/lib"], "libcusparseLt.so.0*"))
print("CUBLASLT=" + find(["cu13/lib", "cublas/lib"], "libcublasLt.so.13*"))
PY
)"
        d="$(sed -n 's/^CUSPARSELT=//p' <<< "$FOUND")"
        [[ -z "${SPARSE24_CUSPARSELT_PATH:-}" && -n "$d" ]] && export SPARSE24_CUSPARSELT_PATH="$d"
        d="$(sed -n 's/^CUBLASLT=//p' <<< "$FOUND")"
        [[ -z "${SPARSE24_CUBLASLT_PATH:-}" && -n "$d" ]] && export SPARSE24_CUBLASLT_PATH="$d"
    else
        log "no python3: leaving the search for cuSPARSELt/cuBLASLt to the native library"
    fi
fi
for v in SPARSE24_CUSPARSELT_PATH SPARSE24_CUBLASLT_PATH; do
    p="${!v:-}"
    [[ -z "$p" ]] && continue
    [[ -d "$p" ]] || p="$(dirname "$p")"
    case ":${LD_LIBRARY_PATH:-}:" in *":$p:"*) ;; *) LD_LIBRARY_PATH="$p${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
done
export LD_LIBRARY_PATH

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
missing() { record "$1" FAIL - 0 "$2"; FAILED=1; }

# ---- the steps ------------------------------------------------------------------------------------------
if wanted native; then
    if prepare_native; then step native "$TIMEOUT_NATIVE" "$RES/native-check.txt" "$CHECK" check
    else missing native "$NATIVE_WHY"; fi
fi

if wanted junit; then
    if [[ -x "$JAVA" ]]; then
        JUNIT=(--disable-banner --disable-ansi-colors --details=tree --include-engine=junit-jupiter --include-tag "${JUNIT_TAGS:-gpu}"
               --reports-dir "$RES/junit" --fail-if-no-tests)
        [[ "${JUNIT_SCAN:-1}" == 1 ]] && JUNIT+=(--scan-class-path "$B/test-classes")
        read -r -a USER_JUNIT <<< "${JUNIT_ARGS:-}"
        # shellcheck disable=SC2086
        step junit "$TIMEOUT_JUNIT" "$RES/junit.log" "$JAVA" "${JVM[@]}" -cp "$CP:$B/junit/$JUNIT_JAR" \
            org.junit.platform.console.ConsoleLauncher $JUNIT_EXECUTE "${JUNIT[@]}" "${USER_JUNIT[@]}"
    else
        missing junit "no Java runtime at $JAVA"
    fi
fi

if wanted bench; then
    if [[ "${BENCH_PRESENT:-0}" != 1 ]]; then skip bench "$BENCH_CLASS is not in the bundle"
    elif [[ ! -x "$JAVA" ]]; then missing bench "no Java runtime at $JAVA"
    else step bench "$TIMEOUT_BENCH" "$RES/bench.log" "$JAVA" "${JVM[@]}" -cp "$CP" "$BENCH_CLASS" "$RES"; fi
fi

if wanted nativebench; then
    if prepare_native; then
        step nativebench "$TIMEOUT_NATIVEBENCH" "$RES/native-bench.log" "$CHECK" bench "$RES/native-bench.json"
    else missing nativebench "$NATIVE_WHY"; fi
fi

echo
if (( FAILED )); then echo "overall FAIL" >> "$SUMMARY"; else echo "overall PASS" >> "$SUMMARY"; fi
log "results in $RES:"
cat "$SUMMARY"
exit "$FAILED"
