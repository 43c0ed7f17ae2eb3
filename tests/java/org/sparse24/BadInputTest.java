package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;
import static org.sparse24.MessageAssertions.assertThrowsNaming;

import java.util.Random;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Pointer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Bad inputs give a clear exception naming the argument (and never reach native code where they could crash
 * the JVM). The FFN here: T=6, d=8, f=12, BF16, on the CPU backend.
 */
class BadInputTest {
    private static final int T = 6;
    private static final int D = 8;
    private static final int F = 12;

    private Sparse24 ctx;
    private SparseFfn ffn;
    private Tensor x;
    private Tensor w1;
    private Tensor w2;
    private Tensor dz;

    @BeforeEach
    void setUp() {
        ctx = Sparse24.cpu();
        ffn = new SparseFfn(ctx, D, F, DType.BF16, SparseFfnOptions.defaults());
        Random random = new Random(1);
        x = tensor(ctx, DType.BF16, random, T, D);
        w1 = tensor(ctx, DType.BF16, random, F, D);
        w2 = tensor(ctx, DType.BF16, random, D, F);
        dz = tensor(ctx, DType.BF16, random, T, D);
    }

    @AfterEach
    void tearDown() {
        ctx.close();
    }

    private static Tensor tensor(Sparse24 ctx, DType dtype, Random random, long... shape) {
        int n = 1;
        for (long s : shape) {
            n *= (int) s;
        }
        return Tensor.fromFloats(ctx, dtype, TestData.normal(random, n, 1), shape);
    }

