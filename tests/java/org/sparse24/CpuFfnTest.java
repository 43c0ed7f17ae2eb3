package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** The FFN checks on the CPU reference backend (run in CI). */
class CpuFfnTest extends FfnChecks {
    @Override
    Backend backend() {
        return Backend.CPU;
    }

    /**
     * T = 1, T % 4 != 0, odd d, f not a multiple of 64, regular shapes, and the dense-feature count's boundaries:
     * ceil(0.05 f) exactly a multiple of 8 (f = 160, 320) and just above one (f = 168).
     */
    @Override
    List<int[]> shapes() {
        return List.of(new int[] {1, 8, 68}, new int[] {7, 17, 100}, new int[] {16, 33, 64}, new int[] {30, 24, 132},
                new int[] {64, 64, 128}, new int[] {128, 96, 256}, new int[] {97, 40, 520}, new int[] {24, 16, 160},
                new int[] {13, 12, 168}, new int[] {20, 8, 320});
    }

    @Override
    int flipAllowance() {
        return 0;
    }

    @Test
    void planInfoOnCpu() {
        try (SparseFfn ffn = new SparseFfn(ctx, 64, 100, DType.BF16, SparseFfnOptions.defaults())) {
            PlanInfo info = ffn.planInfo(32);
            assertEquals(32, info.tokens());
            assertFalse(info.sparseForwardPath(), "the CPU backend has no sparse tensor cores");
            assertFalse(info.sparseBackwardPath());
            assertTrue(info.savedBytes() > 0);
            assertTrue(info.workspaceBytes() > 0);
        }
    }

    /**
     * {fraction, f, dense features}: ceil(fraction * f) for the decimal fraction (not its float, which is a little
     * larger for 0.05, 0.1, 0.2, 0.3), rounded up to a multiple of 8, at most f. Worked out by hand.
     */
    static Stream<Arguments> denseFeatureCounts() {
        return Stream.of(Arguments.of(0.05, 100, 8), // 5 -> 8
                Arguments.of(0.05, 160, 8), // exactly 8: not 16
                Arguments.of(0.05, 168, 16), // 8.4 -> 9 -> 16
                Arguments.of(0.05, 320, 16), // exactly 16: not 24
                Arguments.of(0.05, 64, 8), // 3.2 -> 4 -> 8
                Arguments.of(0.05, 4, 4), // 0.2 -> 1 -> 8, at most f
                Arguments.of(0.1, 80, 8), // exactly 8
                Arguments.of(0.1, 88, 16), // 8.8 -> 9 -> 16
                Arguments.of(0.2, 40, 8), // exactly 8
                Arguments.of(0.25, 32, 8), // exactly 8 (0.25 is exact in float)
                Arguments.of(0.3, 80, 24), // exactly 24
                Arguments.of(0.01, 1600, 16), // exactly 16 (0.01f is a little smaller)
                Arguments.of(0.7, 40, 32), // 28 -> 32
                Arguments.of(0.001, 100, 8), // 0.1 -> 1 -> 8
                Arguments.of(1.0, 12, 12), // all, at most f
                Arguments.of(0.0, 100, 0));
    }

    @ParameterizedTest(name = "fraction {0} of f={1}: {2}")
    @MethodSource("denseFeatureCounts")
    void denseFeatureCountAtItsBoundaries(double fraction, int f, int expected) {
        SparseFfnOptions options = SparseFfnOptions.builder().denseFraction(fraction).build();
        try (SparseFfn ffn = new SparseFfn(ctx, 8, f, DType.BF16, options)) {
            assertEquals(expected, ffn.planInfo(16).denseFeatures());
        }
    }
}
