package org.sparse24;

import org.junit.jupiter.api.Tag;

/**
 * Scratch retention on CUDA device 0 (GPU bundle only): the FFN's scratch together with the cuBLASLt workspaces
 * and the sparse GEMM's temporaries, released after the stream's work.
 */
@Tag("gpu")
class GpuScratchTest extends ScratchChecks {
    @Override
    Backend backend() {
        return Backend.CUDA;
    }

    /** Shapes the sparse GEMMs take (multiples of 64). */
    @Override
    int[] shape() {
        return new int[] {256, 1024, 64, 4096};
    }

    /** bf16 H [2^19, 256] alone is 256 MiB (d = 16: few host values to make, a sparse GEMM shape). */
    @Override
    int[] hugeShape() {
        return new int[] {16, 256, 1 << 19};
    }

    @Override
    DType hugeDtype() {
        return DType.BF16;
    }
}
