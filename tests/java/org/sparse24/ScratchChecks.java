package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparse24.MessageAssertions.assertThrowsNaming;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.Test;

/**
 * Scratch retention ({@link Sparse24#setScratchRetention}, {@link Sparse24#releaseScratch},
 * {@link Sparse24#scratchMemory}): what a context keeps between calls after one large step, after trims, under
 * (0, 0), in steady training, and under the default rule after one call above 256 MiB; bad arguments.
 */
abstract class ScratchChecks {
    abstract Backend backend();

    /** The element type of every case: bf16. */
    DType dtype() {
        return DType.BF16;
    }

    /** {d, f, small T, large T}: the large step needs more scratch than the small one. */
    abstract int[] shape();

    /** {d, f, T} of one inference that needs more than {@link Sparse24#DEFAULT_SCRATCH_MAX_BYTES}, and its dtype. */
    abstract int[] hugeShape();

    abstract DType hugeDtype();

    /** One FFN shape's inputs; {@link #step} runs a forward and a backward and returns every output. */
    static final class Inputs implements AutoCloseable {
        final SparseFfn ffn;
        final Tensor x;
        final Tensor w1;
        final Tensor w2;
        final Tensor dz;
        private SavedState saved;

        Inputs(SparseFfn ffn, int tokens, long seed) {
            Random random = new Random(seed);
            Sparse24 ctx = ffn.context();
            int d = (int) ffn.dModel();
            int f = (int) ffn.dFf();
            this.ffn = ffn;
            x = Tensor.fromFloats(ctx, ffn.dtype(), TestData.normal(random, tokens * d, 1), tokens, d);
            w1 = Tensor.fromFloats(ctx, ffn.dtype(), TestData.normal(random, f * d, 1 / Math.sqrt(d)), f, d);
            w2 = Tensor.fromFloats(ctx, ffn.dtype(), TestData.normal(random, d * f, 1 / Math.sqrt(f)), d, f);
            dz = Tensor.fromFloats(ctx, ffn.dtype(), TestData.normal(random, tokens * d, 1), tokens, d);
        }

        /** A training forward (one counted call); its output. */
        float[] forward() {
            closeSaved();
            ForwardResult r = ffn.forward(x, w1, w2);
            saved = r.saved();
            try (Tensor z = r.output()) {
                return z.toFloats();
            }
        }

        /** The backward of the last forward (one counted call); dX, dW1, dW2 one after the other. */
        float[] backward() {
            try (Gradients g = ffn.backward(saved, x, w1, w2, dz)) {
                return concat(g.dx().toFloats(), g.dw1().toFloats(), g.dw2().toFloats());
            }
        }

        float[] step() {
            float[] z = forward();
            return concat(z, backward());
        }

        /** An inference (one counted call). */
        void infer() {
            ffn.infer(x, w1, w2).close();
        }

        private void closeSaved() {
            if (saved != null) {
                saved.close();
                saved = null;
            }
        }

        @Override
        public void close() {
            closeSaved();
            for (Tensor t : new Tensor[] {x, w1, w2, dz}) {
                t.close();
            }
        }

        private static float[] concat(float[]... parts) {
            int n = 0;
            for (float[] p : parts) {
                n += p.length;
            }
            float[] out = new float[n];
            int at = 0;
            for (float[] p : parts) {
                System.arraycopy(p, 0, out, at, p.length);
                at += p.length;
            }
            return out;
        }
    }

    /** Options with no tuning (the same sizes every call of a shape) and no permutation (the same gradients). */
    private static SparseFfnOptions options() {
        return SparseFfnOptions.builder().algorithmSearch(false).permuteTokens(false).build();
    }

    private SparseFfn ffn(Sparse24 ctx) {
        int[] s = shape();
        return new SparseFfn(ctx, s[0], s[1], dtype(), options());
    }

    /** The same outputs (bit for bit on the CPU; on CUDA within 1e-3, far below what stale memory would give). */
    private void assertSameOutputs(float[] expected, float[] actual, String what) {
        if (backend() == Backend.CPU) {
            assertArrayEquals(expected, actual, what);
        } else {
            double[] e = new double[expected.length];
            for (int i = 0; i < e.length; i++) {
                e[i] = expected[i];
            }
            TestData.assertClose(what, actual, e, 1e-3);
        }
    }

