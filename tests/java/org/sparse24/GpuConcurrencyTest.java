package org.sparse24;

import org.junit.jupiter.api.Tag;

/** Concurrent close/use stress on CUDA device 0 (GPU bundle only). */
@Tag("gpu")
class GpuConcurrencyTest extends ConcurrencyChecks {
    @Override
    Backend backend() {
        return Backend.CUDA;
    }

    @Override
    int[] shape() {
        return new int[] {128, 128, 256};
    }
}
