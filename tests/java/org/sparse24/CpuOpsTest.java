package org.sparse24;

import java.util.List;

/** The building blocks on the CPU reference backend (run in CI). */
class CpuOpsTest extends OpsChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    @Override
    List<int[]> shapes() {
        return List.of(new int[] {1, 4}, new int[] {7, 12}, new int[] {30, 68}, new int[] {64, 128});
    }
}
