package org.sparse24;

import java.util.List;

/** The fuzz on the CPU backend against the float64 reference (CI: 200 cases). */
class CpuFuzzTest extends FuzzChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    @Override
    List<DType> dtypes() {
        return List.of(DType.FP32, DType.BF16, DType.FP16);
    }

    @Override
    int[] regularExtents() {
        return new int[] {16, 32, 64};
    }
}
