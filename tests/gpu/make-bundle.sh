#!/usr/bin/env bash
# Builds the self-contained GPU test bundle: a folder that runs sparse24's @Tag("gpu") tests, the
# benchmark, the native self-check and the training example on a Linux x86-64 GPU host with no Java and
# no network.
#
#   tests/gpu/make-bundle.sh [--no-torch] [outdir]     (default: .gpu/bundle in the repository root)
#
# Layout of the bundle:
#   run.sh                  the entry point on the GPU host (copied from tests/gpu/run.sh)
#   nvidia-libs.py          run.sh asks it where NVIDIA's Python wheels keep their libraries
#   torch-env.sh            how a JVM runs on LibTorch's CUDA build (sourced by run.sh and reliability.sh)
#   reliability.sh          fuzz, NaN, stress, soak and compute-sanitizer steps (tests/gpu/reliability.sh)
#   torch-assemble.sh       puts the LibTorch parts back together on the host (see below)
#   bundle.env              what run.sh needs to know (jar names, GPU test classes, ...)
#   jre/                    a jlink-ed Java runtime with only the modules the jars use
#   lib/                    sparse24-*.jar (classes, linux-x86_64 natives), sparse24-bench-*.jar and the
#                           runtime/test dependencies, without the LibTorch preset's jars (those come as parts)
#   test-classes/           the compiled tests (tests/java) and their resources
#   junit/                  junit-platform-console-standalone-*.jar
#   native/                 s24_native_check (the native self-check, runs first; run.sh takes its
#                           libsparse24.so out of the jar)
#   examples/               the training example's jar and its dependencies, if it was built
#                           (examples/target/sparse24-examples-*.jar)
#
# LibTorch (the torch GPU tests and the example need its CUDA build, ~460 MB) does not fit the bundle: unless
# --no-torch is given, tests/gpu/torch-parts.sh cuts it into parts of at most 60 MB in .gpu/torch-parts/
# (once; it takes minutes), to be uploaded to the host next to the bundle and joined there by
# torch-assemble.sh. The jars are found by globbing target/ and */target/ (one module or several).
#
# Environment:
#   SKIP_BUILD=1            reuse library/target and bench/target (jars, test-classes) instead of running Maven
#   BUNDLE_JDK=/path        the JDK whose jlink makes jre/ (default: $JAVA_HOME if it is a JDK 17 with
#                           jmods, else /usr/lib/jvm/*17*); Maven runs with it too
#   MVN="mvn ..."           the Maven command (default: mvn -B -q -Dstyle.color=never)
#   MVN_ARGS="..."          extra arguments for the Maven package run (e.g. -Dsparse24.skipNative)
#   BUNDLE_MAX_MB=50        fail when the bundle is larger
#   BUNDLE_STRIP=1          strip the symbol tables of the runtime's shared libraries (0: keep them)
#   BUNDLE_EXTRA_MODULES=   more JDK modules for jre/, comma-separated
#   BUNDLE_MAX_JAR_MB=20    dependency jars larger than this are left out, with a warning (platform
#                           jars of big optional presets such as pytorch/cuda would not fit anyway)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/gpu"
TORCH=1
if [[ "${1:-}" == --no-torch ]]; then TORCH=0; shift; fi
OUT="${1:-$ROOT/.gpu/bundle}"
MAX_MB="${BUNDLE_MAX_MB:-50}"
MAX_JAR_MB="${BUNDLE_MAX_JAR_MB:-20}"
NATIVE="$ROOT/cppbuild/linux-x86_64"

say() { echo "make-bundle: $*"; }
die() { echo "make-bundle: ERROR: $*" >&2; exit 1; }

