#!/usr/bin/env bash
# The three training runs compared in docs/training.md, back to back, with the same seed and data order:
#   dense.csv          --ffn dense (LibTorch's own FFN ops)
#   sparse-warmup.csv  --ffn sparse --dense-warmup $DENSE_WARMUP
#   sparse.csv         --ffn sparse (2:4 from the first step)
#
#   examples/train-gpu.sh <java> <classpath> <corpus.bin.gz> <outdir> [more GptTrain options, e.g. --steps 200]
#
# The class path needs sparse24-examples, sparse24, the pytorch preset with its linux-x86_64-gpu natives, the cuda
# preset, javacpp and xchart; LD_LIBRARY_PATH the CUDA libraries LibTorch loads. Each run writes <name>.csv and
# <name>.log; the exit status is non-zero if any run failed. Then, on a machine with a JDK:
#   java -cp <examples class path> org.sparse24.examples.GptTrain --report <dir> dense.csv sparse-warmup.csv sparse.csv
#
# Environment: DENSE_WARMUP=300   JAVA_OPTS (default: -Xmx8g, the -gpu natives, JavaCPP's memory limits off)
#              RUNS="dense sparse-warmup sparse"   the runs, in this order
set -uo pipefail
if [[ $# -lt 4 ]]; then
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
JAVA="$1"; CP="$2"; CORPUS="$3"; OUT="$4"; shift 4
EXTRA=("$@")
read -r -a OPTS <<< "${JAVA_OPTS:--Xmx8g -Dorg.bytedeco.javacpp.platform.extension=-gpu -Dorg.bytedeco.javacpp.maxBytes=0 -Dorg.bytedeco.javacpp.maxPhysicalBytes=0}"
mkdir -p "$OUT" || exit 2
# shellcheck source=train-runs.sh
source "$(dirname "${BASH_SOURCE[0]}")/train-runs.sh" || exit 2
FAILED=0

run() {
    local name="$1"; shift
    local t0=$SECONDS
    echo "train-gpu: ==== $name: GptTrain $* ${EXTRA[*]}"
    "$JAVA" "${OPTS[@]}" -cp "$CP" org.sparse24.examples.GptTrain --corpus "$CORPUS" --csv "$OUT/$name.csv" \
        "$@" "${EXTRA[@]}" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "train-gpu: $name rc=$rc $(( SECONDS - t0 ))s"
    (( rc == 0 )) || FAILED=1
}

for name in ${RUNS:-dense sparse-warmup sparse}; do
    if train_run_options "$name"; then
        run "$name" "${RUN_OPTIONS[@]}"
    else
        echo "train-gpu: unknown run $name" >&2; FAILED=1
    fi
done
exit "$FAILED"
