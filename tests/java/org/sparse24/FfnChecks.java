package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The FFN checked against the float64 {@link ReferenceFfn} on one backend: forward, the three gradients and the
 * statistics in every option mode, over several shapes and dtypes; determinism; the output overloads; use of one
 * context from two threads. Subclasses choose the backend and shapes.
 */
abstract class FfnChecks extends ContextChecks {
    /** The option combinations checked. */
    enum Mode {
        /** Defaults: 2:4 forward, split backward with permuted tokens. */
        SPLIT(true, true, true, 0.05),
        SPLIT_UNPERMUTED(true, true, false, 0.05),
        /** Split with every feature dense: must equal the exact gradients. */
        SPLIT_ALL_DENSE(true, true, true, 1.0),
        /** 2:4 forward, exact weight gradients of the masked forward. */
        EXACT_BACKWARD(true, false, true, 0.05),
        /** No 2:4 anywhere. */
        DENSE(false, false, true, 0.05);

        final boolean sparseForward;
        final boolean sparseBackward;
        final boolean permute;
        final double denseFraction;

        Mode(boolean sparseForward, boolean sparseBackward, boolean permute, double denseFraction) {
            this.sparseForward = sparseForward;
            this.sparseBackward = sparseBackward;
            this.permute = permute;
            this.denseFraction = denseFraction;
        }

        SparseFfnOptions options(long seed) {
            return SparseFfnOptions.builder().sparseForward(sparseForward).sparseBackward(sparseBackward)
                    .permuteTokens(permute).denseFraction(denseFraction).seed(seed).build();
        }

        /** Whether the reference splits its backward (SPLIT_ALL_DENSE is compared with the exact gradients). */
        boolean referenceSplits() {
            return sparseBackward && this != SPLIT_ALL_DENSE;
        }
    }

    /** One FFN's inputs (random, never zero) as tensors and as the values they hold. */
    final class Problem extends FfnInputs implements AutoCloseable {
        final Tensor xt;
        final Tensor w1t;
        final Tensor w2t;
        final Tensor dzt;

        Problem(int tokens, int d, int f, DType dtype, long seed) {
            super(dtype, tokens, d, f, new Random(seed));
            xt = Tensor.fromFloats(ctx, dtype, x, tokens, d).named("x");
            w1t = Tensor.fromFloats(ctx, dtype, w1, f, d).named("w1");
            w2t = Tensor.fromFloats(ctx, dtype, w2, d, f).named("w2");
            dzt = Tensor.fromFloats(ctx, dtype, dz, tokens, d).named("dz");
        }

        /** z, dX, dW1, dW2 of {@code steps} forward+backward steps, each into poisoned outputs. */
        List<float[]> run(SparseFfn ffn, int steps) {
            List<float[]> out = new ArrayList<>();
            try (Outputs o = new Outputs(this); SavedState saved = ffn.newSavedState(tokens)) {
                for (int step = 0; step < steps; step++) {
                    o.forwardBackward(ffn, saved);
                    out.addAll(o.values());
                }
            }
            return out;
        }

        @Override
        public void close() {
            xt.close();
            w1t.close();
            w2t.close();
            dzt.close();
        }
    }

    /** Caller-provided outputs, poisoned before every call so that unwritten elements show as NaN. */
    final class Outputs implements AutoCloseable {
        final Problem p;
        final Tensor z;
        final Tensor dx;
        final Tensor dw1;
        final Tensor dw2;

        Outputs(Problem p) {
            this.p = p;
            z = Tensor.allocate(ctx, p.dtype, p.tokens, p.d).named("z");
            dx = Tensor.allocate(ctx, p.dtype, p.tokens, p.d).named("dx");
            dw1 = Tensor.allocate(ctx, p.dtype, p.f, p.d).named("dw1");
            dw2 = Tensor.allocate(ctx, p.dtype, p.d, p.f).named("dw2");
        }

        void forwardBackward(SparseFfn ffn, SavedState saved) {
            for (Tensor t : List.of(z, dx, dw1, dw2)) {
                t.poison(0xFF);
            }
            ffn.forward(p.xt, p.w1t, p.w2t, z, saved);
            ffn.backward(saved, p.xt, p.w1t, p.w2t, p.dzt, dx, dw1, dw2);
        }

