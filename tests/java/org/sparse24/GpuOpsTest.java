package org.sparse24;

import java.util.List;

import org.junit.jupiter.api.Tag;

/** The building blocks on CUDA device 0, incl. the cuSPARSELt layout (GPU bundle only). */
@Tag("gpu")
class GpuOpsTest extends OpsChecks {
    @Override
    Backend backend() {
        return Backend.CUDA;
    }

    @Override
    List<int[]> shapes() {
        return List.of(new int[] {1, 4}, new int[] {7, 12}, new int[] {30, 68}, new int[] {64, 128},
                new int[] {128, 256}, new int[] {192, 320});
    }
}
