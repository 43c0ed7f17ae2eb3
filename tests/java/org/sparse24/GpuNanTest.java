package org.sparse24;

import java.util.List;

import org.junit.jupiter.api.Tag;

/** NaN/Inf propagation on CUDA device 0 (GPU bundle only). */
@Tag("gpu")
class GpuNanTest extends NanChecks {
    @Override
    Backend backend() {
        return Backend.CUDA;
    }

    /** The sparse GEMM path and an awkward shape that falls back. */
    @Override
    List<int[]> shapes() {
        return List.of(new int[] {128, 128, 256}, new int[] {7, 17, 100});
    }

    @Override
    List<Layout> layouts() {
        return List.of(Layout.DENSE, Layout.ROW, Layout.CUSPARSELT);
    }
}
