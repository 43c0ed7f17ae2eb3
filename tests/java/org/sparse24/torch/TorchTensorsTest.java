package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparse24.torch.TorchTestData.floats;
import static org.sparse24.torch.TorchTestData.tensor;
import static org.sparse24.MessageAssertions.assertThrowsNaming;

import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.sparse24.DType;
import org.sparse24.Sparse24;

/** Zero-copy LibTorch <-> sparse24 tensors on the CPU backend, and the checks that guard them. */
class TorchTensorsTest {
    private Sparse24 ctx;

    @BeforeEach
    void setUp() {
        ctx = Sparse24.cpu();
    }

    @AfterEach
    void tearDown() {
        ctx.close();
    }

    private static float[] iota(int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = i * 0.5f - 3;
        }
        return v;
    }

    @Test
    void dtypeMapping() {
        assertEquals(DType.FP32, TorchTensors.dtype(ScalarType.Float));
        assertEquals(DType.BF16, TorchTensors.dtype(ScalarType.BFloat16));
        assertEquals(DType.FP16, TorchTensors.dtype(ScalarType.Half));
        for (DType d : DType.values()) {
            assertEquals(d, TorchTensors.dtype(TorchTensors.scalarType(d)));
        }
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.dtype(ScalarType.Double), "Double",
                "Float (FP32), BFloat16 (BF16) or Half (FP16) for matrices, Int (INT32), Long (INT64) or Byte (UINT8)");
    }

    @Test
    void borrowSharesMemory() {
        Tensor t = tensor(iota(12), 3, 4);
        try (org.sparse24.Tensor s = TorchTensors.borrow(ctx, t, "t")) {
            assertEquals(DType.FP32, s.dtype());
            assertArrayEquals(new long[] {3, 4}, s.shape());
            assertEquals(t.data_ptr().address(), s.data().address(), "no copy");
            assertFalse(s.isOwned());
            assertEquals("t", s.name());
            assertArrayEquals(iota(12), s.toFloats());
            float[] written = new float[12];
            written[5] = 42;
            s.copyFrom(written); // writes through to the LibTorch tensor
            assertArrayEquals(written, floats(t));
        }
        assertEquals(3, t.size(0), "closing the wrapper leaves the LibTorch tensor alone");
    }

    @Test
    void borrowHalfTypesAndReshape() {
        Tensor t = tensor(iota(24), 2, 3, 4);
        for (ScalarType type : new ScalarType[] {ScalarType.BFloat16, ScalarType.Half}) {
            Tensor h = t.to(type);
            try (org.sparse24.Tensor s = TorchTensors.borrow(ctx, h, "h", 6, 4)) {
                assertEquals(TorchTensors.dtype(type), s.dtype());
                assertArrayEquals(new long[] {6, 4}, s.shape());
                assertArrayEquals(iota(24), s.toFloats(), "values exact in both half types");
            }
        }
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.borrow(ctx, t, "t", 5, 4), "t:",
                "24 elements", "[5, 4]");
    }

    @Test
    void borrowOfASliceStartsAtItsOffset() {
        Tensor t = tensor(iota(12), 3, 4);
        Tensor rows = t.narrow(0, 1, 2); // contiguous, storage offset 4
        try (org.sparse24.Tensor s = TorchTensors.borrow(ctx, rows, "rows")) {
            float[] expected = new float[8];
            System.arraycopy(iota(12), 4, expected, 0, 8);
            assertArrayEquals(expected, s.toFloats());
        }
    }

    @Test
    void emptyAllocatesOnTheContextDevice() {
        Tensor e = TorchTensors.empty(ctx, DType.BF16, 5, 8);
        assertEquals(ScalarType.BFloat16, e.scalar_type().intern());
        assertTrue(e.device().is_cpu());
        assertArrayEquals(new long[] {5, 8}, TorchTensors.sizes(e));
        assertTrue(e.is_contiguous());
        assertFalse(e.requires_grad());
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.empty(ctx, DType.FP32, 2, 0),
                "shape[1] must be >= 1");
        try (Device d = TorchTensors.device(ctx)) {
            assertTrue(d.is_cpu());
        }
    }

    @Test
    void viewOfASparse24Tensor() {
        try (org.sparse24.Tensor s = org.sparse24.Tensor.fromFloats(ctx, DType.FP32, iota(6), 2, 3)) {
            Tensor v = TorchTensors.view(s);
            assertEquals(s.data().address(), v.data_ptr().address(), "no copy");
            assertArrayEquals(new long[] {2, 3}, TorchTensors.sizes(v));
            assertArrayEquals(iota(6), floats(v));
            try (org.sparse24.Tensor h = org.sparse24.Tensor.fromFloats(ctx, DType.FP16, iota(6), 6)) {
                assertEquals(ScalarType.Half, TorchTensors.view(h).scalar_type().intern());
            }
        }
    }

    @Test
    void nonContiguousIsRejected() {
        Tensor t = tensor(iota(12), 3, 4).t();
        assertFalse(t.is_contiguous());
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.borrow(ctx, t, "x"), "x:",
                "contiguous", "sizes [4, 3]", "strides [1, 4]", "x.contiguous()");
        try (org.sparse24.Tensor s = TorchTensors.borrow(ctx, t.contiguous(), "x")) {
            assertArrayEquals(new long[] {4, 3}, s.shape());
        }
    }

    @Test
    void wrongDtypeIsRejected() {
        Tensor d = tensor(iota(4), 4).to(ScalarType.Double);
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.borrow(ctx, d, "w1"), "w1:",
                "Double", "Float (FP32)");
        Tensor i = tensor(iota(4), 4).to(ScalarType.Short);
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.borrow(ctx, i, "w1"), "w1:", "Short");
        try (org.sparse24.Tensor ints = TorchTensors.borrow(ctx, tensor(iota(4), 4).to(ScalarType.Int), "idx")) {
            assertEquals(DType.INT32, ints.dtype()); // index arrays of the ops
            assertArrayEquals(new int[] {-3, -2, -2, -1}, ints.toInts()); // iota: -3, -2.5, -2, -1.5 truncated
        }
    }

    @Test
    void wrongDeviceIsRejected() {
        try (Device meta = new Device("meta"); TensorOptions o = new TensorOptions(meta);
             MemoryFormatOptional format = new MemoryFormatOptional()) {
            Tensor m = torch.empty(new long[] {2, 3}, o, format);
            assertTrue(m.is_meta());
            assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.borrow(ctx, m, "x"), "x:",
                    "expected a tensor on cpu", "CPU context", "got one on meta", ".to(");
        }
    }

    @Test
    void undefinedOrEmptyIsRejected() {
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.borrow(ctx, new Tensor(), "x"),
                "x must be a defined LibTorch tensor");
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.borrow(ctx, null, "x"),
                "x must be a defined LibTorch tensor", "null");
        Tensor empty = torch.empty(0, 4);
        assertThrowsNaming(IllegalArgumentException.class, () -> TorchTensors.borrow(ctx, empty, "x"),
                "non-empty", "[0, 4]");
    }

    @Test
    void currentStreamIsANoOpOnTheCpu() {
        TorchTensors.useCurrentStream(ctx);
        assertTrue(ctx.stream().isNull());
    }
}
