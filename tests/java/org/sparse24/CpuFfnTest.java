package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

/** The FFN checks on the CPU reference backend (run in CI). */
class CpuFfnTest extends FfnChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    /** T = 1, T % 4 != 0, odd d, f not a multiple of 64, and regular shapes. */
    @Override
    List<int[]> shapes() {
        return List.of(new int[] {1, 8, 68}, new int[] {7, 17, 100}, new int[] {16, 33, 64}, new int[] {30, 24, 132},
                new int[] {64, 64, 128}, new int[] {128, 96, 256}, new int[] {97, 40, 520});
    }

    @Override
    int flipAllowance() {
        return 0;
    }

    @Override
    List<DType> dtypes() {
        return List.of(DType.FP32, DType.BF16, DType.FP16);
    }

    @Test
    void planInfoOnCpu() {
        try (SparseFfn ffn = new SparseFfn(ctx, 64, 100, DType.BF16, SparseFfnOptions.defaults())) {
            PlanInfo info = ffn.planInfo(32);
            assertEquals(32, info.tokens());
            assertFalse(info.sparseForwardPath(), "the CPU backend has no sparse tensor cores");
            assertFalse(info.sparseBackwardPath());
            assertEquals(8, info.denseFeatures(), "ceil(0.05 * 100) = 5, rounded up to a multiple of 8");
            assertTrue(info.savedBytes() > 0);
            assertTrue(info.workspaceBytes() > 0);
        }
    }
}
