#!/usr/bin/env bash
# The consumer check: a user's project that depends only on org.sparse24:sparse24-platform, resolved from the
# release repository folder, compiles the README's Java example verbatim and runs it, with no nvcc and no
# cmake on the PATH. Prints PASS or FAIL (exit status 0 / 1).
#
#   tests/consumer/check.sh RELEASE_REPO_DIR [maven options...]
#
# Its Maven local repository (target/m2) links to the user's (~/.m2/repository, or $SPARSE24_M2) for
# everything but org.sparse24, so sparse24 can only come from RELEASE_REPO_DIR.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
REPO="$(cd "${1:?usage: check.sh RELEASE_REPO_DIR [maven options...]}" && pwd)"
shift
fail() { echo "consumer check: FAIL: $*" >&2; exit 1; }
say() { echo "consumer check: $*"; }
OUT="$HERE/target"
rm -rf "$OUT"
mkdir -p "$OUT/example" "$OUT/m2/org" "$OUT/bin"

# 1. The README's example, verbatim: the first ```java block after "## Java example".
awk '/^## Java example/ { on = 1; next } on && /^```java/ { code = 1; next } code && /^```/ { exit } code { print }' \
    "$ROOT/README.md" > "$OUT/example/source.java"
CLASS="$(sed -n 's/^public class \([A-Za-z0-9_]*\).*/\1/p' "$OUT/example/source.java" | head -n1)"
[[ -n "$CLASS" ]] || fail "no 'public class' in the README's Java example"
mv "$OUT/example/source.java" "$OUT/example/$CLASS.java"
say "README example: $CLASS ($(wc -l < "$OUT/example/$CLASS.java") lines)"

# 2. A PATH without nvcc and cmake: each folder holding one is replaced by a folder of links to the rest.
HIDE=(nvcc cmake ctest cpack)
NEWPATH=()
IFS=: read -r -a DIRS <<< "$PATH"
for d in "${DIRS[@]}"; do
    [[ -d "$d" ]] || continue
    hit=0
    for t in "${HIDE[@]}"; do [[ -e "$d/$t" ]] && hit=1; done
    if (( hit )); then
        shadow="$OUT/bin/$(echo "$d" | tr '/' '_')"
        if [[ ! -d "$shadow" ]]; then
            mkdir -p "$shadow"
            find "$d/" -mindepth 1 -maxdepth 1 ! -name nvcc ! -name cmake ! -name ctest ! -name cpack \
                -exec ln -s -t "$shadow" {} +
        fi
        NEWPATH+=("$shadow")
    else
        NEWPATH+=("$d")
    fi
done
export PATH="$(IFS=:; echo "${NEWPATH[*]}")"
for t in "${HIDE[@]}"; do
    if command -v "$t" >/dev/null; then fail "$t is still on the PATH"; fi
done
say "PATH has no ${HIDE[*]}"

# 3. Maven's local repository: the user's, without org.sparse24.
USER_M2="${SPARSE24_M2:-$HOME/.m2/repository}"
if [[ -d "$USER_M2" ]]; then
    for d in "$USER_M2"/*; do [[ "$(basename "$d")" == org ]] || ln -s "$d" "$OUT/m2/"; done
    for d in "$USER_M2"/org/*; do [[ "$(basename "$d")" == sparse24 ]] || ln -s "$d" "$OUT/m2/org/"; done
fi

# 4. Build and run.
MVN=(mvn -B -q -Dstyle.color=never -f "$HERE/pom.xml" -Dmaven.repo.local="$OUT/m2" -Dsparse24.repo="file://$REPO"
     -Dexample.class="$CLASS" "$@")
"${MVN[@]}" compile exec:java > "$OUT/run.log" 2>&1 || { cat "$OUT/run.log"; fail "the build or the run failed"; }
cat "$OUT/run.log"
grep -q "activation sparsity" "$OUT/run.log" || fail "the example printed no sparsity statistics"
grep -qE "(CPU backend|CUDA device) " "$OUT/run.log" || fail "the example printed no backend"

# 5. sparse24 came from the release folder.
for a in sparse24 sparse24-platform; do
    dir="$(ls -d "$OUT/m2/org/sparse24/$a"/*/ | head -n1)"
    [[ -f "$dir/maven-metadata-sparse24-release.xml" || -n "$(grep -l sparse24-release "$dir"/_remote.repositories 2>/dev/null)" ]] \
        || fail "org.sparse24:$a was not resolved from $REPO"
done
say "resolved from $REPO: $(cd "$OUT/m2" && find org/sparse24 -name '*.jar' -printf '%f (%s bytes) ' | sort)"
"${MVN[@]}" dependency:build-classpath -Dmdep.outputFile="$OUT/classpath.txt" > /dev/null 2>&1 || true
[[ -s "$OUT/classpath.txt" ]] && say "class path: $(tr ':' '\n' < "$OUT/classpath.txt" | xargs -n1 basename | paste -sd' ' -)"
say "PASS"