        List<float[]> values() {
            return List.of(z.toFloats(), dx.toFloats(), dw1.toFloats(), dw2.toFloats());
        }

        @Override
        public void close() {
            z.close();
            dx.close();
            dw1.close();
            dw2.close();
        }
    }

    /** {T, d, f} triples. */
    abstract List<int[]> shapes();

    /**
     * How many 2:4 choices may differ from the reference's per statistic. The reference rounds float64 sums where
     * the library rounds fp32 sums; the two rarely differ by one unit of the dtype, and where that unit decides a
     * near-tie of a 2:4 group, the choice differs. The CPU backend's sums are close enough to need none.
     */
    abstract int flipAllowance();

    @BeforeAll
    void contextIsOnItsBackend() {
        assertEquals(backend(), ctx.backend());
    }

    Stream<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        for (int[] s : shapes()) {
            for (DType dtype : dtypes()) {
                for (Mode mode : Mode.values()) {
                    cases.add(Arguments.of(s[0], s[1], s[2], dtype, mode));
                }
            }
        }
        return cases.stream();
    }

    /** Two steps (permutation steps 0 and 1) of forward + backward against the reference. */
    @ParameterizedTest(name = "T={0} d={1} f={2} {3} {4}")
    @MethodSource("cases")
    void matchesReference(int tokens, int d, int f, DType dtype, Mode mode) {
        long seed = 1000 + tokens;
        double tol = TestData.tolerance(dtype);
        try (Problem p = new Problem(tokens, d, f, dtype, Objects.hash(tokens, d, f, dtype, mode));
             Outputs o = new Outputs(p);
             SparseFfn ffn = new SparseFfn(ctx, d, f, dtype, mode.options(seed));
             SavedState saved = ffn.newSavedState(tokens)) {
            for (int step = 0; step < 2; step++) {
                o.forwardBackward(ffn, saved);
                String at = "step " + step + ": ";
                ReferenceFfn ref = new ReferenceFfn(dtype, tokens, d, f, p.x, p.w1, p.w2, mode.sparseForward);
                int[] denseFeatures = saved.denseFeatures();
                checkDenseFeatures(ref, mode, denseFeatures, flipAllowance());
                int[] perm = mode.permute ? Sparse24Ops.tokenPermutation(seed, step, tokens) : null;
                ref.backward(p.dz, mode.referenceSplits(), perm, denseFeatures);
                TestData.assertClose(at + "Z", o.z.toFloats(), ref.z, tol);
                TestData.assertClose(at + "dX", o.dx.toFloats(), ref.dx, tol);
                TestData.assertClose(at + "dW1", o.dw1.toFloats(), ref.dw1, tol);
                TestData.assertClose(at + "dW2", o.dw2.toFloats(), ref.dw2, tol);
                TestData.assertWithinBounds(at + "Z", o.z.toFloats(), ref.z, ref.zBound);
                TestData.assertWithinBounds(at + "dX", o.dx.toFloats(), ref.dx, ref.dxBound);
                TestData.assertWithinBounds(at + "dW1", o.dw1.toFloats(), ref.dw1, ref.dw1Bound);
                TestData.assertWithinBounds(at + "dW2", o.dw2.toFloats(), ref.dw2, ref.dw2Bound);
                checkSparsity(saved.sparsity(), ref, mode, step, denseFeatures.length, flipAllowance());
            }
        }
    }

    /**
     * k = ceil(denseFraction * f), rounded up to a multiple of 8 (at most f), features with the most kept
     * non-zeros (ties: lower index), ascending; up to
     * {@code allowance} of them may differ from the reference's choice.
     */
    private static void checkDenseFeatures(ReferenceFfn ref, Mode mode, int[] actual, int allowance) {
        if (!mode.sparseBackward) {
            assertEquals(0, actual.length, "no dense features without the split");
            return;
        }
        int k = (int) Math.ceil(mode.denseFraction * ref.f - 1e-9);
        k = k == 0 ? 0 : Math.min(ref.f, (k + 7) / 8 * 8);
        int[] counts = new int[ref.f];
        for (int i = 0; i < ref.yhat.length; i++) {
            counts[i % ref.f] += ref.yhat[i] != 0 ? 1 : 0;
        }
        int[] expected = Stream.iterate(0, j -> j + 1).limit(ref.f)
                .sorted((a, b) -> counts[a] != counts[b] ? Integer.compare(counts[b], counts[a]) : Integer.compare(a, b))
                .limit(k).mapToInt(Integer::intValue).sorted().toArray();
        if (allowance == 0) {
            assertArrayEquals(expected, actual, "dense features");
            return;
        }
        assertEquals(k, actual.length, "dense feature count");
        assertTrue(IntStream.range(1, k).allMatch(i -> actual[i] > actual[i - 1]), "ascending, distinct");
        long differing = IntStream.of(actual).filter(j -> Arrays.binarySearch(expected, j) < 0).count();
        assertTrue(differing <= allowance, differing + " dense features differ from the reference's choice");
    }

    private static void checkSparsity(Sparsity s, ReferenceFfn ref, Mode mode, int step, int denseFeatures,
                                      int allowance) {
        assertEquals(ref.tokens, s.tokens());
        assertEquals(ref.f, s.features());
        assertEquals(step, s.step());
        assertCount(ref.activationNonzeros, s.activationNonzeros(), allowance, "activation non-zeros");
        assertCount(ref.forwardKept, s.forwardKept(), allowance, "non-zeros kept by the forward 2:4");
        assertEquals(mode.sparseForward, s.forwardSparse());
        assertEquals(mode.sparseBackward, s.backwardSparse());
        assertTrue(s.backwardDone());
        assertEquals(denseFeatures, s.denseFeatures());
        if (mode.sparseBackward) {
            assertCount(ref.dw2Nonzeros, s.dw2SparseNonzeros(), allowance, "dW2 sparse-feature non-zeros");
            assertCount(ref.dw2Kept, s.dw2SparseKept(), allowance, "dW2 sparse-feature non-zeros kept");
            assertCount(ref.dw1Nonzeros, s.dw1SparseNonzeros(), allowance, "dW1 sparse-feature non-zeros");
            assertCount(ref.dw1Kept, s.dw1SparseKept(), allowance, "dW1 sparse-feature non-zeros kept");
        }
        if (!mode.sparseForward) {
            assertEquals(s.activationNonzeros(), s.forwardKept(), "nothing dropped without the 2:4 forward");
        }
    }

    private static void assertCount(long expected, long actual, int allowance, String what) {
        assertTrue(Math.abs(expected - actual) <= allowance, what + ": expected " + expected + " (+-" + allowance
                + "), got " + actual);
    }

    @ParameterizedTest
    @MethodSource("dtypeCases")
    void sameSeedGivesIdenticalBits(DType dtype) {
        try (Problem p = new Problem(64, 24, 96, dtype, 7);
             SparseFfn a = new SparseFfn(ctx, 24, 96, dtype, Mode.SPLIT.options(42));
             SparseFfn b = new SparseFfn(ctx, 24, 96, dtype, Mode.SPLIT.options(42))) {
            List<float[]> first = p.run(a, 3);
            List<float[]> second = p.run(b, 3);
            for (int i = 0; i < first.size(); i++) {
                assertArrayEquals(bits(first.get(i)), bits(second.get(i)), "output " + i);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("dtypeCases")
    void differentSeedPermutesDifferently(DType dtype) {
        assertFalse(Arrays.equals(Sparse24Ops.tokenPermutation(1, 0, 64), Sparse24Ops.tokenPermutation(2, 0, 64)));
        try (Problem p = new Problem(64, 24, 96, dtype, 7);
             SparseFfn a = new SparseFfn(ctx, 24, 96, dtype, Mode.SPLIT.options(1));
             SparseFfn b = new SparseFfn(ctx, 24, 96, dtype, Mode.SPLIT.options(2))) {
            List<float[]> first = p.run(a, 1);
            List<float[]> second = p.run(b, 1);
            assertArrayEquals(bits(first.get(0)), bits(second.get(0)), "Z does not depend on the permutation");
            assertFalse(Arrays.equals(bits(first.get(3)), bits(second.get(3))), "dW2 depends on the permutation");
        }
    }

    /** infer and the allocating overloads give the same bits as the caller-provided ones; null outputs skip. */
    @ParameterizedTest
    @MethodSource("dtypeCases")
    void overloadsAgree(DType dtype) {
        try (Problem p = new Problem(12, 20, 40, dtype, 3);
             SparseFfn provided = new SparseFfn(ctx, 20, 40, dtype, Mode.SPLIT.options(5));
             SparseFfn allocating = new SparseFfn(ctx, 20, 40, dtype, Mode.SPLIT.options(5));
             Outputs o = new Outputs(p);
             Tensor onlyDx = Tensor.allocate(ctx, dtype, 12, 20);
             Tensor onlyDw2 = Tensor.allocate(ctx, dtype, 20, 40)) {
            List<float[]> expected = p.run(provided, 1);
            try (Tensor inferred = allocating.infer(p.xt, p.w1t, p.w2t);
                 ForwardResult r = allocating.forward(p.xt, p.w1t, p.w2t);
                 Gradients g = allocating.backward(r.saved(), p.xt, p.w1t, p.w2t, p.dzt)) {
                assertArrayEquals(bits(expected.get(0)), bits(inferred.toFloats()), "infer");
                assertArrayEquals(bits(expected.get(0)), bits(r.output().toFloats()), "forward");
                assertArrayEquals(bits(expected.get(1)), bits(g.dx().toFloats()), "dX");
                assertArrayEquals(bits(expected.get(2)), bits(g.dw1().toFloats()), "dW1");
                assertArrayEquals(bits(expected.get(3)), bits(g.dw2().toFloats()), "dW2");
                assertEquals(0, r.saved().step(), "infer consumes no permutation step");
                onlyDx.poison(0xFF);
                onlyDw2.poison(0xFF);
                allocating.backward(r.saved(), p.xt, p.w1t, p.w2t, p.dzt, onlyDx, null, null);
                allocating.backward(r.saved(), p.xt, p.w1t, p.w2t, p.dzt, null, null, onlyDw2);
                assertArrayEquals(bits(expected.get(1)), bits(onlyDx.toFloats()), "dX alone");
                assertArrayEquals(bits(expected.get(3)), bits(onlyDw2.toFloats()), "dW2 alone");
            }
        }
    }

    /** Two threads drive one context at once; each gets the bits a single thread gets. */
    @Test
    void contextUsedFromTwoThreads() throws Exception {
        DType dtype = dtypes().get(0);
        try (Problem p = new Problem(64, 64, 128, dtype, 11)) {
            List<float[]> expected;
            try (SparseFfn ffn = new SparseFfn(ctx, 64, 128, dtype, Mode.SPLIT.options(9))) {
                expected = p.run(ffn, 4);
            }
            ExecutorService pool = Executors.newFixedThreadPool(2);
            try {
                List<Future<List<float[]>>> results = new ArrayList<>();
                for (int thread = 0; thread < 2; thread++) {
                    results.add(pool.submit(() -> {
                        try (SparseFfn ffn = new SparseFfn(ctx, 64, 128, dtype, Mode.SPLIT.options(9))) {
                            return p.run(ffn, 4);
                        }
                    }));
                }
                for (Future<List<float[]>> result : results) {
                    List<float[]> actual = result.get();
                    for (int i = 0; i < expected.size(); i++) {
                        assertArrayEquals(bits(expected.get(i)), bits(actual.get(i)), "output " + i);
                    }
                }
            } finally {
                pool.shutdown();
            }
        }
    }

    @Test
    void stepsAdvancePerPlan() {
        DType dtype = dtypes().get(0);
        try (Problem p = new Problem(8, 8, 16, dtype, 1);
             SparseFfn ffn = new SparseFfn(ctx, 8, 16, dtype, SparseFfnOptions.defaults());
             ForwardResult first = ffn.forward(p.xt, p.w1t, p.w2t);
             ForwardResult second = ffn.forward(p.xt, p.w1t, p.w2t)) {
            assertEquals(0, first.saved().step());
            assertEquals(1, second.saved().step());
        }
    }

    static int[] bits(float[] values) {
        int[] b = new int[values.length];
        for (int i = 0; i < values.length; i++) {
            b[i] = Float.floatToRawIntBits(values[i]);
        }
        return b;
    }
}
