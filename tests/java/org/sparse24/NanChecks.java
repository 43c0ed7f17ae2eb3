package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * NaN and Inf propagate like in the float64 {@link ReferenceFfn}: injected at random positions of x, w1 or dz,
 * in every dtype and option mode, each output element is NaN, +Inf or -Inf where the reference's is (bounded by
 * its sparse-product and dense-product forms), and the finite elements match it; {@code compress24} of a 2:4 matrix keeps its NaNs and infinities.
 */
abstract class NanChecks extends ContextChecks {
    /** Where a special value is injected. */
    enum Target { X, W1, DZ }

    /** {T, d, f} triples. */
    abstract List<int[]> shapes();

    /** Layouts compress24 is checked in. */
    abstract List<Layout> layouts();

    Stream<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        for (int[] s : shapes()) {
            for (DType dtype : dtypes()) {
                for (FfnChecks.Mode mode : FfnChecks.Mode.values()) {
                    for (Target target : Target.values()) {
                        for (float special : new float[] {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY}) {
                            cases.add(Arguments.of(s[0], s[1], s[2], dtype, mode, target, special));
                        }
                    }
                }
            }
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "T={0} d={1} f={2} {3} {4} {6} in {5}")
    @MethodSource("cases")
    void specialValuesPropagateLikeTheReference(int tokens, int d, int f, DType dtype, FfnChecks.Mode mode,
                                                Target target, float special) {
        Random random = new Random(31L * tokens + d + f + dtype.ordinal() * 7 + mode.ordinal() * 13
                + target.ordinal() * 17 + Float.floatToIntBits(special));
        try (FfnPass p = new FfnPass(ctx, dtype, tokens, d, f, random)) {
            float[] hit = target == Target.X ? p.x : target == Target.W1 ? p.w1 : p.dz;
            for (int i = 0; i < 2; i++) {
                hit[random.nextInt(hit.length)] = special;
            }
            p.run(mode, 77);
            int[] denseFeatures = p.result.saved().denseFeatures();
            ReferenceFfn must = new ReferenceFfn(dtype, tokens, d, f, p.x, p.w1, p.w2, mode.sparseForward, true);
            ReferenceFfn may = new ReferenceFfn(dtype, tokens, d, f, p.x, p.w1, p.w2, mode.sparseForward, false);
            must.backward(p.dz, mode.referenceSplits(), p.perm, denseFeatures);
            may.backward(p.dz, mode.referenceSplits(), p.perm, denseFeatures);
            double tol = TestData.tolerance(dtype);
            assertSpecials("Z", p.result.output().toFloats(), must.z, may.z, tol);
            assertSpecials("dX", p.grads.dx().toFloats(), must.dx, may.dx, tol);
            assertSpecials("dW1", p.grads.dw1().toFloats(), must.dw1, may.dw1, tol);
            assertSpecials("dW2", p.grads.dw2().toFloats(), must.dw2, may.dw2, tol);
        }
    }

    /**
     * NaN where {@code must} has NaN, and only where {@code may} has NaN (a dense GEMM also multiplies the zeros a
     * sparse one skips: 0 * NaN) or an infinity (tensor cores also multiply the zeros a 2:4 group stores, and
     * their accumulation order can meet +Inf and -Inf: the H200 gives NaN there, where float64 in order gives an
     * infinity); an infinity where both have it; the finite elements close to {@code must}.
     */
    static void assertSpecials(String what, float[] actual, double[] must, double[] may, double tolerance) {
        assertEquals(must.length, actual.length, what + " length");
        double diff = 0;
        double norm = 0;
        for (int i = 0; i < actual.length; i++) {
            String at = what + "[" + i + "]: expected " + must[i] + " (or " + may[i] + "), got " + actual[i];
            if (Double.isNaN(must[i])) {
                assertTrue(Float.isNaN(actual[i]), at);
            } else if (Float.isNaN(actual[i])) {
                assertTrue(Double.isNaN(may[i]) || Double.isInfinite(must[i]) || Double.isInfinite(may[i]), at);
            } else if (Double.isInfinite(must[i]) || Float.isInfinite(actual[i])) {
                assertEquals(must[i], (double) actual[i], at);
            } else {
                diff += (actual[i] - must[i]) * (actual[i] - must[i]);
                norm += must[i] * must[i];
            }
        }
        assertTrue(norm == 0 || Math.sqrt(diff / norm) < tolerance,
                what + ": relative error of the finite elements " + Math.sqrt(diff / norm) + " >= " + tolerance);
    }

