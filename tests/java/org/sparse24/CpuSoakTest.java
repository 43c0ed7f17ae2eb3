package org.sparse24;

/** The soak on the CPU backend (run in CI). */
class CpuSoakTest extends SoakChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    @Override
    int[] shape() {
        return new int[] {32, 32, 64};
    }

    @Override
    long rssAllowance() {
        return 256L << 20;
    }
}
