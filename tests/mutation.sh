#!/usr/bin/env bash
# Mutation check: do the tests catch deliberate bugs? Copies the project (tracked and untracked, not ignored
# files) to a scratch directory, then for each mutant: applies one bug there, rebuilds what it touches, runs
# the tests that should catch it, reports the tests that fail where the unmutated copy passes, and restores
# the file. The project itself is never modified.
#
# The scratch native library is built CPU-only with g++ (src/*.cpp, src/cpu/*.cpp, and a stand-in for the
# CUDA backend that reports it unavailable), so no nvcc and no GPU are needed: the mutants are judged by the
# CPU suite (Java tests on the CPU backend, s24_cpu_backend_test, s24_native_check check --cpu-only).
#
# Usage: tests/mutation.sh [mutant...]     (default: all; names as in the table below). Given the directory
# of an earlier run, it reuses that run's copy and baseline.
# Needs: g++, Maven with the project's dependencies cached (runs offline), python3. Takes ~40 minutes on
# 2 busy cores for all mutants. SPARSE24_MUTATION_DIR chooses the scratch directory (default: a new temp dir).
# Exit status: 0 if every mutant was caught, 1 otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${SPARSE24_MUTATION_DIR:-$(mktemp -d /tmp/sparse24-mutation.XXXXXX)}"
S="$WORK/project"
LOG="$WORK/logs"

# name | file | text | replacement | Java test classes that should catch it
MUTANTS=(
"round8|src-native/src/ffn.cpp|k = (k + 7) / 8 * 8;|k = (k + 8) / 8 * 8;|CpuFfnTest"
"fraction|src-native/src/ffn.cpp|(double)fraction * (double)features - (double)features * 1e-7|(double)fraction * (double)features|CpuFfnTest"
"tiebreak|src-native/src/shared.h|a == b) return ia < ib;|a == b) return ia > ib;|CpuOpsTest,CpuFfnTest"
"dh-factor2|src-native/src/cpu/cpu_backend.cpp|load(dy, dtype, dy_index) * 2.f * std::sqrt|load(dy, dtype, dy_index) * std::sqrt|CpuFfnTest,SplitBackwardTest"
"no-permutation|src-native/src/ffn.cpp|SplitBuffers b{split && f.options.permute_tokens ? (int32_t*)(scratch + plan.perm) : nullptr,|SplitBuffers b{nullptr,|CpuFfnTest"
"dw1-transposed|src-native/src/ffn.cpp|if (dw1) split_weight_grad(f, s, dh, x, b, false,|if (dw1) split_weight_grad(f, s, dh, x, b, true,|CpuFfnTest"
"ignore-permuteTokens|src-java/org/sparse24/SparseFfnOptions.java|o.permute_tokens(permuteTokens ? 1 : 0);|o.permute_tokens(1);|CpuFfnTest,OptionsTest"
)

say() { printf '%s\n' "$*" | tee -a "$LOG/summary.txt"; }

