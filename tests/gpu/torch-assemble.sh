#!/usr/bin/env bash
# On the GPU host: puts LibTorch's CUDA build back together from the parts that torch-parts.sh cut.
#
#   torch-assemble.sh <parts-dir> [dest]        (dest default: /tmp/sparse24-torch, where run.sh looks)
#
# <parts-dir> holds part-01-of-MM ... part-MM-of-MM (nothing else is read). Afterwards dest/lib/ holds the
# preset's jars, pytorch-<version>-linux-x86_64-gpu.jar (LibTorch's CUDA natives) among them, checked
# against the checksums packed with them. Needs tar and sha256sum; takes seconds.
set -euo pipefail

say() { echo "torch-assemble: $*"; }
die() { echo "torch-assemble: ERROR: $*" >&2; exit 1; }
[[ $# -ge 1 && $# -le 2 ]] || die "usage: torch-assemble.sh <parts-dir> [dest]"
PARTS="$1"
DEST="${2:-/tmp/sparse24-torch}"
case "$DEST" in /|/tmp|"$HOME") die "refusing to use $DEST as the destination" ;; esac
[[ -d "$PARTS" ]] || die "no folder $PARTS"

# ---- every part present, all of one set -------------------------------------------------------------------
shopt -s nullglob
parts=("$PARTS"/part-[0-9][0-9]-of-[0-9][0-9])
(( ${#parts[@]} > 0 )) || die "no part-NN-of-MM files in $PARTS"
N="${parts[0]##*-of-}"
missing=()
for p in "${parts[@]}"; do
    [[ "${p##*-of-}" == "$N" ]] || die "$PARTS mixes parts of two sets ($(basename "${parts[0]}"), $(basename "$p")): remove the old ones"
done
for ((i = 1; i <= 10#$N; i++)); do
    p="$PARTS/part-$(printf %02d "$i")-of-$N"
    [[ -f "$p" ]] || missing+=("$(basename "$p")")
done
(( ${#missing[@]} == 0 )) || die "missing ${#missing[@]} of $N parts: ${missing[*]}"
say "$((10#$N)) parts, $(cat "${parts[@]}" | wc -c) bytes"

# ---- unpack and check -----------------------------------------------------------------------------------
WORK="$DEST.partial"
rm -rf "$WORK"
mkdir -p "$WORK"
cat "${parts[@]}" | tar -x -C "$WORK" || die "unpacking failed (a part damaged or cut short?)"
P="$WORK/sparse24-torch"
[[ -f "$P/SHA256SUMS" && -d "$P/lib" ]] || die "the parts hold no sparse24-torch/{SHA256SUMS,lib}"
(cd "$P/lib" && sha256sum --quiet -c ../SHA256SUMS) || die "a jar does not match its checksum (a part damaged?)"
rm -rf "$DEST"
mv "$P" "$DEST"
rm -rf "$WORK"
say "LibTorch for run.sh in $DEST/lib (TORCH_DIR=$DEST):"
ls -l "$DEST/lib"
