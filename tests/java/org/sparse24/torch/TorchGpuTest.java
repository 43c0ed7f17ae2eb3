package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;
import static org.sparse24.MessageAssertions.assertThrowsNaming;
import static org.sparse24.torch.TorchTestData.assertClose;
import static org.sparse24.torch.TorchTestData.floats;
import static org.sparse24.torch.TorchTestData.tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import org.bytedeco.cuda.global.cudart;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.SizeTPointer;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.cuda.CUDAStream;
import org.bytedeco.pytorch.cuda.DeviceStats;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.bytedeco.pytorch.global.torch_cuda;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.sparse24.DType;
import org.sparse24.SavedState;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;
import org.sparse24.Sparsity;

/**
 * {@link SparseFfnFunction} with CUDA tensors on the CUDA backend, against LibTorch's own autograd of the
 * explicitly 2:4-masked FFN computed on the GPU in Float. Needs a GPU and the preset's CUDA build (pytorch
 * {@code linux-x86_64-gpu} with org.bytedeco:cuda; the GPU bundle's torch step); skipped where LibTorch has no
 * CUDA (the CPU natives of the build's test class path).
 *
 * <p>The inputs are small multiples of 1/8 (never 0), so H = X W1^T is exact in any summation order: sparse24
 * and the reference pick the same 2:4 (ties included, to the lower index) and differ only by the rounding of
 * the BF16/FP16 outputs.
 */
@Tag("gpu")
class TorchGpuTest {
    private static final int B = 4;
    private static final int S = 64;
    private static final int T = B * S;
    private static final int D = 128;
    private static final int F = 512;
    /** max |error| / max |expected| allowed where sparse24 computes what the reference does (output rounding). */
    private static final double TIGHT = 1e-2;

    private static final SparseFfnOptions SPLIT_OFF =
            SparseFfnOptions.builder().sparseForward(true).sparseBackward(false).build();

    private Sparse24 gpu;
    private Device cuda;

    @BeforeEach
    void setUp() {
        assumeTrue(TorchTestData.cudaAvailable(), "LibTorch has no CUDA here (the preset's CPU natives, or no GPU)");
        gpu = Sparse24.cuda(0);
        cuda = TorchTensors.device(gpu);
    }

    @AfterEach
    void tearDown() {
        if (gpu != null) {
            cuda.close();
            gpu.close();
        }
    }