    @Test
    void aNewContextHasTheDefaultRule() {
        try (Sparse24 ctx = Sparse24.create(backend())) {
            ScratchMemory m = ctx.scratchMemory();
            assertEquals(Sparse24.DEFAULT_SCRATCH_MAX_BYTES, m.maxBytes(), m.toString());
            assertEquals(Sparse24.DEFAULT_SCRATCH_CALLS, m.calls(), m.toString());
            assertEquals(256L << 20, Sparse24.DEFAULT_SCRATCH_MAX_BYTES);
            assertEquals(0, m.releases(), m.toString());
            assertEquals(m.ffnScratchBytes() + m.workspaceBytes(), m.retainedBytes(), m.toString());
            assertEquals(m.retainedBytes(), ctx.retainedScratchBytes());
        }
    }

    @Test
    void aLargeStepIsKeptWhileInTheWindowThenReleasedDownToTheMark() {
        int[] s = shape();
        try (Sparse24 ctx = Sparse24.create(backend()); SparseFfn ffn = ffn(ctx);
             Inputs small = new Inputs(ffn, s[2], 1); Inputs large = new Inputs(ffn, s[3], 2)) {
            ctx.setScratchRetention(Long.MAX_VALUE, 3);
            float[] smallOut = small.step();
            long mark = ctx.retainedScratchBytes();  // what a small step holds
            large.step();
            long peak = ctx.retainedScratchBytes();
            assertTrue(peak > mark, "the large step holds " + peak + " bytes, the small one " + mark);
            assertTrue(ctx.scratchMemory().ffnScratchBytes() >= ffn.planInfo(s[3]).workspaceBytes(),
                    ctx.scratchMemory() + " vs " + ffn.planInfo(s[3]));

            ctx.setScratchRetention(mark, 3);  // the last 3 calls: small backward, large forward, large backward
            long releases = ctx.scratchMemory().releases();
            List<Long> after = new ArrayList<>(List.of(ctx.retainedScratchBytes()));
            small.forward();
            after.add(ctx.retainedScratchBytes());
            small.backward();  // the large backward is still among the last 3 calls
            after.add(ctx.retainedScratchBytes());
            small.forward();  // now it is not
            after.add(ctx.retainedScratchBytes());
            float[] again = small.step();
            after.add(ctx.retainedScratchBytes());
            // (at least the peak: on CUDA a small call may need more of some workspace than the large one did)
            assertTrue(after.subList(0, 3).stream().allMatch(b -> b >= peak), "kept while in the window: peak "
                    + peak + ", " + after);
            assertTrue(after.get(3) <= mark && after.get(4) <= mark, "released down to the mark " + mark + ": "
                    + after);
            assertTrue(ctx.scratchMemory().releases() > releases, ctx.scratchMemory().toString());
            assertSameOutputs(smallOut, again, "the small step after the release");
        }
    }

    @Test
    void releaseScratchFreesEverythingAndTheNextStepComputesTheSame() {
        int[] s = shape();
        try (Sparse24 ctx = Sparse24.create(backend()); SparseFfn ffn = ffn(ctx);
             Inputs inputs = new Inputs(ffn, s[3], 3)) {
            float[] first = inputs.step();
            ScratchMemory before = ctx.scratchMemory();
            assertTrue(before.ffnScratchBytes() >= ffn.planInfo(s[3]).workspaceBytes(), before.toString());
            ctx.releaseScratch();
            ScratchMemory after = ctx.scratchMemory();
            assertEquals(0, after.retainedBytes(), after.toString());
            assertEquals(0, after.ffnScratchBytes(), after.toString());
            assertEquals(0, after.workspaceBytes(), after.toString());
            assertTrue(after.releases() > before.releases(), after.toString());
            assertSameOutputs(first, inputs.step(), "the step after releaseScratch");
            assertTrue(ctx.retainedScratchBytes() > 0);
        }
    }

    @Test
    void zeroBytesAndZeroCallsKeepNothingAfterAnyCall() {
        int[] s = shape();
        float[] expected;
        try (Sparse24 ctx = Sparse24.create(backend()); SparseFfn ffn = ffn(ctx);
             Inputs inputs = new Inputs(ffn, s[3], 4)) {
            expected = inputs.step();
        }
        try (Sparse24 ctx = Sparse24.create(backend()); SparseFfn ffn = ffn(ctx);
             Inputs inputs = new Inputs(ffn, s[3], 4)) {
            ctx.setScratchRetention(0, 0);
            assertEquals(0, ctx.retainedScratchBytes(), "applied when set");
            float[] z = inputs.forward();
            assertEquals(0, ctx.retainedScratchBytes(), "after the forward");
            float[] grads = inputs.backward();
            assertEquals(0, ctx.retainedScratchBytes(), "after the backward");
            assertSameOutputs(expected, Inputs.concat(z, grads), "forward and backward releasing after every call");
        }
    }

