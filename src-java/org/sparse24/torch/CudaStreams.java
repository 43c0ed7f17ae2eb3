package org.sparse24.torch;

import org.bytedeco.javacpp.Pointer;
import org.bytedeco.pytorch.cuda.CUDAStream;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * LibTorch's current CUDA stream. A class of its own so that {@code torch_cuda} (whose natives exist only in the
 * preset's CUDA builds, {@code pytorch-platform-gpu}) is loaded only when a CUDA context asks for it.
 */
final class CudaStreams {
    private CudaStreams() {
    }

    /** The {@code cudaStream_t} of {@code at::cuda::getCurrentCUDAStream(device)}. */
    static Pointer current(int device) {
        try {
            CUDAStream stream = torch_cuda.getCurrentCUDAStream((byte) device);
            Pointer raw = stream.stream();
            return raw == null ? new Pointer() : new Pointer(raw); // null: the legacy default stream
        } catch (UnsatisfiedLinkError | NoClassDefFoundError e) {
            throw new IllegalStateException("LibTorch's CUDA stream is unavailable: the org.bytedeco:pytorch natives "
                    + "in use have no CUDA support (use pytorch-platform-gpu with org.bytedeco:cuda)", e);
        }
    }
}
