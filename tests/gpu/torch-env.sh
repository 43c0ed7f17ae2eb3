# shellcheck shell=bash
# Sourced by run.sh and reliability.sh (in the GPU bundle): how a JVM runs on LibTorch's CUDA build.
#   in:  TORCH_DIR (default /tmp/sparse24-torch, where torch-assemble.sh puts it), NVLIBS (the NVIDIA wheels'
#        library folders, from nvidia-libs.py)
#   out: TORCH_CP (its jars), TORCH_JVM (JVM options), TORCH_ENV (a command prefix: the environment),
#        torch_assembled (true once torch-assemble.sh has put LibTorch's CUDA jar into TORCH_DIR)
# Its natives come from the -gpu jar (JavaCPP unpacks them into its cache, ~860 MB, seconds); LD_LIBRARY_PATH holds
# only the NVIDIA library folders (LibTorch's own natives on it too would be loaded twice, and abort).
TORCH_DIR="${TORCH_DIR:-/tmp/sparse24-torch}"
TORCH_CP="$(IFS=:; shopt -s nullglob; a=("$TORCH_DIR"/lib/*.jar); echo "${a[*]}")"
# JavaCPP's memory limits off: with them every native object allocated reads the process's resident memory first
# (the LibTorch steps allocate many; the training and multi-GPU runs of 2026-11-29 ran with them on)
TORCH_JVM=("-Dorg.bytedeco.javacpp.platform.extension=-gpu" -Dorg.bytedeco.javacpp.maxBytes=0
           -Dorg.bytedeco.javacpp.maxPhysicalBytes=0)
TORCH_ENV=(env "LD_LIBRARY_PATH=${NVLIBS:-}")
torch_assembled() { ls "$TORCH_DIR"/lib/pytorch-*-linux-x86_64-gpu.jar > /dev/null 2>&1; }
