#!/usr/bin/env bash
# Starts one Java process per GPU of this host (rank r on GPU r), e.g. GptTrain data parallel over 2 GPUs:
#
#   examples/train-ddp.sh <java> <classpath> <world-size> <outdir> [arguments of the class, e.g. GptTrain's]
#   examples/train-ddp.sh "$JAVA" "$CP" 2 runs/ddp --ffn sparse --corpus corpus.bin.gz --csv runs/ddp/sparse.csv
#   MAIN=org.sparse24.examples.TensorParallelBench examples/train-ddp.sh "$JAVA" "$CP" 2 runs/tp --iters 20
#
# Every process gets RANK, WORLD_SIZE, S24_STORE=<outdir>/rendezvous.store (the FileStore the ranks meet through;
# removed before the start and after the end) and NVLink multicast off: NCCL_NVLS_ENABLE=0
# TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1. Rank r writes <outdir>/rank<r>.log (rank 0's output also
# goes to stdout). If a rank fails, the others are stopped. The exit status is 0 only if every rank exited 0.
#
# Environment: MAIN (org.sparse24.examples.GptTrain)   JAVA_OPTS (as train-gpu.sh: -Xmx8g, the -gpu natives,
#              JavaCPP's memory limits off)   TIMEOUT (seconds, 0 = none; default 0)
set -uo pipefail
if [[ $# -lt 4 ]]; then
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
JAVA="$1"; CP="$2"; WORLD="$3"; OUT="$4"; shift 4
MAIN="${MAIN:-org.sparse24.examples.GptTrain}"
read -r -a OPTS <<< "${JAVA_OPTS:--Xmx8g -Dorg.bytedeco.javacpp.platform.extension=-gpu -Dorg.bytedeco.javacpp.maxBytes=0 -Dorg.bytedeco.javacpp.maxPhysicalBytes=0}"
[[ "$WORLD" =~ ^[1-9][0-9]*$ ]] || { echo "train-ddp: world size must be a positive integer, got '$WORLD'" >&2; exit 2; }
mkdir -p "$OUT" || exit 2
STORE="$(cd "$OUT" && pwd)/rendezvous.store"
rm -f "$STORE"

PIDS=()
for (( r = 0; r < WORLD; r++ )); do
    (
        export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
        export RANK=$r WORLD_SIZE=$WORLD S24_STORE="$STORE"
        if (( r == 0 )); then
            exec > >(tee "$OUT/rank$r.log") 2>&1
        else
            exec > "$OUT/rank$r.log" 2>&1
        fi
        if [[ "${TIMEOUT:-0}" != 0 ]]; then
            exec timeout "$TIMEOUT" "$JAVA" "${OPTS[@]}" -cp "$CP" "$MAIN" "$@"
        fi
        exec "$JAVA" "${OPTS[@]}" -cp "$CP" "$MAIN" "$@"
    ) &
    PIDS+=($!)
done
echo "train-ddp: $MAIN on $WORLD ranks (pids ${PIDS[*]}), logs in $OUT/rank<r>.log"

# Wait for every rank; once one fails, stop the others (a rank waiting in a collective would wait forever).
FAILED=0
REMAINING=("${PIDS[@]}")
while (( ${#REMAINING[@]} > 0 )); do
    NEXT=()
    for i in "${!REMAINING[@]}"; do
        pid=${REMAINING[$i]}
        if kill -0 "$pid" 2>/dev/null; then
            NEXT+=("$pid")
            continue
        fi
        wait "$pid"; rc=$?
        rank=0; for j in "${!PIDS[@]}"; do [[ ${PIDS[$j]} == "$pid" ]] && rank=$j; done
        echo "train-ddp: rank $rank exited with $rc"
        if (( rc != 0 )) && (( FAILED == 0 )); then
            FAILED=1
            for other in "${REMAINING[@]}"; do [[ $other != "$pid" ]] && kill "$other" 2>/dev/null; done
        fi
    done
    REMAINING=("${NEXT[@]}")
    (( ${#REMAINING[@]} > 0 )) && sleep 1
done
rm -f "$STORE"
exit "$FAILED"
