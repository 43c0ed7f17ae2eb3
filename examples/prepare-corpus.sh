#!/usr/bin/env bash
# Builds the training corpus of the GPT example: the Java sources of OpenJDK 17 as one flat byte file.
#
#   examples/prepare-corpus.sh [outdir]        (default: .gpu/corpus in the repository root)
#
# Source: Debian's openjdk-17-source package (its lib/src.zip), fetched with `apt-get download`; or the src.zip
# named by SRC_ZIP. Every .java file except jdk.localedata (generated locale tables) is taken, in a fixed
# pseudo-random order (sorted by the SHA-1 of their contents, so the held-out tail is a sample of the whole, not one
# module), with the license comments before the code removed and a "// FILE <path>" line before each file. The bytes are
# cut at MAX_MB and written gzip-compressed:
#   <outdir>/openjdk17-src.bin.gz   the corpus (byte-level tokens: one byte = one token)
#   <outdir>/openjdk17-src.txt      what it is: source, bytes, SHA-256 of the uncompressed bytes
# The trainer keeps the last 1% as the held-out split.
#
# Environment: SRC_ZIP=/path/src.zip   use this instead of downloading;  MAX_MB=160   size cap (uncompressed MB)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/.gpu/corpus}"
MAX_MB="${MAX_MB:-160}"
NAME=openjdk17-src
say() { echo "prepare-corpus: $*"; }
die() { echo "prepare-corpus: ERROR: $*" >&2; exit 1; }
for tool in unzip gzip awk sha1sum sha256sum; do command -v "$tool" >/dev/null || die "$tool is needed"; done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sparse24-corpus.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

if [[ -n "${SRC_ZIP:-}" ]]; then
    ZIP="$SRC_ZIP"
    ORIGIN="$SRC_ZIP"
else
    command -v apt-get >/dev/null || die "no apt-get: set SRC_ZIP to an OpenJDK src.zip"
    (cd "$WORK" && apt-get download openjdk-17-source >/dev/null) || die "apt-get download openjdk-17-source failed"
    DEB="$(ls "$WORK"/openjdk-17-source_*.deb)"
    dpkg-deb -x "$DEB" "$WORK/deb"
    ZIP="$(find "$WORK/deb" -name src.zip | head -n1)"
    ORIGIN="Debian package $(basename "$DEB")"
fi
[[ -f "$ZIP" ]] || die "no src.zip at $ZIP"
say "source: $ORIGIN"

mkdir -p "$WORK/src"
unzip -q "$ZIP" '*.java' -x 'jdk.localedata/*' -d "$WORK/src"
cd "$WORK/src"
# fixed order: by the SHA-1 of the contents (then the path)
find . -name '*.java' -type f -print0 | LC_ALL=C sort -z | xargs -0 sha1sum | LC_ALL=C sort \
    | sed 's|^[0-9a-f]*  \./||' > "$WORK/order.txt"
say "$(wc -l < "$WORK/order.txt") files"

# Each file: "// FILE <path>", then its text without the /* ... */ comments before its first line of code (the
# license headers; a /** javadoc comment stays).
tr '\n' '\0' < "$WORK/order.txt" | xargs -0 awk '
    FNR == 1 { printf "// FILE %s\n", FILENAME; state = 0 }
    state == 1 { if ($0 ~ /\*\//) state = 0; next }
    state == 0 && /^[ \t]*$/ { next }
    state == 0 && /^[ \t]*\/\*([^*]|$)/ { if ($0 !~ /\*\//) state = 1; next }
    { state = 2; print }
' | head -c "$(( MAX_MB * 1000000 ))" > "$WORK/$NAME.bin"

BYTES="$(stat -c %s "$WORK/$NAME.bin")"
SHA="$(sha256sum "$WORK/$NAME.bin" | cut -d' ' -f1)"
gzip -9 -n -c "$WORK/$NAME.bin" > "$OUT/$NAME.bin.gz"
{
    echo "corpus: OpenJDK 17 Java sources (all modules but jdk.localedata), license header comments removed"
    echo "source: $ORIGIN"
    echo "bytes: $BYTES"
    echo "sha256: $SHA"
    echo "held-out: the last 1% of the bytes"
} > "$OUT/$NAME.txt"
say "wrote $OUT/$NAME.bin.gz ($(( $(stat -c %s "$OUT/$NAME.bin.gz") / 1000000 )) MB compressed, $BYTES bytes)"