# ---- the JDK --------------------------------------------------------------------------------------------
jdk_major() { # prints the feature version of the JDK at $1
    local v
    v="$("$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    echo "${v%%.*}"
}
pick_jdk() {
    if [[ -n "${BUNDLE_JDK:-}" ]]; then echo "$BUNDLE_JDK"; return; fi
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/jlink" && -d "$JAVA_HOME/jmods" \
          && "$(jdk_major "$JAVA_HOME")" == 17 ]]; then
        echo "$JAVA_HOME"; return
    fi
    local j
    for j in /usr/lib/jvm/*17* /usr/lib/jvm/*; do
        if [[ -x "$j/bin/jlink" && -d "$j/jmods" && "$(jdk_major "$j")" == 17 ]]; then echo "$j"; return; fi
    done
    [[ -n "${JAVA_HOME:-}" ]] && { echo "$JAVA_HOME"; return; }
    dirname "$(dirname "$(readlink -f "$(command -v jlink)")")"
}
JDK="$(pick_jdk)"
[[ -x "$JDK/bin/jlink" && -x "$JDK/bin/jdeps" ]] || die "no JDK with jlink/jdeps found (set BUNDLE_JDK)"
JDK_MAJOR="$(jdk_major "$JDK")"
(( JDK_MAJOR >= 17 )) || die "$JDK is Java $JDK_MAJOR; the classes are Java 17 bytecode, use a JDK >= 17"
export JAVA_HOME="$JDK"
export PATH="$JDK/bin:$PATH"
say "JDK $JDK (Java $JDK_MAJOR)"

read -r -a MVN_CMD <<< "${MVN:-mvn -B -q -Dstyle.color=never}"
read -r -a EXTRA <<< "${MVN_ARGS:-}"
cd "$ROOT"

# ---- Maven build ----------------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    say "building: ${MVN_CMD[*]} -DskipTests ${EXTRA[*]} package"
    "${MVN_CMD[@]}" -DskipTests "${EXTRA[@]}" package || die "the Maven build failed"
else
    say "SKIP_BUILD=1: reusing library/target and bench/target"
fi

# The jars of the reactor: sparse24 (classes), its linux-x86_64 natives jar (APP_JAR: run.sh takes
# libsparse24.so out of it) and sparse24-bench.
JARS=()
APP_JAR=""
for j in library/target/sparse24-*.jar bench/target/sparse24-bench-*.jar; do
    case "$j" in *-sources.jar|*-javadoc.jar|*-tests.jar|*-test-sources.jar) continue ;; esac
    [[ -f "$j" ]] || continue
    JARS+=("$j")
    case "$j" in *-linux-x86_64.jar) APP_JAR="$j" ;; esac
done
[[ -n "$APP_JAR" ]] || die "no library/target/sparse24-*-linux-x86_64.jar (run without SKIP_BUILD=1, or fix the build)"
[[ -d library/target/test-classes ]] || die "no library/target/test-classes (the tests were not compiled)"

# ---- the bundle folder ----------------------------------------------------------------------------------
case "$OUT" in /|"$ROOT"|"$HOME") die "refusing to use $OUT as the bundle folder" ;; esac
rm -rf "$OUT"
mkdir -p "$OUT"/{lib,junit,native,test-classes}
OUT="$(cd "$OUT" && pwd)"

cp "${JARS[@]}" "$OUT/lib/"
cp -r library/target/test-classes/. "$OUT/test-classes/"
say "jars $(for j in "${JARS[@]}"; do basename "$j"; done | paste -sd' ' -), $(find "$OUT/test-classes" -name '*.class' | wc -l) test class files"
APP_JAR="$(basename "$APP_JAR")"

# The classes that hold @Tag("gpu") tests (run.sh fails a class that ran none), from the test sources.
GPU_TEST_CLASSES="$( { grep -rl --include='*.java' '@Tag("gpu")' tests/java 2>/dev/null || true; } \
    | while read -r f; do
        pkg="$(sed -n 's/^package \([a-zA-Z0-9_.]*\);.*/\1/p' "$f" | head -n1)"
        c="$(basename "$f" .java)"
        if [[ -f "$OUT/test-classes/${pkg//.//}/$c.class" ]]; then echo "${pkg:+$pkg.}$c"; fi
    done | sort -u | paste -sd' ' -)"
say "GPU test classes: $GPU_TEST_CLASSES"

# Dependencies (compile + runtime + test scope). JUnit's own jars come with the console launcher, so
# they are dropped once their version has told which launcher to fetch.
say "copying the dependencies"
# The LibTorch preset's jars stay out: its CPU natives are of no use there, its CUDA build comes as parts.
"${MVN_CMD[@]}" -pl library dependency:copy-dependencies -DincludeScope=test -DoutputDirectory="$OUT/lib" \
    -DexcludeArtifactIds=pytorch,openblas,cuda \
    -Dmdep.useBaseVersion=true -Dsilent=true "${EXTRA[@]}" || die "dependency:copy-dependencies failed"
