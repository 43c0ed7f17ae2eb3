package org.sparse24;

import java.util.List;

/** NaN/Inf propagation on the CPU reference backend (run in CI). */
class CpuNanTest extends NanChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    /** T % 4 != 0, f not a multiple of 64. */
    @Override
    List<int[]> shapes() {
        return List.of(new int[] {7, 17, 100});
    }

    @Override
    List<Layout> layouts() {
        return List.of(Layout.DENSE, Layout.ROW);
    }
}
