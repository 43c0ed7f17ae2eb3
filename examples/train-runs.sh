# The training runs compared in docs/training.md, by name, and their GptTrain options. Sourced by train-gpu.sh
# and by the GPU bundle's run.sh (make-bundle.sh puts a copy next to it).
# train_run_options <name>: sets the array RUN_OPTIONS to the run's options; status 1 for an unknown name.
train_run_options() {
    case "$1" in
        dense)         RUN_OPTIONS=(--ffn dense) ;;
        sparse-warmup) RUN_OPTIONS=(--ffn sparse --dense-warmup "${DENSE_WARMUP:-300}") ;;
        sparse)        RUN_OPTIONS=(--ffn sparse) ;;
        *) return 1 ;;
    esac
}
