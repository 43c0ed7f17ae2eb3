package org.sparse24;

/** The fuzz on the CPU backend against the float64 reference (CI: 200 cases). */
class CpuFuzzTest extends FuzzChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    @Override
    int[] regularExtents() {
        return new int[] {16, 32, 64};
    }
}
