package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;

import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/** LibTorch helpers of the interop tests: CPU float tensors to and from Java arrays, comparisons. */
final class TorchTestData {
    private TorchTestData() {
    }

    /** A new CPU Float tensor holding {@code values} (row-major). */
    /**
     * Whether LibTorch can run CUDA here. Its CUDA hooks register when libtorch_cuda loads: before that,
     * {@code torch.cuda_is_available()} answers false even with a GPU (seen on the H200), so load it first.
     */
    static boolean cudaAvailable() {
        try {
            org.bytedeco.javacpp.Loader.load(org.bytedeco.pytorch.global.torch_cuda.class);
        } catch (Throwable e) {  // the preset's CPU natives: no torch_cuda
            return false;
        }
        if (torch.cuda_is_available()) {
            return true;
        }
        try (org.bytedeco.pytorch.Device cuda = new org.bytedeco.pytorch.Device(torch.DeviceType.CUDA, (byte) 0);
             Tensor probe = Tensor.create(new float[] {1f}, 1).to(cuda, ScalarType.Float)) {
            return probe.is_cuda();
        } catch (RuntimeException e) {
            return false;
        }
    }

    static Tensor tensor(float[] values, long... shape) {
        try (FloatPointer p = new FloatPointer(values); Tensor view = torch.from_blob(p, shape)) {
            return view.clone();
        }
    }

    /** A new CPU Float leaf tensor that requires grad (a parameter). */
    static Tensor param(float[] values, long... shape) {
        return tensor(values, shape).set_requires_grad(true);
    }

    /** A new CPU Long tensor (token ids, class targets). */
    static Tensor longs(long[] values) {
        try (LongPointer p = new LongPointer(values); TensorOptions o = new TensorOptions(ScalarType.Long);
             Tensor view = torch.from_blob(p, new long[] {values.length}, o)) {
            return view.clone();
        }
    }

    /** The values of a CPU Float tensor, row-major. */
    static float[] floats(Tensor t) {
        assertEquals(ScalarType.Float, t.scalar_type().intern(), "floats() reads Float tensors");
        try (Tensor c = t.contiguous()) {
            float[] v = new float[(int) c.numel()];
            c.data_ptr_float().get(v);
            return v;
        }
    }

    /** n normal values with standard deviation {@code std}. */
    static float[] normal(Random random, int n, double std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (random.nextGaussian() * std);
        }
        return v;
    }

    /** Asserts max|actual - expected| <= rel * max|expected| (and that expected is not all zeros). */
    static void assertClose(String what, float[] expected, float[] actual, double rel) {
        assertEquals(expected.length, actual.length, what + ": length");
        double scale = 0;
        double err = 0;
        int worst = 0;
        for (int i = 0; i < expected.length; i++) {
            scale = Math.max(scale, Math.abs(expected[i]));
            double e = Math.abs((double) actual[i] - expected[i]);
            if (!(e <= err)) { // also catches NaN
                err = e;
                worst = i;
            }
        }
        assertTrue(scale > 0, what + ": the expected values are all zero");
        assertTrue(err <= rel * scale, what + ": max |difference| " + err + " > " + rel + " * max |expected| "
                + scale + " (at " + worst + ": expected " + expected[worst] + ", got " + actual[worst] + ")");
    }
}
