package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;
import static org.sparse24.MessageAssertions.assertThrowsNaming;

import java.util.Random;

import org.bytedeco.javacpp.Pointer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Outputs aliasing inputs, size overflows and a backward given another forward's inputs are rejected clearly. */
class MisuseTest {
    static final int T = 8;
    static final int D = 8;
    static final int F = 16;

    Sparse24 ctx;
    Tensor x;
    Tensor w1;
    Tensor w2;
    Tensor dz;
    SparseFfn ffn;

    @BeforeEach
    void setUp() {
        ctx = Sparse24.cpu();
        Random random = new Random(1);
        x = Tensor.fromFloats(ctx, DType.FP32, TestData.normal(random, T * D, 1), T, D).named("x");
        w1 = Tensor.fromFloats(ctx, DType.FP32, TestData.normal(random, F * D, 1), F, D).named("w1");
        w2 = Tensor.fromFloats(ctx, DType.FP32, TestData.normal(random, D * F, 1), D, F).named("w2");
        dz = Tensor.fromFloats(ctx, DType.FP32, TestData.normal(random, T * D, 1), T, D).named("dz");
        ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
    }

    @AfterEach
    void tearDown() {
        ctx.close();
    }

    private Tensor alias(Tensor t, long... shape) {
        return Tensor.borrow(ctx, t.data(), t.dtype(), shape);
    }

    @Test
    void gradientAliasingAnInputIsRejected() {
        try (ForwardResult r = ffn.forward(x, w1, w2);
             Tensor dxOnDz = alias(dz, T, D);
             Tensor dxOnX = alias(x, T, D);
             Tensor dw2OnW2 = alias(w2, D, F);
             Tensor dw1 = Tensor.allocate(ctx, DType.FP32, F, D);
             Tensor dw2OnDw1 = alias(dw1, D, F)) {
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> ffn.backward(r.saved(), x, w1, w2, dz, dxOnDz, null, null), "dx", "overlaps", "dz");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> ffn.backward(r.saved(), x, w1, w2, dz, dxOnX, null, null), "dx", "overlaps", "x");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> ffn.backward(r.saved(), x, w1, w2, dz, null, null, dw2OnW2), "dw2", "w2");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> ffn.backward(r.saved(), x, w1, w2, dz, null, dw1, dw2OnDw1), "dw1", "dw2");
        }
    }

    @Test
    void outputAliasingAnInputIsRejected() {
        try (Tensor zOnX = alias(x, T, D);
             SavedState saved = ffn.newSavedState(T);
             Tensor partlyOnX = Tensor.borrow(ctx, new Pointer(x.data()).position(0).getPointer(4 * 4), DType.FP32,
                     T, D);
             Tensor h = Tensor.allocate(ctx, DType.FP32, T, F)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.forward(x, w1, w2, zOnX, saved), "z", "x");
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.infer(x, w1, w2, partlyOnX), "z", "x");
            try (Tensor hOnW1 = alias(w1, T, F)) {
                assertThrowsNaming(IllegalArgumentException.class,
                        () -> Sparse24Ops.gemm(x, false, w1, true, hOnW1), "c", "overlaps", "b");
            }
            Sparse24Ops.gemm(x, false, w1, true, h);  // disjoint: fine
        }
    }

    @Test
    void backwardWithAnotherForwardsInputIsRejected() {
        try (ForwardResult r = ffn.forward(x, w1, w2);
             Tensor otherX = Tensor.fromFloats(ctx, DType.FP32, x.toFloats(), T, D).named("x2")) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.backward(r.saved(), otherX, w1, w2, dz),
                    "x", "x2", "not the memory the forward");
            try (Tensor sameMemory = alias(x, T, D); Gradients g = ffn.backward(r.saved(), sameMemory, w1, w2, dz)) {
                assertEquals(T, g.dx().dim(0));  // another wrapper of the forward's memory is fine
            }
        }
    }

    @Test
    void elementCountOverflowIsAnIllegalArgument() {
        assertThrowsNaming(IllegalArgumentException.class,
                () -> Tensor.allocate(ctx, DType.FP32, 1L << 32, 1L << 32), "[4294967296, 4294967296]", "exceeds");
        assertThrowsNaming(IllegalArgumentException.class,
                () -> Tensor.allocate(ctx, DType.FP32, 1L << 61, 2), "bytes exceeds");
        assertThrowsNaming(IllegalArgumentException.class,
                () -> Tensor.borrow(ctx, x.data(), DType.BF16, Long.MAX_VALUE / 2 + 1), "exceeds");
    }

    @Test
    void nativeSizeOverflowIsAnInvalidArgument() {
        Sparse24Exception e = assertThrowsNaming(Sparse24Exception.class,
                () -> Sparse24Ops.packedSize(Layout.DENSE, DType.FP32, (1L << 31) - 1, (1L << 31) - 4), "exceeds");
        assertEquals("S24_ERROR_INVALID_ARGUMENT", e.status());
        // sizes that used to wrap: the forward scratch T*f*4 bytes
        try (SparseFfn huge = new SparseFfn(ctx, (1L << 31) - 1, (1L << 31) - 4, DType.FP32,
                SparseFfnOptions.defaults())) {
            e = assertThrowsNaming(Sparse24Exception.class, () -> huge.planInfo((1L << 31) - 1), "exceeds");
            assertEquals("S24_ERROR_INVALID_ARGUMENT", e.status());
        }
        try (SparseFfn wide = new SparseFfn(ctx, 1692000292L, 1692000292L, DType.FP32, SparseFfnOptions.defaults())) {
            e = assertThrowsNaming(Sparse24Exception.class, () -> wide.planInfo(1779972103L), "exceeds");
            assertEquals("S24_ERROR_INVALID_ARGUMENT", e.status());
        }
    }

    @Test
    void hugePermutationIsAnIllegalArgument() {
        assumeTrue(Runtime.getRuntime().maxMemory() < 4L * Integer.MAX_VALUE, "the heap could hold it");
        assertThrowsNaming(IllegalArgumentException.class,
                () -> Sparse24Ops.tokenPermutation(0, 0, Integer.MAX_VALUE), "tokens = 2147483647", "heap");
    }
}
