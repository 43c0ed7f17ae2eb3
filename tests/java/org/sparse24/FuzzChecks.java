package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Random shapes, dtypes and options against the float64 {@link ReferenceFfn}: each case runs the FFN (forward and
 * backward) and the building blocks gemm, compress24 and decompress24. {@code sparse24.fuzzCases} cases
 * (default 200), {@code sparse24.fuzzSeed} picks them (default fixed, so a failure names a reproducible case).
 */
abstract class FuzzChecks extends ContextChecks {
    /** Extents the fast path likes (multiples of 64 on CUDA); half the cases draw from them. */
    abstract int[] regularExtents();

    Stream<Arguments> cases() {
        int n = Integer.getInteger("sparse24.fuzzCases", 200);
        Random random = new Random(Long.getLong("sparse24.fuzzSeed", 2424));
        FfnChecks.Mode[] modes = FfnChecks.Mode.values();
        List<Arguments> cases = new ArrayList<>();
        int[] regular = regularExtents();
        for (int i = 0; i < n; i++) {
            boolean awkward = random.nextBoolean();
            int tokens = awkward ? 1 + random.nextInt(96) : regular[random.nextInt(regular.length)];
            int d = awkward ? 1 + random.nextInt(64) : regular[random.nextInt(regular.length)];
            int f = awkward ? 4 * (1 + random.nextInt(40)) : regular[random.nextInt(regular.length)];
            cases.add(Arguments.of(i, tokens, d, f, dtypes().get(random.nextInt(dtypes().size())),
                    modes[random.nextInt(modes.length)], random.nextLong()));
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "#{0}: T={1} d={2} f={3} {4} {5}")
    @MethodSource("cases")
    void matchesReference(int index, int tokens, int d, int f, DType dtype, FfnChecks.Mode mode, long seed) {
        double tol = TestData.tolerance(dtype);
        try (FfnPass p = new FfnPass(ctx, dtype, tokens, d, f, new Random(seed))) {
            p.run(mode, seed);
            ReferenceFfn ref = new ReferenceFfn(dtype, tokens, d, f, p.x, p.w1, p.w2, mode.sparseForward);
            ref.backward(p.dz, mode.referenceSplits(), p.perm, p.result.saved().denseFeatures());
            TestData.assertClose("Z", p.result.output().toFloats(), ref.z, tol);
            TestData.assertClose("dX", p.grads.dx().toFloats(), ref.dx, tol);
            TestData.assertClose("dW1", p.grads.dw1().toFloats(), ref.dw1, tol);
            TestData.assertClose("dW2", p.grads.dw2().toFloats(), ref.dw2, tol);

            // gemm: H = X W1^T against float64
            try (Tensor h = Tensor.allocate(ctx, dtype, tokens, f)) {
                h.poison(0xFF);
                Sparse24Ops.gemm(p.xt, false, p.w1t, true, h);
                TestData.assertClose("gemm", h.toFloats(), ReferenceFfn.matmul(ReferenceFfn.widen(p.x),
                        ReferenceFfn.widen(p.w1), tokens, d, f, false, true), tol);
            }
            // compress24 + decompress24 of W2 [d, f] (2:4 along f): the two largest |values| of each group
            Layout layout = backend() == Backend.CUDA && dtype != DType.FP32 && d % 64 == 0 && f % 64 == 0
                    ? Layout.CUSPARSELT : Layout.ROW;
            try (PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, d, f);
                 Tensor back = Tensor.allocate(ctx, dtype, d, f)) {
                Sparse24Ops.compress24(p.w2t, packed);
                back.poison(0xFF);
                Sparse24Ops.decompress24(packed, back);
                float[] actual = back.toFloats();
                for (int group = 0; group < d * f / 4; group++) {
                    double[] score = new double[4];
                    for (int j = 0; j < 4; j++) {
                        score[j] = Math.abs(p.w2[4 * group + j]);
                    }
                    boolean[] keep = ReferenceFfn.keepTwoLargest(score);
                    for (int j = 0; j < 4; j++) {
                        int i = 4 * group + j;
                        assertEquals(keep[j] ? p.w2[i] : 0f, actual[i], "compress24 element " + i);
                    }
                }
            }
        }
    }
}