    @Test
    void steadyTrainingReleasesNothingEvenAboveTheMark() {
        int[] s = shape();
        try (Sparse24 ctx = Sparse24.create(backend()); SparseFfn ffn = ffn(ctx);
             Inputs inputs = new Inputs(ffn, s[3], 5)) {
            inputs.step();
            // Everything is above the mark now, but the window holds the step's forward and backward. (Set before
            // the first call, the rule would release a CUDA context's cuBLASLt workspace, which no call asked for
            // yet.)
            ctx.setScratchRetention(0, Sparse24.DEFAULT_SCRATCH_CALLS);
            inputs.step();
            ScratchMemory first = ctx.scratchMemory();
            for (int i = 0; i < 5; i++) {
                inputs.step();
                assertEquals(first, ctx.scratchMemory(), "step " + i + ": forward and backward alternate within the "
                        + "window, so nothing is released and nothing grows");
            }
            assertEquals(0, first.releases(), first.toString());
        }
    }

    @Test
    void belowTheMarkNothingIsReleasedEvenWithAnEmptyWindow() {
        int[] s = shape();
        try (Sparse24 ctx = Sparse24.create(backend()); SparseFfn ffn = ffn(ctx);
             Inputs small = new Inputs(ffn, s[2], 6); Inputs large = new Inputs(ffn, s[3], 7)) {
            ctx.setScratchRetention(Long.MAX_VALUE, 0);
            assertEquals(Long.MAX_VALUE, ctx.scratchMemory().maxBytes());
            large.step();
            long largeStep = ctx.retainedScratchBytes();
            small.step();
            small.step();
            long peak = ctx.retainedScratchBytes();
            assertTrue(peak >= largeStep, peak + " < " + largeStep);
            assertEquals(0, ctx.scratchMemory().releases());
            ctx.setScratchRetention(peak, 0);  // at the mark: still nothing released
            small.step();
            assertEquals(peak, ctx.retainedScratchBytes());
            assertEquals(0, ctx.scratchMemory().releases());
            ctx.setScratchRetention(peak - 1, 0);  // above it: everything released at once (the window is empty)
            assertEquals(0, ctx.retainedScratchBytes(), ctx.scratchMemory().toString());
        }
    }

    @Test
    void theDefaultRuleReleasesAOneOffCallAbove256MiBAfter64Calls() {
        int[] h = hugeShape();
        int[] s = shape();
        try (Sparse24 ctx = Sparse24.create(backend());
             SparseFfn ffn = new SparseFfn(ctx, h[0], h[1], hugeDtype(), options());
             Inputs huge = new Inputs(ffn, h[2], 8); Inputs small = new Inputs(ffn, s[2], 9)) {
            huge.infer();
            long peak = ctx.retainedScratchBytes();
            assertTrue(peak > Sparse24.DEFAULT_SCRATCH_MAX_BYTES, "the huge call holds " + peak + " bytes");
            for (int i = 0; i < Sparse24.DEFAULT_SCRATCH_CALLS - 1; i++) {
                small.infer();
            }
            long kept = ctx.retainedScratchBytes();
            assertTrue(kept >= peak, "kept while among the last 64 calls: " + kept + " < " + peak);
            small.infer();
            assertTrue(ctx.retainedScratchBytes() <= Sparse24.DEFAULT_SCRATCH_MAX_BYTES,
                    "released after 64 calls: " + ctx.scratchMemory());
        }
    }

    @Test
    void badArgumentsAreRejectedNamingThem() {
        Sparse24 ctx = Sparse24.create(backend());
        try {
            assertThrowsNaming(IllegalArgumentException.class, () -> ctx.setScratchRetention(-1, 4), "maxBytes", "-1");
            assertThrowsNaming(IllegalArgumentException.class, () -> ctx.setScratchRetention(1 << 20, -1), "calls",
                    "-1");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> ctx.setScratchRetention(Long.MIN_VALUE, Long.MIN_VALUE), "maxBytes");
            ScratchMemory m = ctx.scratchMemory();
            assertEquals(Sparse24.DEFAULT_SCRATCH_MAX_BYTES, m.maxBytes(), "unchanged: " + m);
            assertEquals(Sparse24.DEFAULT_SCRATCH_CALLS, m.calls(), "unchanged: " + m);
        } finally {
            ctx.close();
        }
        assertThrows(IllegalStateException.class, () -> ctx.setScratchRetention(0, 0));
        assertThrows(IllegalStateException.class, ctx::releaseScratch);
        assertThrows(IllegalStateException.class, ctx::scratchMemory);
    }
}
