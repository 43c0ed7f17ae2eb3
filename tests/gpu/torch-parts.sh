#!/usr/bin/env bash
# Cuts LibTorch's CUDA build (JavaCPP's pytorch preset) into parts small enough to upload one at a time to a
# GPU host that has no network: the preset's linux-x86_64-gpu natives jar and the class jars the torch tests
# need (pytorch, cuda, cuda-linux-x86_64, openblas, openblas-linux-x86_64), as one tar split into files of at
# most TORCH_PART_BYTES. On the host, torch-assemble.sh puts them back together.
#
# Not compressed again: the jars are deflated already; xz -6 of the unpacked natives would save about two of
# the nine parts but takes about an hour of a busy two-core machine (zstd -19 as long; GPU hosts rarely have
# zstd).
#
#   tests/gpu/torch-parts.sh [outdir]        (default: .gpu/torch-parts in the repository root)
#
# The parts are named part-NN-of-MM (the count in every name, so a missing one is seen at once). They are
# rebuilt only when the input jars or the settings change (outdir/inputs.txt records them).
#
# Environment:
#   PYTORCH_VERSION, CUDA_VERSION, OPENBLAS_VERSION   the preset versions (default: those of the project's
#                            test class path, from `mvn dependency:copy-dependencies`)
#   TORCH_PART_BYTES=60000000   the largest part
#   MVN="mvn ..."            the Maven command (default: mvn -B -q -Dstyle.color=never)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/.gpu/torch-parts}"
PART_BYTES="${TORCH_PART_BYTES:-60000000}"
read -r -a MVN_CMD <<< "${MVN:-mvn -B -q -Dstyle.color=never}"

say() { echo "torch-parts: $*"; }
die() { echo "torch-parts: ERROR: $*" >&2; exit 1; }

case "$OUT" in /|"$ROOT"|"$HOME") die "refusing to use $OUT" ;; esac
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/torch-parts.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"

# ---- the preset versions: those the project's tests compile against -------------------------------------
version_of() { # <artifactId>: the version of that org.bytedeco jar in $WORK/deps
    local j
    for j in "$WORK"/deps/"$1"-[0-9]*.jar; do
        [[ -f "$j" ]] || continue
        j="$(basename "$j" .jar)"; j="${j#"$1"-}"
        echo "${j%-linux-x86_64*}"; return
    done
}
if [[ -z "${PYTORCH_VERSION:-}" || -z "${CUDA_VERSION:-}" || -z "${OPENBLAS_VERSION:-}" ]]; then
    "${MVN_CMD[@]}" dependency:copy-dependencies -DincludeScope=test -DincludeGroupIds=org.bytedeco \
        -DincludeArtifactIds=pytorch,cuda,openblas -DoutputDirectory="$WORK/deps" -Dmdep.useBaseVersion=true \
        -Dsilent=true >/dev/null || die "mvn dependency:copy-dependencies failed (set PYTORCH_VERSION etc.)"
fi
PYTORCH_VERSION="${PYTORCH_VERSION:-$(version_of pytorch)}"
CUDA_VERSION="${CUDA_VERSION:-$(version_of cuda)}"
OPENBLAS_VERSION="${OPENBLAS_VERSION:-$(version_of openblas)}"
[[ -n "$PYTORCH_VERSION" && -n "$CUDA_VERSION" && -n "$OPENBLAS_VERSION" ]] \
    || die "cannot tell the preset versions (pytorch '$PYTORCH_VERSION', cuda '$CUDA_VERSION', openblas '$OPENBLAS_VERSION')"

ARTIFACTS=("pytorch:$PYTORCH_VERSION:jar:linux-x86_64-gpu" "pytorch:$PYTORCH_VERSION:jar"
           "cuda:$CUDA_VERSION:jar" "cuda:$CUDA_VERSION:jar:linux-x86_64"
           "openblas:$OPENBLAS_VERSION:jar" "openblas:$OPENBLAS_VERSION:jar:linux-x86_64")
mkdir -p "$WORK/jars"
for a in "${ARTIFACTS[@]}"; do
    "${MVN_CMD[@]}" dependency:copy -Dartifact="org.bytedeco:$a" -DoutputDirectory="$WORK/jars" -Dsilent=true \
        >/dev/null || die "cannot get org.bytedeco:$a (mvn dependency:copy; the GPU jar is ~460 MB)"
done
GPU_JAR="pytorch-$PYTORCH_VERSION-linux-x86_64-gpu.jar"
[[ -f "$WORK/jars/$GPU_JAR" ]] || die "$GPU_JAR was not copied"

# ---- up to date? --------------------------------------------------------------------------------------------
INPUTS="$( (cd "$WORK/jars" && sha256sum -- *.jar); echo "part-bytes $PART_BYTES layout 2")"
if [[ -f "$OUT/inputs.txt" && "$(cat "$OUT/inputs.txt")" == "$INPUTS" ]] && ls "$OUT"/part-* >/dev/null 2>&1; then
    say "up to date: $(ls "$OUT"/part-* | wc -l) parts in $OUT"
    exit 0
fi
rm -f "$OUT"/part-* "$OUT/inputs.txt"

# ---- the payload: sparse24-torch/lib/<the six jars>, with a checksum list -----------------------------------
mkdir -p "$WORK/payload/sparse24-torch"
mv "$WORK/jars" "$WORK/payload/sparse24-torch/lib"
(cd "$WORK/payload/sparse24-torch/lib" && sha256sum -- *.jar > ../SHA256SUMS)
say "payload $(du -sm "$WORK/payload" | cut -f1) MB; cutting it into parts of $PART_BYTES bytes"
(cd "$WORK/payload" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=2026-01-01 -cf - sparse24-torch) \
    | split -b "$PART_BYTES" -d -a 2 --numeric-suffixes=1 - "$WORK/part-"
N="$(ls "$WORK"/part-* | wc -l)"
for p in "$WORK"/part-*; do mv "$p" "$OUT/$(basename "$p")-of-$(printf %02d "$N")"; done
echo "$INPUTS" > "$OUT/inputs.txt"
say "$N parts, $(du -cb "$OUT"/part-* | tail -n1 | cut -f1) bytes in all, in $OUT:"
ls -l "$OUT"/part-*
