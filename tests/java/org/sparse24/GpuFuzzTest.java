package org.sparse24;

import org.junit.jupiter.api.Tag;

/** The fuzz on CUDA device 0 (GPU bundle: run with -Dsparse24.fuzzCases=1000 or more). */
@Tag("gpu")
class GpuFuzzTest extends FuzzChecks {
    @Override
    Backend backend() {
        return Backend.CUDA;
    }

    @Override
    int[] regularExtents() {
        return new int[] {64, 128, 192, 256};
    }
}