    @Test
    void xWithWrongWidth() {
        try (Tensor bad = Tensor.allocate(ctx, DType.BF16, T, D + 1)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.forward(bad, w1, w2), "x:", "[T, d]",
                    "[*, 8]", "[6, 9]");
        }
    }

    @Test
    void xWithWrongRank() {
        try (Tensor bad = Tensor.allocate(ctx, DType.BF16, 2, T, D)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.infer(bad, w1, w2), "x:", "[T, d]",
                    "[*, 8]", "[2, 6, 8]");
        }
    }

    @Test
    void w1Transposed() {
        try (Tensor bad = Tensor.allocate(ctx, DType.BF16, D, F)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.forward(x, bad, w2), "w1:", "[f, d]",
                    "[12, 8]", "[8, 12]");
        }
    }

    @Test
    void w2Transposed() {
        try (Tensor bad = Tensor.allocate(ctx, DType.BF16, F, D)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.forward(x, w1, bad), "w2:", "[d, f]",
                    "[8, 12]", "[12, 8]");
        }
    }

    @Test
    void dzWithOtherTokenCount() {
        try (ForwardResult r = ffn.forward(x, w1, w2); Tensor bad = Tensor.allocate(ctx, DType.BF16, T + 1, D)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.backward(r.saved(), x, w1, w2, bad), "dz:",
                    "[6, 8]", "[7, 8]");
        }
    }

    @Test
    void providedOutputsWithWrongShapes() {
        try (Tensor z = Tensor.allocate(ctx, DType.BF16, T, F);
             Tensor dw2 = Tensor.allocate(ctx, DType.BF16, F, D);
             ForwardResult r = ffn.forward(x, w1, w2)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.infer(x, w1, w2, z), "z:", "[T, d]",
                    "[6, 8]", "[6, 12]");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> ffn.backward(r.saved(), x, w1, w2, dz, null, null, dw2), "dw2:", "[d, f]", "[8, 12]", "[12, 8]");
        }
    }

    @Test
    void ffnWidthNotAMultipleOfFour() {
        assertThrowsNaming(IllegalArgumentException.class, () -> new SparseFfn(ctx, D, 10, DType.BF16,
                SparseFfnOptions.defaults()), "dFf", "multiple of 4", "10");
    }

    @Test
    void nonPositiveSizes() {
        assertThrowsNaming(IllegalArgumentException.class, () -> new SparseFfn(ctx, 0, F, DType.BF16,
                SparseFfnOptions.defaults()), "dModel", ">= 1", "got 0");
        assertThrowsNaming(IllegalArgumentException.class, () -> new SparseFfn(ctx, D, -4, DType.BF16,
                SparseFfnOptions.defaults()), "dFf", "positive multiple of 4", "got -4");
        assertThrowsNaming(IllegalArgumentException.class, () -> Tensor.allocate(ctx, DType.BF16, 4, 0), "shape[1]",
                ">= 1", "got 0");
        assertThrowsNaming(IllegalArgumentException.class, () -> Tensor.allocate(ctx, DType.BF16, -3, 4), "shape[0]",
                ">= 1", "got -3");
        assertThrowsNaming(IllegalArgumentException.class, () -> ffn.planInfo(0), "tokens", ">= 1", "got 0");
    }

    @Test
    void dtypeMismatch() {
        try (Tensor fp32 = Tensor.allocate(ctx, DType.FP32, T, D)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.forward(fp32, w1, w2), "x:", "BF16", "FP32");
        }
    }

    @Test
    void closedTensor() {
        w2.named("weights2").close();
        assertThrowsNaming(IllegalStateException.class, () -> ffn.forward(x, w1, w2), "w2:", "'weights2'", "closed");
        assertThrowsNaming(IllegalStateException.class, w2::toFloats, "'weights2'", "closed");
        w2.close(); // idempotent
    }

    @Test
    void nullTensor() {
        assertThrowsNaming(IllegalArgumentException.class, () -> ffn.forward(x, w1, null), "w2 must not be null",
                "[d, f]");
        assertThrowsNaming(IllegalArgumentException.class, () -> ffn.backward(null, x, w1, w2, dz),
                "saved must not be null", "T=6");
    }

    @Test
    void tensorOfAnotherContext() {
        try (Sparse24 other = Sparse24.cpu(); Tensor foreign = Tensor.allocate(other, DType.BF16, F, D)) {
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.forward(x, foreign, w2), "w1:",
                    "another context");
        }
    }

    @Test
    void cudaRequestedWithoutAGpu() {
        try (Sparse24 auto = Sparse24.create(Backend.AUTO)) {
            assumeTrue(auto.backend() == Backend.CPU, "a usable GPU is present");
        }
        Sparse24Exception e = assertThrows(Sparse24Exception.class, () -> Sparse24.cuda(0));
        assertTrue(e.status().equals("S24_ERROR_BACKEND_UNAVAILABLE") || e.status().equals("S24_ERROR_LIBRARY_NOT_FOUND"),
                e.getMessage());
        assertTrue(e.getMessage().startsWith(e.status() + ": "), e.getMessage());
    }

    @Test
    void denseFractionOutOfRange() {
        for (double bad : new double[] {-0.01, 1.5, Double.NaN}) {
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> SparseFfnOptions.builder().denseFraction(bad).build(), "denseFraction", "[0, 1]",
                    "got " + bad);
        }
    }

    @Test
    void sparseBackwardWithoutSparseForward() {
        assertThrowsNaming(IllegalArgumentException.class,
                () -> SparseFfnOptions.builder().sparseForward(false).build(), "sparseBackward", "sparseForward");
    }

    @Test
    void backwardWithClosedSavedState() {
        ForwardResult r = ffn.forward(x, w1, w2);
        r.close();
        assertThrowsNaming(IllegalStateException.class, () -> ffn.backward(r.saved(), x, w1, w2, dz), "saved",
                "closed");
    }

    @Test
    void backwardWithUnfilledOrForeignSavedState() {
        try (SavedState empty = ffn.newSavedState(T);
             SavedState otherTokens = ffn.newSavedState(T + 2);
             SparseFfn other = new SparseFfn(ctx, D, F, DType.BF16, SparseFfnOptions.defaults());
             ForwardResult foreign = other.forward(x, w1, w2)) {
            assertThrowsNaming(IllegalStateException.class, () -> ffn.backward(empty, x, w1, w2, dz), "saved",
                    "not been filled");
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.backward(otherTokens, x, w1, w2, dz),
                    "saved", "T=6", "T=8");
            assertThrowsNaming(IllegalArgumentException.class, () -> ffn.backward(foreign.saved(), x, w1, w2, dz),
                    "saved", "expected a saved state of");
        }
    }

    @Test
    void closedContext() {
        ctx.close();
        assertTrue(x.isClosed(), "closing the context closes its tensors");
        assertTrue(ffn.isClosed(), "... and its FFNs");
        assertThrowsNaming(IllegalStateException.class, () -> ffn.forward(x, w1, w2), "context", "closed");
        assertThrowsNaming(IllegalStateException.class, () -> Tensor.allocate(ctx, DType.BF16, 2, 2), "context",
                "closed");
        assertThrowsNaming(IllegalStateException.class, ctx::synchronize, "context", "closed");
        ctx.close(); // idempotent
    }

    @Test
    void badContextArguments() {
        assertThrowsNaming(IllegalArgumentException.class, () -> Sparse24.create(null), "backend",
                "AUTO, CPU or CUDA");
        assertThrowsNaming(IllegalArgumentException.class, () -> Sparse24.create(Backend.CUDA, -1), "device", ">= 0",
                "got -1");
        assertThrowsNaming(IllegalArgumentException.class, () -> new SparseFfn(null, D, F, DType.BF16,
                SparseFfnOptions.defaults()), "context must not be null");
        assertThrowsNaming(IllegalArgumentException.class, () -> new SparseFfn(ctx, D, F, null,
                SparseFfnOptions.defaults()), "dtype must not be null");
        assertThrowsNaming(IllegalArgumentException.class, () -> new SparseFfn(ctx, D, F, DType.BF16, null),
                "options must not be null");
    }

    @Test
    void badTensorArguments() {
        assertThrowsNaming(IllegalArgumentException.class,
                () -> Tensor.fromFloats(ctx, DType.FP32, new float[5], 2, 3), "values", "expected 6",
                "got 5");
        assertThrowsNaming(IllegalArgumentException.class, () -> Tensor.borrow(ctx, new Pointer(), DType.FP32, 2),
                "data must be a non-null pointer");
        assertThrowsNaming(IllegalArgumentException.class, () -> Tensor.allocate(ctx, null, 2), "dtype",
                "BF16, FP16 or FP32");
        assertThrowsNaming(IllegalArgumentException.class, () -> Tensor.allocate(ctx, DType.FP32), "shape",
                "at least one dimension");
    }

    /** Native validation surfaces as Sparse24Exception carrying the status name and the library's message. */
    @Test
    void nativeRejectionsCarryTheStatus() {
        Sparse24Exception layout = assertThrows(Sparse24Exception.class,
                () -> PackedMatrix.allocate(ctx, Layout.CUSPARSELT, DType.FP32, 64, 64));
        assertEquals("S24_ERROR_INVALID_ARGUMENT", layout.status());
        assertTrue(layout.getMessage().contains("CUSPARSELT"), layout.getMessage());
        try (BytePointer notAStream = new BytePointer(1)) {
            Sparse24Exception stream = assertThrows(Sparse24Exception.class, () -> ctx.setStream(notAStream));
            assertTrue(stream.getMessage().startsWith("S24_ERROR_INVALID_ARGUMENT: stream"), stream.getMessage());
        }
    }

    @Test
    void badOpsArguments() {
        try (Tensor in = Tensor.allocate(ctx, DType.BF16, 4, 8); Tensor out = Tensor.allocate(ctx, DType.BF16, 4, 8)) {
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.gatherRows(in, new int[] {0, 1, 1, 3}, out), "perm", "not a permutation",
                    "[0, 4)", ": 1");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.gatherRows(in, new int[] {0, 1, 2}, out), "perm", "4 indices", "got 3");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.gemm(in, false, out, false, out), "b:", "[k, n]", "[4, 8]");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.selectDenseFeatures(ctx, new int[] {1, 2}, 3), "k", "[0, 2]", "got 3");
        }
    }
}