JUNIT_PLATFORM_VERSION="${JUNIT_PLATFORM_VERSION:-}"
if [[ -z "$JUNIT_PLATFORM_VERSION" ]]; then
    for j in "$OUT"/lib/junit-platform-engine-*.jar "$OUT"/lib/junit-platform-commons-*.jar; do
        [[ -f "$j" ]] || continue
        JUNIT_PLATFORM_VERSION="$(basename "$j" .jar)"; JUNIT_PLATFORM_VERSION="${JUNIT_PLATFORM_VERSION##*-}"; break
    done
fi
if [[ -z "$JUNIT_PLATFORM_VERSION" ]]; then  # no platform jar: derive it from junit-jupiter-api's version
    for j in "$OUT"/lib/junit-jupiter-api-*.jar; do
        [[ -f "$j" ]] || continue
        v="$(basename "$j" .jar)"; v="${v##*-}"
        case "$v" in
            5.*) JUNIT_PLATFORM_VERSION="1.${v#5.}" ;;   # JUnit 5.x.y <-> platform 1.x.y
            *)   JUNIT_PLATFORM_VERSION="$v" ;;          # from JUnit 6 on, the versions are the same
        esac
    done
fi
[[ -n "$JUNIT_PLATFORM_VERSION" ]] || die "cannot tell the JUnit platform version (no JUnit in the test dependencies? set JUNIT_PLATFORM_VERSION)"
rm -f "$OUT"/lib/junit-jupiter*.jar "$OUT"/lib/junit-platform-*.jar "$OUT"/lib/junit-vintage-*.jar \
      "$OUT"/lib/opentest4j-*.jar "$OUT"/lib/apiguardian-api-*.jar
