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
        Random random = new Random(seed);
        float[] x = TestData.stored(dtype, TestData.normal(random, tokens * d, 1));
        float[] w1 = TestData.stored(dtype, TestData.normal(random, f * d, 1 / Math.sqrt(d)));
        float[] w2 = TestData.stored(dtype, TestData.normal(random, d * f, 1 / Math.sqrt(f)));
        float[] dz = TestData.stored(dtype, TestData.normal(random, tokens * d, 1));
        double tol = TestData.tolerance(dtype);
        try (Tensor xt = Tensor.fromFloats(ctx, dtype, x, tokens, d);
             Tensor w1t = Tensor.fromFloats(ctx, dtype, w1, f, d);
             Tensor w2t = Tensor.fromFloats(ctx, dtype, w2, d, f);
             Tensor dzt = Tensor.fromFloats(ctx, dtype, dz, tokens, d);
             SparseFfn ffn = new SparseFfn(ctx, d, f, dtype, mode.options(seed));
             ForwardResult r = ffn.forward(xt, w1t, w2t);
             Gradients g = ffn.backward(r.saved(), xt, w1t, w2t, dzt)) {
            ReferenceFfn ref = new ReferenceFfn(dtype, tokens, d, f, x, w1, w2, mode.sparseForward);
            int[] perm = mode.permute ? Sparse24Ops.tokenPermutation(seed, 0, tokens) : null;
            boolean split = mode.sparseBackward && mode != FfnChecks.Mode.SPLIT_ALL_DENSE;
            ref.backward(dz, split, perm, r.saved().denseFeatures());
            TestData.assertClose("Z", r.output().toFloats(), ref.z, tol);
            TestData.assertClose("dX", g.dx().toFloats(), ref.dx, tol);
            TestData.assertClose("dW1", g.dw1().toFloats(), ref.dw1, tol);
            TestData.assertClose("dW2", g.dw2().toFloats(), ref.dw2, tol);

            // gemm: H = X W1^T against float64
            try (Tensor h = Tensor.allocate(ctx, dtype, tokens, f)) {
                h.poison(0xFF);
                Sparse24Ops.gemm(xt, false, w1t, true, h);
                TestData.assertClose("gemm", h.toFloats(),
                        ReferenceFfn.matmul(ReferenceFfn.widen(x), ReferenceFfn.widen(w1), tokens, d, f, false, true),
                        tol);
            }
            // compress24 + decompress24 of W2 [d, f] (2:4 along f): the two largest |values| of each group
            Layout layout = backend() == Backend.CUDA && dtype != DType.FP32 && d % 64 == 0 && f % 64 == 0
                    ? Layout.CUSPARSELT : Layout.ROW;
            try (PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, d, f);
                 Tensor back = Tensor.allocate(ctx, dtype, d, f)) {
                Sparse24Ops.compress24(w2t, packed);
                back.poison(0xFF);
                Sparse24Ops.decompress24(packed, back);
                float[] actual = back.toFloats();
                for (int group = 0; group < d * f / 4; group++) {
                    double[] score = new double[4];
                    for (int j = 0; j < 4; j++) {
                        score[j] = Math.abs(w2[4 * group + j]);
                    }
                    boolean[] keep = ReferenceFfn.keepTwoLargest(score);
                    for (int j = 0; j < 4; j++) {
                        int i = 4 * group + j;
                        assertEquals(keep[j] ? w2[i] : 0f, actual[i], "compress24 element " + i);
                    }
                }
            }
        }
    }
}
