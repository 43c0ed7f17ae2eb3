package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparse24.torch.TorchTestData.assertClose;
import static org.sparse24.torch.TorchTestData.floats;
import static org.sparse24.torch.TorchTestData.normal;
import static org.sparse24.torch.TorchTestData.param;
import static org.sparse24.torch.TorchTestData.tensor;

import java.util.Random;

import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;

/**
 * The dense warm-up through {@link SparseFfnFunction} (CPU, FP32): the first steps' gradients are LibTorch's
 * autograd of the dense FFN, the later ones of the 2:4-masked FFN; a backward after the switch keeps its
 * forward's mode.
 */
class SparseFfnFunctionWarmupTest {
    private static final int D = 24;
    private static final int F = 96;
    private static final int T = 40;
    private static final double TOL = 1e-4;

    private Sparse24 ctx;
    private Tensor x;
    private Tensor w1;
    private Tensor w2;

    @BeforeEach
    void setUp() {
        ctx = Sparse24.cpu();
        Random r = new Random(9);
        x = param(normal(r, T * D, 1), T, D);
        w1 = param(normal(r, F * D, 0.3), F, D);
        w2 = param(normal(r, D * F, 0.2), D, F);
    }

    @AfterEach
    void tearDown() {
        ctx.close();
    }

    /** The 2:4 forward with exact weight gradients, after {@code warmup} dense steps. */
    private SparseFfn ffn(int warmup) {
        return new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.builder().sparseBackward(false)
                .denseWarmupSteps(warmup).build());
    }

    @Test
    void gradientsAreDenseDuringTheWarmupThenMasked() {
        int warmup = 2;
        try (SparseFfn ffn = ffn(warmup); SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            for (int step = 0; step < warmup + 2; step++) {
                boolean dense = step < warmup;
                assertEquals(step, ffn.stepsTaken());
                assertEquals(!dense, ffn.isSparseNow());
                float[][] got = gradients(f.apply(x, w1, w2));
                float[][] want = gradients(dense ? SparseFfnFunctionTest.plainDense(x, w1, w2)
                        : SparseFfnFunctionTest.plainMasked(x, w1, w2));
                compare("step " + step, want, got);
                if (!dense) { // the masked FFN really differs from the dense one here
                    float[][] exact = gradients(SparseFfnFunctionTest.plainDense(x, w1, w2));
                    assertFalse(close(exact[0], got[0]), "step " + step + ": z equals the dense FFN's");
                }
            }
            assertEquals(0, f.pendingForwards());
        }
    }

    @Test
    void aWarmupForwardBackpropagatedAfterTheSwitchStaysDense() {
        try (SparseFfn ffn = ffn(1); SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor zDense = f.apply(x, w1, w2);
            Tensor zSparse = f.apply(x, w1, w2);
            assertTrue(ffn.isSparseNow());
            assertEquals(2, f.pendingForwards());
            float[][] sparse = gradients(zSparse);
            float[][] dense = gradients(zDense);
            compare("2:4 step", gradients(SparseFfnFunctionTest.plainMasked(x, w1, w2)), sparse);
            compare("warm-up step", gradients(SparseFfnFunctionTest.plainDense(x, w1, w2)), dense);
            assertEquals(0, f.pendingForwards());
        }
    }

    /** z and the gradients of sum(z * c) (a fixed c) for x, w1, w2: {z, dX, dW1, dW2}; clears the .grad()s. */
    private float[][] gradients(Tensor z) {
        float[] zs = floats(z.detach());
        float[] c = new float[zs.length];
        for (int i = 0; i < c.length; i++) {
            c[i] = (float) Math.sin(0.37 * i);
        }
        z.mul(tensor(c, T, D)).sum().backward();
        float[][] out = {zs, floats(x.grad()), floats(w1.grad()), floats(w2.grad())};
        for (Tensor t : new Tensor[] {x, w1, w2}) {
            t.grad().zero_();
        }
        return out;
    }

    private static void compare(String what, float[][] want, float[][] got) {
        String[] names = {"z", "dX", "dW1", "dW2"};
        for (int i = 0; i < names.length; i++) {
            assertClose(what + ": " + names[i], want[i], got[i], TOL);
        }
    }

    private static boolean close(float[] a, float[] b) {
        try {
            assertClose("", a, b, TOL);
            return true;
        } catch (AssertionError e) {
            return false;
        }
    }
}