    /** Values k/8, k in {-2, -1, 1, 2}: exact in BF16 and FP16, never zero. */
    private static float[] eighths(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            int k = r.nextInt(2) + 1;
            v[i] = (r.nextBoolean() ? k : -k) / 8f;
        }
        return v;
    }

    /** x [B, S, d], w1 [f, d], w2 [d, f] on the GPU in {@code type}, requiring grad; c [T, d] the loss weights. */
    private final class Case {
        final ScalarType type;
        final float[] xs;
        final float[] w1s;
        final float[] w2s;
        final float[] cs;
        final Tensor x;
        final Tensor w1;
        final Tensor w2;
        final Tensor c;

        Case(ScalarType type, long seed) {
            this.type = type;
            Random r = new Random(seed);
            xs = eighths(r, T * D);
            for (int i = 0; i < xs.length; i++) {
                xs[i] *= 8; // x in {+-1, +-2}
            }
            w1s = eighths(r, F * D);
            w2s = eighths(r, D * F);
            cs = eighths(r, T * D);
            x = onGpu(xs, B, S, D).set_requires_grad(true);
            w1 = onGpu(w1s, F, D).set_requires_grad(true);
            w2 = onGpu(w2s, D, F).set_requires_grad(true);
            c = tensor(cs, B, S, D).to(cuda, ScalarType.Float);
        }

        Tensor onGpu(float[] values, long... shape) {
            return tensor(values, shape).to(cuda, type);
        }

        /** z and the gradients of sum(z * c) through {@code f}: {z, dX, dW1, dW2} as floats. */
        float[][] run(SparseFfnFunction f) {
            Tensor z = f.apply(x, w1, w2);
            assertArrayEquals(new long[] {B, S, D}, TorchTensors.sizes(z), "z has x's shape");
            assertEquals(type, z.scalar_type().intern());
            assertTrue(z.is_cuda());
            float[] zs = host(z);
            z.to(ScalarType.Float).mul(c).sum().backward();
            float[][] out = {zs, host(x.grad()), host(w1.grad()), host(w2.grad())};
            for (Tensor t : new Tensor[] {x, w1, w2}) {
                t.grad().zero_();
            }
            return out;
        }

        /** The reference: the 2:4-masked FFN in Float on the GPU, LibTorch's autograd. */
        Reference reference() {
            Tensor rx = x.detach().to(ScalarType.Float).reshape(T, D).set_requires_grad(true);
            Tensor rw1 = w1.detach().to(ScalarType.Float).set_requires_grad(true);
            Tensor rw2 = w2.detach().to(ScalarType.Float).set_requires_grad(true);
            Tensor h = rx.mm(rw1.t());
            h.retain_grad();
            Tensor mask = tensor(SparseFfnFunctionTest.mask24(host(h), T, F), T, F).to(cuda, ScalarType.Float);
            Tensor y = h.relu().square().mul(mask);
            Tensor z = y.mm(rw2.t());
            z.mul(c.reshape(T, D)).sum().backward();
            return new Reference(host(z), host(rx.grad()), host(rw1.grad()), host(rw2.grad()), host(y), host(h.grad()));
        }
    }

    /** The reference's z, dX, dW1, dW2, and the masked activations Y and dH [T, f] (for the split's bound). */
    private record Reference(float[] z, float[] dx, float[] dw1, float[] dw2, float[] y, float[] dh) {
        float[][] outputs() {
            return new float[][] {z, dx, dw1, dw2};
        }
    }

    private static float[] host(Tensor t) {
        return floats(t.detach().cpu().to(ScalarType.Float));
    }

    private static final String[] OUTPUTS = {"z", "dX", "dW1", "dW2"};

    private static void assertAllClose(String what, float[][] want, float[][] got, double rel) {
        for (int i = 0; i < want.length; i++) {
            assertClose(what + " " + OUTPUTS[i], want[i], got[i], rel);
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "FP16"})
    void splitOffMatchesTheMaskedFfnsAutograd(DType dtype) {
        Case k = new Case(TorchTensors.scalarType(dtype), 1);
        try (SparseFfn ffn = new SparseFfn(gpu, D, F, dtype, SPLIT_OFF);
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            float[][] got = k.run(f);
            assertAllClose(dtype + ", split off:", k.reference().outputs(), got, TIGHT);
            assertEquals(0, f.pendingForwards());
            assertEquals(CudaStreams.current(0).address(), gpu.stream().address(), "sparse24 ran on LibTorch's stream");
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "FP16"})
    void splitOnIsExactOnDenseFeaturesAndBoundedElsewhere(DType dtype) {
        Case k = new Case(TorchTensors.scalarType(dtype), 2);
        try (SparseFfn ffn = new SparseFfn(gpu, D, F, dtype, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            List<int[]> dense = new ArrayList<>();
            List<Sparsity> stats = new ArrayList<>();
            f.savedProbe = (SavedState saved) -> dense.add(saved.denseFeatures());
            f.setSparsityListener(stats::add);
            float[][] got = k.run(f);
            Reference ref = k.reference();
            assertEquals(1, dense.size());
            int[] denseIdx = dense.get(0);
            Sparsity st = stats.get(0);
            assertTrue(st.backwardSparse(), "the split backward ran: " + st);
            assertTrue(denseIdx.length > 0 && denseIdx.length < F, "dense features: " + denseIdx.length);
            assertTrue(st.dw2SparseKept() < st.dw2SparseNonzeros(), "the token-wise 2:4 dropped values: " + st);

            String what = dtype + ", split on: ";
            assertClose(what + "z", ref.z(), got[0], TIGHT);
            assertClose(what + "dX (the split touches only the weight gradients)", ref.dx(), got[1], TIGHT);
            boolean[] isDense = new boolean[F];
            for (int j : denseIdx) {
                isDense[j] = true;
            }
            // dW1 [f, d]: row j; dW2 [d, f]: column j
            checkSplit(what + "dW1", ref.dw1(), got[2], isDense, ref.dh(), xAbsMax(k.xs), true);
            checkSplit(what + "dW2", ref.dw2(), got[3], isDense, ref.y(), xAbsMax(k.cs), false);
        }
    }

    /** max over tokens of |v[t, i]| for each i of d ([T, d] row-major). */
    private static float[] xAbsMax(float[] v) {
        float[] m = new float[D];
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < D; i++) {
                m[i] = Math.max(m[i], Math.abs(v[t * D + i]));
            }
        }
        return m;
    }

    /**
     * Dense features exact; every other feature j within what the token-wise 2:4 can drop: in each group of 4
     * tokens it drops the 2 smallest |a[t, j]|, at most half of sum_t |a[t, j]|, each times at most max_t |b[t, i]|.
     *
     * @param a         the structured operand [T, f] (Y for dW2, dH for dW1)
     * @param bMax      max_t |b[t, i]| of the other operand (dZ for dW2, X for dW1)
     * @param rowMajorF true for dW1 [f, d], false for dW2 [d, f]
     */
    private static void checkSplit(String what, float[] want, float[] got, boolean[] isDense, float[] a, float[] bMax,
                                   boolean rowMajorF) {
        double scale = 0;
        for (float v : want) {
            scale = Math.max(scale, Math.abs(v));
        }
        assertTrue(scale > 0, what + ": all zero");
        double[] mass = new double[F];
        for (int t = 0; t < T; t++) {
            for (int j = 0; j < F; j++) {
                mass[j] += Math.abs(a[t * F + j]);
            }
        }
        int sparseDiffer = 0;
        for (int j = 0; j < F; j++) {
            for (int i = 0; i < D; i++) {
                int at = rowMajorF ? j * D + i : i * F + j;
                double err = Math.abs((double) got[at] - want[at]);
                double allowed = TIGHT * scale + (isDense[j] ? 0 : 0.5 * mass[j] * bMax[i]);
                assertTrue(err <= allowed, what + " feature " + j + (isDense[j] ? " (dense)" : " (sparse)")
                        + ", element " + i + ": |" + got[at] + " - " + want[at] + "| > " + allowed);
                if (!isDense[j] && err > TIGHT * scale) {
                    sparseDiffer++;
                }
            }
        }
        assertTrue(sparseDiffer > 0, what + ": no sparse feature differs from the exact gradient (was it split?)");
    }

    /** The stream's cudaStream_t as an address: 0 for the legacy default stream (JavaCPP gives null for it). */
    private static long handle(CUDAStream stream) {
        org.bytedeco.javacpp.Pointer raw = stream.stream();
        return raw == null ? 0 : raw.address();
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "FP16"})
    void aNonDefaultCurrentStreamIsUsed(DType dtype) {
        Case k = new Case(TorchTensors.scalarType(dtype), 3);
        try (SparseFfn ffn = new SparseFfn(gpu, D, F, dtype, SPLIT_OFF);
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            float[][] onDefault = k.run(f);
            CUDAStream side = torch_cuda.getStreamFromPool(false, (byte) 0);
            assertNotEquals(handle(torch_cuda.getDefaultCUDAStream((byte) 0)), handle(side));
            float[][] onSide;
            torch_cuda.device_synchronize();
            torch_cuda.setCurrentCUDAStream(side);
            try {
                onSide = k.run(f);
                assertEquals(handle(side), gpu.stream().address(), "sparse24 ran on the current stream");
                torch_cuda.device_synchronize();
            } finally {
                torch_cuda.setCurrentCUDAStream(torch_cuda.getDefaultCUDAStream((byte) 0));
            }
            for (int i = 0; i < OUTPUTS.length; i++) {
                assertArrayEquals(onDefault[i], onSide[i], OUTPUTS[i] + " on the side stream");
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "FP16"})
    void inferenceUnderNoGradGuardKeepsNothing(DType dtype) {
        Case k = new Case(TorchTensors.scalarType(dtype), 4);
        try (SparseFfn ffn = new SparseFfn(gpu, D, F, dtype, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor z;
            try (NoGradGuard guard = new NoGradGuard()) {
                z = f.apply(k.x, k.w1, k.w2);
            }
            assertFalse(z.requires_grad());
            assertEquals(0, f.pendingForwards());
            assertEquals(0, ffn.stepsTaken(), "an inference takes no training step");
            assertArrayEquals(host(f.infer(k.x, k.w1, k.w2)), host(z), "the same as infer()");
            assertClose(dtype + " inference z", k.reference().z(), host(z), TIGHT);
        }
    }

    /** Each backward (without retain_graph) releases its forward: the anchor's deleter retires the call. */
    @Test
    void eachBackwardReleasesItsForward() {
        Case k = new Case(ScalarType.BFloat16, 5);
        try (SparseFfn ffn = new SparseFfn(gpu, D, F, DType.BF16, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            List<String> events = java.util.Collections.synchronizedList(new ArrayList<>());
            f.trace = events::add;
            for (int step = 0; step < 3; step++) {
                events.clear();
                Tensor z = f.apply(k.x, k.w1, k.w2);
                Tensor loss = z.to(ScalarType.Float).mul(k.c).sum();
                loss.backward();
                torch_cuda.device_synchronize();
                String seen = "step " + step + ": events " + events + ", pending forwards " + f.pendingForwards();
                System.out.println("eachBackwardReleasesItsForward " + seen);
                loss.close();
                z.close();
                assertTrue(events.contains("released"), seen);
                assertEquals(0, f.pendingForwards(), seen);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "FP16"})
    void aThousandStepsKeepMemoryFlat(DType dtype) {
        int steps = 1000;
        int warmup = 100;
        Case k = new Case(TorchTensors.scalarType(dtype), 5);
        SparseFfnOptions options = SparseFfnOptions.builder().denseWarmupSteps(warmup).build();
        try (SparseFfn ffn = new SparseFfn(gpu, D, F, dtype, options);
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            long[] base = null;
            for (int step = 0; step < steps; step++) {
                try (Tensor z = f.apply(k.x, k.w1, k.w2); Tensor zf = z.to(ScalarType.Float); Tensor sq = zf.square();
                     Tensor loss = sq.mean()) {
                    loss.backward();
                }
                for (Tensor p : new Tensor[] {k.x, k.w1, k.w2}) {
                    try (Tensor g = p.grad(); Tensor zeroed = g.zero_()) {
                        assertTrue(zeroed.is_cuda());
                    }
                }
                assertEquals(0, f.pendingForwards(), "step " + step + ": its saved state was freed");
                if (step == 2 * warmup) { // after the switch to 2:4 and its plan
                    base = memory();
                }
            }
            long[] end = memory();
            assertEquals(steps, ffn.stepsTaken());
            assertTrue(ffn.isSparseNow());
            assertEquals(0, f.liveForwards(), "no graph can call back any more");
            // (it may shrink: earlier tests' tensors are freed when their Java objects are collected)
            if (end[0] > base[0]) { // tell a leak from memory that Java objects hold until they are collected
                System.gc();
                Pointer.deallocateReferences();
                fail("LibTorch's allocated CUDA bytes grew from " + base[0] + " after step " + 2 * warmup + " to "
                        + end[0] + " at the end (" + memory()[0] + " after a garbage collection)");
            }
            assertTrue(end[1] >= base[1] - (16L << 20), "free device memory after step " + 2 * warmup + ": "
                    + base[1] + ", at the end: " + end[1]);
        }
    }

    /** {LibTorch's allocated CUDA bytes, the device's free bytes}, once the device is idle. */
    private long[] memory() {
        gpu.synchronize();
        torch_cuda.device_synchronize();
        try (DeviceStats stats = torch_cuda.getAllocator().getDeviceStats((byte) 0);
             SizeTPointer free = new SizeTPointer(1); SizeTPointer total = new SizeTPointer(1)) {
            int status = cudart.cudaMemGetInfo(free, total);
            assertEquals(0, status, "cudaMemGetInfo");
            return new long[] {stats.allocated_bytes().current(), free.get()};
        }
    }

    @Test
    void badCudaInputsAreRejectedBeforeAnythingRuns() {
        Case k = new Case(ScalarType.BFloat16, 6);
        try (SparseFfn ffn = new SparseFfn(gpu, D, F, DType.BF16, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor onCpu = k.x.detach().cpu();
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(onCpu, k.w1, k.w2), "x:",
                    "expected a tensor on cuda:0", "got one on cpu");
            Tensor half = k.w2.detach().to(ScalarType.Half);
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(k.x, k.w1, half), "w2:",
                    "expected a BFloat16 tensor (the FFN's dtype BF16)", "got Half");
            Tensor strided = k.w1.detach().t().contiguous().t(); // [f, d] with column-major strides
            assertFalse(strided.is_contiguous());
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(k.x, strided, k.w2), "w1:",
                    "contiguous", "w1.contiguous()");
            Tensor narrow = k.x.detach().narrow(2, 0, D / 2).contiguous();
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(narrow, k.w1, k.w2), "x:",
                    "[..., d] = [..., " + D + "]");
            assertEquals(0, f.pendingForwards());
            assertEquals(0, ffn.stepsTaken(), "a rejected call takes no step");
        }
    }
}