copy_project() {
    mkdir -p "$S" "$LOG"
    (cd "$ROOT" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$S"
    mkdir -p "$S/cppbuild/linux-x86_64/"{include,lib,bin} "$WORK/obj" "$WORK/bin"
    cp "$S/src-native/include/sparse24.h" "$S/cppbuild/linux-x86_64/include/"
    cat > "$WORK/obj/no_cuda.cpp" <<'EOF'
#include "backend.h"
namespace s24 {
std::unique_ptr<Backend> create_cuda_backend(int) {
    fail(S24_ERROR_BACKEND_UNAVAILABLE, "this mutation-test build has no CUDA backend");
}
}  // namespace s24
EOF
}

# Compiles each source whose object is older than it or than any header; links the library and the two
# native test programs. The mvn run gets a no-op in place of s24_cpu_backend_test (run here instead), so a
# failing native test cannot stop Maven before the Java tests run.
build_native() {
    local n="$S/src-native" objs=() src obj
    for src in "$n"/src/*.cpp "$n"/src/cpu/*.cpp "$WORK/obj/no_cuda.cpp"; do
        obj="$WORK/obj/$(basename "${src%.cpp}").o"
        if [[ ! -f "$obj" || "$src" -nt "$obj" || -n "$(find "$n/src" "$n/include" -name '*.h' -newer "$obj")" ]]; then
            g++ -std=c++17 -O2 -fPIC -I"$n/include" -I"$n/src" -c "$src" -o "$obj"
        fi
        objs+=("$obj")
    done
    local out="$S/cppbuild/linux-x86_64"
    g++ -shared -o "$out/lib/libsparse24.so" "${objs[@]}" -Wl,--version-script="$n/exports.map" -lpthread -ldl
    g++ -std=c++17 -O2 -I"$n/include" -I"$n/src" "$n/tests/cpu_backend_test.cpp" "$n/src/cpu/cpu_backend.cpp" \
        -lpthread -o "$WORK/bin/s24_cpu_backend_test"
    g++ -std=c++17 -O1 -I"$n/include" "$n"/tests/native_*.cpp -L"$out/lib" -lsparse24 -Wl,-rpath,"$out/lib" \
        -lpthread -o "$WORK/bin/s24_native_check"
    ln -sf /bin/true "$out/bin/s24_cpu_backend_test"
}

# run_tests <tag> <classes>: writes $LOG/<tag>.failed, one failing test or native check per line
run_tests() {
    local tag="$1" classes="$2" failed="$LOG/$1.failed"
    : > "$failed"
    "$WORK/bin/s24_cpu_backend_test" > "$LOG/$tag.cpu_backend_test.txt" 2>&1 || echo "native: s24_cpu_backend_test" >> "$failed"
    "$WORK/bin/s24_native_check" check --cpu-only > "$LOG/$tag.native_check.txt" 2>&1 || true
    grep '^FAIL' "$LOG/$tag.native_check.txt" | sed 's/^FAIL  \(.*\)  .*$/native: s24_native_check: \1/' >> "$failed" || true
    rm -rf "$S"/*/target/surefire-reports  # the reactor's modules (library, examples, ...)
    (cd "$S" && mvn -B -q -o -Dsparse24.skipNative -Dmaven.test.failure.ignore=true -Dsurefire.failIfNoSpecifiedTests=false \
        test -Dtest="$classes") > "$LOG/$tag.mvn.txt" 2>&1 || echo "build: mvn failed (see $LOG/$tag.mvn.txt)" >> "$failed"
    python3 - "$S" >> "$failed" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
for f in sorted(glob.glob(sys.argv[1] + "/*/target/surefire-reports/TEST-*.xml")):
    for case in ET.parse(f).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            print("java: %s.%s" % (case.get("classname").rsplit(".", 1)[-1], case.get("name")))
PY
}

if [[ -f "$LOG/baseline.failed" && -d "$S" ]]; then  # an earlier run's scratch copy and baseline
    say "mutation check of $ROOT in $WORK (reusing its copy and baseline)"
else
    copy_project
    say "mutation check of $ROOT in $WORK"
    build_native
    ALL_CLASSES="$(printf '%s\n' "${MUTANTS[@]}" | cut -d'|' -f5 | tr ',' '\n' | sort -u | paste -sd, -)"
    run_tests baseline "$ALL_CLASSES"
    say "baseline ($ALL_CLASSES): $(wc -l < "$LOG/baseline.failed") failing (not counted against mutants)"
fi

survivors=0
for m in "${MUTANTS[@]}"; do
    IFS='|' read -r name file text replacement classes <<< "$m"
    [[ $# -gt 0 && ! " $* " =~ " $name " ]] && continue
    cp "$S/$file" "$WORK/original"
    python3 - "$S/$file" "$text" "$replacement" <<'PY'
import sys
path, old, new = sys.argv[1:]
s = open(path).read()
if s.count(old) != 1:
    sys.exit("mutant text found %d times in %s (expected once): the code changed; update tests/mutation.sh" % (s.count(old), path))
open(path, "w").write(s.replace(old, new))
PY
    [[ $file == src-native/* ]] && build_native
    run_tests "$name" "$classes"
    cp "$WORK/original" "$S/$file"
    touch "$S/$file"
    [[ $file == src-native/* ]] && build_native
    caught="$(grep -vxFf "$LOG/baseline.failed" "$LOG/$name.failed" || true)"
    if [[ -n "$caught" ]]; then
        say "CAUGHT   $name ($file): $(wc -l <<< "$caught") failing tests/checks, by:"
        # one line per test method (parameterized cases counted), then the native checks
        # (awk, not head: head would close the pipe early, and pipefail would end the script)
        sed -e 's/\[[0-9]*\]$//' -e 's/(.*)//' -e 's/^\(native: s24_native_check: [a-z]* [a-z0-9_/]*\) .*/\1/' \
            <<< "$caught" | sort | uniq -c | sort -rn | sed 's/^/           /' | awk 'NR <= 12' | tee -a "$LOG/summary.txt"
    else
        say "SURVIVED $name ($file): no test failed beyond the baseline"
        survivors=$((survivors + 1))
    fi
done
say "$survivors mutant(s) survived; logs in $LOG"
(( survivors == 0 ))
