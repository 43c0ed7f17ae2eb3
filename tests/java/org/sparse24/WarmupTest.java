package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparse24.MessageAssertions.assertThrowsNaming;
import static org.sparse24.TestData.normal;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The dense warm-up on the CPU backend: the first n training forwards (and their backwards) of a SparseFfn are
 * bit-identical to the dense FFN's, the later ones to the same options without warm-up, step by step.
 */
class WarmupTest {
    private static final int T = 24;
    private static final int D = 16;
    private static final int F = 64;
    private static final int WARMUP = 2;

    private final List<AutoCloseable> open = new ArrayList<>();
    private Sparse24 ctx;
    private Tensor x;
    private Tensor w1;
    private Tensor w2;
    private Tensor dz;

    @BeforeEach
    void setUp() {
        ctx = Sparse24.cpu();
        Random r = new Random(3);
        x = keep(Tensor.fromFloats(ctx, DType.FP32, normal(r, T * D, 1), T, D));
        w1 = keep(Tensor.fromFloats(ctx, DType.FP32, normal(r, F * D, 0.3), F, D));
        w2 = keep(Tensor.fromFloats(ctx, DType.FP32, normal(r, D * F, 0.2), D, F));
        dz = keep(Tensor.fromFloats(ctx, DType.FP32, normal(r, T * D, 1), T, D));
    }

    @AfterEach
    void tearDown() throws Exception {
        for (int i = open.size() - 1; i >= 0; i--) {
            open.get(i).close();
        }
        ctx.close();
    }

    @Test
    void optionValidatedAndKept() {
        assertEquals(0, SparseFfnOptions.defaults().denseWarmupSteps());
        SparseFfnOptions o = SparseFfnOptions.builder().denseWarmupSteps(5).build();
        assertEquals(5, o.denseWarmupSteps());
        assertEquals(o, o.toBuilder().build());
        assertThrowsNaming(IllegalArgumentException.class,
                () -> SparseFfnOptions.builder().denseWarmupSteps(-1).build(), "denseWarmupSteps", ">= 0", "-1");
    }

    @Test
    void warmupStepsAreDenseThenTheOptionsApply() {
        SparseFfnOptions sparse = SparseFfnOptions.defaults();
        SparseFfnOptions options = sparse.toBuilder().denseWarmupSteps(WARMUP).build();
        SparseFfn warm = keep(new SparseFfn(ctx, D, F, DType.FP32, options));
        SparseFfn dense = keep(new SparseFfn(ctx, D, F, DType.FP32, sparse.warmupOptions()));
        SparseFfn cold = keep(new SparseFfn(ctx, D, F, DType.FP32, sparse));
        for (int step = 0; step < WARMUP + 3; step++) {
            boolean warmup = step < WARMUP;
            assertEquals(step, warm.stepsTaken(), "stepsTaken");
            assertEquals(!warmup, warm.isSparseNow(), "isSparseNow at step " + step);
            float[][] inferred = {infer(warm), infer(warmup ? dense : cold)};
            assertArrayEquals(inferred[1], inferred[0], "infer() at step " + step + " (it takes no step)");
            float[][] got = step(warm);
            float[][] want = step(warmup ? dense : cold);
            for (int i = 0; i < got.length; i++) {
                assertArrayEquals(want[i], got[i], "step " + step + ": " + OUTPUTS[i]);
            }
            if (!warmup) {
                float[][] exact = step(dense);
                assertFalse(Arrays.equals(exact[0], got[0]), "step " + step + " should be 2:4, not dense");
            }
        }
        assertEquals(WARMUP + 3, warm.stepsTaken());
        assertEquals(WARMUP, dense.stepsTaken() - 3, "the dense twin took the warm-up steps and 3 more");
    }

    @Test
    void aBackwardRunsInTheModeOfItsForward() {
        SparseFfnOptions sparse = SparseFfnOptions.defaults();
        SparseFfn warm = keep(new SparseFfn(ctx, D, F, DType.FP32, sparse.toBuilder().denseWarmupSteps(1).build()));
        SparseFfn dense = keep(new SparseFfn(ctx, D, F, DType.FP32, sparse.warmupOptions()));
        SparseFfn cold = keep(new SparseFfn(ctx, D, F, DType.FP32, sparse));
        ForwardResult first = keep(warm.forward(x, w1, w2));   // dense warm-up step
        ForwardResult second = keep(warm.forward(x, w1, w2));  // 2:4 step
        assertTrue(first.saved().denseWarmup());
        assertFalse(second.saved().denseWarmup());
        assertTrue(first.saved().toString().contains("dense warm-up"), first.saved().toString());
        assertFalse(first.saved().sparsity().forwardSparse());
        assertTrue(second.saved().sparsity().forwardSparse());
        // backwards in reverse order, after the switch
        float[] dxSparse = backward(warm, second)[0];
        float[] dxDense = backward(warm, first)[0];
        assertArrayEquals(step(dense)[1], dxDense, "dX of the warm-up step");
        assertArrayEquals(step(cold)[1], dxSparse, "dX of the 2:4 step");
    }

    @Test
    void aSavedStateServesOnlyItsMode() {
        SparseFfn warm = keep(new SparseFfn(ctx, D, F, DType.FP32,
                SparseFfnOptions.builder().denseWarmupSteps(1).build()));
        SavedState early = keep(warm.newSavedState(T));
        SavedState late = keep(warm.newSavedState(T));
        Tensor z = keep(Tensor.allocate(ctx, DType.FP32, T, D));
        warm.forward(x, w1, w2, z, early);
        assertThrowsNaming(IllegalStateException.class, () -> warm.forward(x, w1, w2, z, late),
                "saved:", "dense warm-up step", "training forward 1 is a 2:4 step", "denseWarmupSteps=1",
                "newSavedState");
        assertEquals(1, warm.stepsTaken(), "a rejected forward takes no step");
        SavedState now = keep(warm.newSavedState(T));
        warm.forward(x, w1, w2, z, now);
        assertFalse(now.denseWarmup());
        assertEquals(2, warm.stepsTaken());
    }

    @Test
    void denseOptionsAreNeverSparse() {
        SparseFfn ffn = keep(new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.dense()));
        assertFalse(ffn.isSparseNow());
        keep(ffn.forward(x, w1, w2));
        assertFalse(ffn.isSparseNow());
        assertEquals(1, ffn.stepsTaken());
    }

    private static final String[] OUTPUTS = {"z", "dX", "dW1", "dW2"};

    /** One training forward and its backward: z, dX, dW1, dW2. */
    private float[][] step(SparseFfn ffn) {
        try (ForwardResult f = ffn.forward(x, w1, w2)) {
            float[][] grads = backward(ffn, f);
            return new float[][] {f.output().toFloats(), grads[0], grads[1], grads[2]};
        }
    }

    private float[][] backward(SparseFfn ffn, ForwardResult f) {
        try (Gradients g = ffn.backward(f.saved(), x, w1, w2, dz)) {
            return new float[][] {g.dx().toFloats(), g.dw1().toFloats(), g.dw2().toFloats()};
        }
    }

    private float[] infer(SparseFfn ffn) {
        try (Tensor z = ffn.infer(x, w1, w2)) {
            return z.toFloats();
        }
    }

    private <C extends AutoCloseable> C keep(C resource) {
        open.add(resource);
        return resource;
    }
}