for j in "$OUT"/lib/*.jar; do
    case "$(basename "$j")" in sparse24-*) continue ;; esac
    mb=$(( $(stat -c %s "$j") / 1048576 ))
    if (( mb > MAX_JAR_MB )); then
        say "WARNING: leaving out $(basename "$j") (${mb} MB > BUNDLE_MAX_JAR_MB=${MAX_JAR_MB}); tests needing it will fail"
        rm -f "$j"
    fi
done

say "JUnit Platform Console Standalone $JUNIT_PLATFORM_VERSION"
"${MVN_CMD[@]}" dependency:copy \
    -Dartifact="org.junit.platform:junit-platform-console-standalone:$JUNIT_PLATFORM_VERSION" \
    -DoutputDirectory="$OUT/junit" -Dsilent=true || die "could not fetch junit-platform-console-standalone"
JUNIT_JAR="$(cd "$OUT/junit" && ls junit-platform-console-standalone-*.jar | head -n1)"
# The 'execute' sub-command exists from platform 1.10 on; older launchers take the options directly.
JUNIT_MINOR="${JUNIT_PLATFORM_VERSION#*.}"; JUNIT_MINOR="${JUNIT_MINOR%%.*}"
if [[ "${JUNIT_PLATFORM_VERSION%%.*}" != 1 ]] || (( JUNIT_MINOR >= 10 )); then JUNIT_EXECUTE=execute; else JUNIT_EXECUTE=""; fi

# ---- the native self-check ------------------------------------------------------------------------------
# Only the program: run.sh takes libsparse24.so out of the jar (with the runtime's `jar` tool), so the
# library's several megabytes of GPU code are carried once.
NATIVE_LIB_IN_JAR="$("$JDK/bin/jar" tf "$OUT/lib/$APP_JAR" | grep -E '(^|/)linux-x86_64/libsparse24\.so[.0-9]*$' | head -n1 || true)"
[[ -n "$NATIVE_LIB_IN_JAR" ]] || say "WARNING: $APP_JAR holds no linux-x86_64/libsparse24.so"
if [[ -x "$NATIVE/bin/s24_native_check" ]]; then
    cp "$NATIVE/bin/s24_native_check" "$OUT/native/"
    say "native self-check from $NATIVE/bin, its library from the jar ($NATIVE_LIB_IN_JAR)"
else
    say "WARNING: $NATIVE/bin/s24_native_check not built; the bundle's native steps will fail"
fi

# ---- the benchmark --------------------------------------------------------------------------------------
BENCH_CLASS=org.sparse24.bench.FfnBenchmark
BENCH_PRESENT=0
if [[ -f "$OUT/test-classes/${BENCH_CLASS//.//}.class" ]]; then
    BENCH_PRESENT=1
else
    for j in "$OUT"/lib/*.jar; do
        if "$JDK/bin/jar" tf "$j" | grep -qx "${BENCH_CLASS//.//}.class"; then BENCH_PRESENT=1; break; fi
    done
fi
say "benchmark class $BENCH_CLASS: $([[ $BENCH_PRESENT == 1 ]] && echo present || echo 'not found (the bench step will be skipped)')"

# ---- the training example (another module; run.sh's train step) -----------------------------------------
TRAIN_CLASS=org.sparse24.examples.GptTrain
EXAMPLES_PRESENT=0
shopt -s nullglob
EXAMPLES_JARS=(examples/target/sparse24-examples-*.jar)
shopt -u nullglob
if (( ${#EXAMPLES_JARS[@]} > 0 )); then
    mkdir -p "$OUT/examples/lib"
    cp "${EXAMPLES_JARS[@]}" "$OUT/examples/"
    # its own dependencies; sparse24 and the JavaCPP presets are in lib/ and the LibTorch parts
    # (XChart and its PDF/SVG jars stay out: the report mode runs on a JDK machine, and java.desktop would
    # double the runtime's size)
    "${MVN_CMD[@]}" -f examples/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
        -DexcludeGroupIds=org.bytedeco,org.sparse24,org.knowm.xchart,de.erichseifert.vectorgraphics2d,com.madgag,de.rototor.pdfbox,org.apache.pdfbox,commons-logging \
        -DoutputDirectory="$OUT/examples/lib" \
        -Dmdep.useBaseVersion=true -Dsilent=true "${EXTRA[@]}" \
        || die "dependency:copy-dependencies of examples/ failed"
    cp examples/train-ddp.sh examples/train-runs.sh "$OUT/"
    EXAMPLES_PRESENT=1
    say "training example: $(cd "$OUT/examples" && ls ./*.jar lib/ | paste -sd' ' -)"
else
    say "no examples/target/sparse24-examples-*.jar: the train step will be skipped"
fi

# ---- LibTorch's CUDA build, as parts beside the bundle ------------------------------------------------------
TORCH_PARTS=0
if (( TORCH )); then
    cp "$HERE/torch-assemble.sh" "$OUT/"
    chmod +x "$OUT/torch-assemble.sh"
    MVN="${MVN_CMD[*]}" "$HERE/torch-parts.sh" "$ROOT/.gpu/torch-parts" || die "torch-parts.sh failed"
    TORCH_PARTS="$(cd "$ROOT/.gpu/torch-parts" && ls part-* | wc -l)"
else
    say "--no-torch: no LibTorch parts; the torch and train steps will be skipped"
fi

# ---- the Java runtime -----------------------------------------------------------------------------------
module_deps() { # the JDK modules that the given jars/folders use, comma-separated
    # (jdeps prints warnings, e.g. on split packages, to stdout: keep the line that lists the modules)
    "$JDK/bin/jdeps" --ignore-missing-deps --print-module-deps --multi-release 17 "$@" 2>/dev/null \
        | grep -E '^[a-z][a-z0-9.]*(,[a-z][a-z0-9.]*)*$' | tail -n1 || true
}
shopt -s nullglob
# (the examples jar is left out: only its report mode, not run there, uses java.desktop)
DEPS_APP="$(module_deps "$OUT"/lib/*.jar "$OUT/test-classes" "$OUT"/examples/lib/*.jar)"
shopt -u nullglob
# The console launcher's java.sql use is univocity's JDBC ResultSet routines (shaded into the params
# module, never used by @CsvSource): not worth its megabyte.
DEPS_JUNIT="$(module_deps "$OUT/junit/$JUNIT_JAR" | tr ',' '\n' | grep -vx 'java.sql' | paste -sd, - || true)"
[[ -n "$DEPS_APP" ]] || say "WARNING: jdeps found nothing for the jars; using the base set"
# JavaCPP needs jdk.unsupported (sun.misc.Unsafe); the console launcher's XML reports need java.xml;
# JUnit logs through java.logging; jdk.jartool gives run.sh the `jar` tool (to take libsparse24.so out
# of the jar for the native self-check). java.management etc. only where jdeps finds them used.
MODULES="$(echo "$DEPS_APP,$DEPS_JUNIT,java.base,jdk.unsupported,java.xml,java.logging,jdk.jartool${BUNDLE_EXTRA_MODULES:+,$BUNDLE_EXTRA_MODULES}" \
           | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
say "jlink modules: $MODULES"
if (( JDK_MAJOR >= 21 )); then COMPRESS=zip-6; else COMPRESS=2; fi
"$JDK/bin/jlink" --add-modules "$MODULES" --output "$OUT/jre" \
    --strip-debug --no-header-files --no-man-pages --compress="$COMPRESS" \
    || die "jlink failed"
# The JDK's shared libraries keep their symbol tables (libjvm.so alone carries ~3 MB of them); they
# only name functions in crash logs. BUNDLE_STRIP=0 keeps them.
if [[ "${BUNDLE_STRIP:-1}" == 1 ]] && command -v strip >/dev/null; then
    find "$OUT/jre" -name '*.so' -type f -exec strip --strip-unneeded {} +
fi
"$OUT/jre/bin/java" -version >/dev/null 2>&1 || die "the jlink-ed runtime does not start"

# ---- run.sh and its settings ----------------------------------------------------------------------------
cp "$HERE/run.sh" "$OUT/run.sh"
cp "$HERE/nvidia-libs.py" "$OUT/nvidia-libs.py"
cp "$HERE/reliability.sh" "$OUT/reliability.sh"
cp "$HERE/torch-env.sh" "$OUT/torch-env.sh"
chmod +x "$OUT/run.sh"
cp "$HERE/README.md" "$OUT/README.md" 2>/dev/null || true
[[ -d "$OUT/examples" ]] || mkdir -p "$OUT/examples" # (empty: run.sh's train step skips)
{
    echo "# written by tests/gpu/make-bundle.sh; read by run.sh"
    echo "BUNDLE_CREATED='$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
    echo "BUNDLE_GIT='$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo none)'"
    echo "APP_JAR='$(basename "$APP_JAR")'"
    echo "JUNIT_JAR='$JUNIT_JAR'"
    echo "JUNIT_EXECUTE='$JUNIT_EXECUTE'"
    echo "BENCH_CLASS='$BENCH_CLASS'"
    echo "BENCH_PRESENT=$BENCH_PRESENT"
    echo "GPU_TEST_CLASSES='$GPU_TEST_CLASSES'"
    echo "TORCH_PARTS=$TORCH_PARTS"
    echo "TRAIN_CLASS='$TRAIN_CLASS'"
    echo "EXAMPLES_PRESENT=$EXAMPLES_PRESENT"
    echo "JRE_MODULES='$MODULES'"
    echo "NATIVE_LIB_IN_JAR='$NATIVE_LIB_IN_JAR'"
    echo "JRE_VERSION='$("$OUT/jre/bin/java" -version 2>&1 | head -n1 | tr -d "'")'"
} > "$OUT/bundle.env"

# ---- size -----------------------------------------------------------------------------------------------
SIZE_MB="$(du -sm "$OUT" | cut -f1)"
say "bundle $OUT: ${SIZE_MB} MB (jre $(du -sm "$OUT/jre" | cut -f1) MB, lib $(du -sm "$OUT/lib" | cut -f1) MB," \
    "junit $(du -sm "$OUT/junit" | cut -f1) MB, native $(du -sm "$OUT/native" | cut -f1) MB)"
(( SIZE_MB <= MAX_MB )) || die "the bundle is ${SIZE_MB} MB, over the limit of ${MAX_MB} MB"
if (( TORCH_PARTS > 0 )); then
    say "LibTorch: $TORCH_PARTS parts, $(du -cb "$ROOT"/.gpu/torch-parts/part-* | tail -n1 | cut -f1) bytes, in $ROOT/.gpu/torch-parts"
    say "done: copy the parts to <parts-dir> on the GPU host, then run there:"
    say "  $(basename "$OUT")/torch-assemble.sh <parts-dir> && $(basename "$OUT")/run.sh <results-dir>"
else
    say "done: copy $OUT to the GPU host and run: $(basename "$OUT")/run.sh <results-dir>"
fi
