package org.sparse24;

/** Scratch retention on the CPU backend (run in CI). */
class CpuScratchTest extends ScratchChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    @Override
    int[] shape() {
        return new int[] {32, 256, 16, 1024};
    }

    /** fp32 H [2^19, 128] alone is 256 MiB. */
    @Override
    int[] hugeShape() {
        return new int[] {4, 128, 1 << 19};
    }

    @Override
    DType hugeDtype() {
        return DType.FP32;
    }
}