    Stream<Arguments> packedCases() {
        List<Arguments> cases = new ArrayList<>();
        for (DType dtype : dtypes()) {
            for (Layout layout : layouts()) {
                cases.add(Arguments.of(dtype, layout));
            }
        }
        return cases.stream();
    }

    /** A 2:4 matrix holding NaN and +-Inf at kept positions comes back bit for bit from compress + decompress. */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("packedCases")
    void compress24OfA24MatrixIsLossless(DType dtype, Layout layout) {
        int rows = 64;
        int cols = 128;
        Random random = new Random(5 + dtype.ordinal() + 3L * layout.ordinal());
        float[] dense = TestData.stored(dtype, TestData.normal(random, rows * cols, 1));
        float[] specials = {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
        for (int group = 0; group < rows * cols / 4; group++) {
            int a = random.nextInt(4);
            int b = (a + 1 + random.nextInt(3)) % 4;
            for (int j = 0; j < 4; j++) {
                if (j != a && j != b) {
                    dense[4 * group + j] = 0;  // 2:4 already
                }
            }
            if (random.nextInt(8) == 0) {
                dense[4 * group + (random.nextBoolean() ? a : b)] = specials[random.nextInt(3)];
            }
        }
        try (Tensor in = Tensor.fromFloats(ctx, dtype, dense, rows, cols);
             Tensor out = Tensor.allocate(ctx, dtype, rows, cols);
             PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, rows, cols)) {
            Sparse24Ops.compress24(in, packed);
            out.poison(0x7F);
            Sparse24Ops.decompress24(packed, out);
            float[] back = out.toFloats();
            for (int i = 0; i < dense.length; i++) {
                assertEquals(Float.isNaN(dense[i]), Float.isNaN(back[i]), "element " + i + ": " + dense[i] + " -> " + back[i]);
                if (!Float.isNaN(dense[i])) {
                    assertEquals(dense[i], back[i], "element " + i);
                }
            }
        }
    }

    /** A NaN in h is kept by the forward's 2:4 (it outranks every number) and squares to NaN. */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("packedCases")
    void sparsify24RowsKeepsNaN(DType dtype, Layout layout) {
        int rows = 64;
        int cols = 128;
        Random random = new Random(11 + dtype.ordinal());
        float[] h = TestData.stored(dtype, TestData.normal(random, rows * cols, 1));
        for (int i = 0; i < 40; i++) {
            h[random.nextInt(h.length)] = Float.NaN;
        }
        h[0] = Float.POSITIVE_INFINITY;
        h[1] = Float.NaN;  // NaN outranks +Inf: group 0 keeps positions 0 and 1
        try (Tensor ht = Tensor.fromFloats(ctx, dtype, h, rows, cols);
             Tensor out = Tensor.allocate(ctx, dtype, rows, cols);
             PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, rows, cols)) {
            Sparse24Ops.sparsify24Rows(ht, false, packed, null);
            Sparse24Ops.decompress24(packed, out);
            float[] y = out.toFloats();
            for (int i = 0; i < h.length; i++) {
                if (Float.isNaN(h[i])) {
                    assertTrue(Float.isNaN(y[i]), "NaN at " + i + " must survive, got " + y[i]);
                } else {
                    assertTrue(!Float.isNaN(y[i]), "no NaN at " + i + ", got " + y[i]);
                }
            }
            assertEquals(Float.POSITIVE_INFINITY, y[0], "Inf squared");
        }
    }

    /** In dense mode relu(NaN)^2 is NaN too (relu must not turn NaN into 0). */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("packedCases")
    void denseReluKeepsNaN(DType dtype, Layout layout) {
        float[] h = TestData.stored(dtype, TestData.normal(new Random(3), 64 * 128, 1));
        h[5] = Float.NaN;
        h[77] = Float.NaN;
        try (Tensor ht = Tensor.fromFloats(ctx, dtype, h, 64, 128);
             PackedMatrix packed = PackedMatrix.allocate(ctx, Layout.DENSE, dtype, 64, 128);
             Tensor out = Tensor.allocate(ctx, dtype, 64, 128)) {
            Sparse24Ops.sparsify24Rows(ht, true, packed, null);
            Sparse24Ops.decompress24(packed, out);
            float[] y = out.toFloats();
            for (int i = 0; i < h.length; i++) {
                assertEquals(Float.isNaN(h[i]), Float.isNaN(y[i]), "element " + i);
            }
        }
    }
}
