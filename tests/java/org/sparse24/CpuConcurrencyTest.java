package org.sparse24;

/** Concurrent close/use stress on the CPU backend (run in CI). */
class CpuConcurrencyTest extends ConcurrencyChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    @Override
    int[] shape() {
        return new int[] {32, 32, 64};
    }
}
