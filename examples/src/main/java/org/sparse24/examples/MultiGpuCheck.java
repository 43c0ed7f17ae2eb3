package org.sparse24.examples;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.bytedeco.pytorch.global.torch_cuda;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;
import org.sparse24.torch.SparseFfnFunction;
import org.sparse24.torch.TorchTensors;

/**
 * sparse24's FFN on several GPUs of one process at once: one thread and one sparse24 context per device, each on
 * LibTorch's current stream of its device, the FFN forward and backward through {@link SparseFfnFunction} on bf16
 * tensors, repeated. Checks, per device: the context enqueued on that device's current LibTorch stream; Z, dX, dW1,
 * dW2 of the exact FFN against sparse24's CPU backend (FP32, the same bf16-valued inputs); and that the 2:4 FFN
 * (forward 2:4, split backward) gives every device the same results for the same inputs.
 *
 * <pre>java -cp CLASSPATH org.sparse24.examples.MultiGpuCheck [devices] [iterations]</pre>
 * prints one line per device and {@code MultiGpuCheck: PASS} (exit 0), or the failures (exit 1); exit 3 when fewer
 * than 2 GPUs are visible.
 */
public final class MultiGpuCheck {
    static final int T = 384;   // tokens (a multiple of 4 and of 128: both the CPU and GPU paths take it)
    static final int D = 256;
    static final int F = 1024;
    static final double TOLERANCE = 3e-2; // bf16 inputs and outputs against FP32: of the largest |expected|

    private MultiGpuCheck() {
    }

    public static void main(String[] args) throws Exception {
        int visible = visibleGpus();
        int devices = args.length > 0 ? Integer.parseInt(args[0]) : visible;
        int iterations = args.length > 1 ? Integer.parseInt(args[1]) : 20;
        if (devices < 2 || visible < devices) {
            System.out.println("MultiGpuCheck: SKIP: needs 2 or more GPUs, " + visible + " visible");
            System.exit(3);
        }
        List<String> failures = run(devices, iterations);
        failures.forEach(f -> System.out.println("MultiGpuCheck: FAIL: " + f));
        System.out.println("MultiGpuCheck: " + (failures.isEmpty() ? "PASS" : "FAIL") + " (" + devices
                + " devices, " + iterations + " iterations each)");
        System.exit(failures.isEmpty() ? 0 : 1);
    }

    /**
     * The GPUs LibTorch sees. Its CUDA hooks register when libtorch_cuda loads; before that LibTorch counts 0
     * devices even on a GPU host (seen on two H200s), so load it first. 0 with the preset's CPU natives.
     */
    static int visibleGpus() {
        try {
            org.bytedeco.javacpp.Loader.load(torch_cuda.class);
        } catch (Throwable e) { // the CPU natives have no torch_cuda
            return 0;
        }
        return torch.cuda_device_count();
    }

    /** Runs the check on devices 0..devices-1 at once; returns the failures (empty: passed). */
    public static List<String> run(int devices, int iterations) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(devices);
        try {
            List<Future<float[][]>> results = new ArrayList<>();
            for (int d = 0; d < devices; d++) {
                int device = d;
                results.add(pool.submit(() -> onDevice(device, iterations)));
            }
            List<String> failures = new ArrayList<>();
            float[][] first = null;
            for (int d = 0; d < devices; d++) {
                float[][] sparse;
                try {
                    sparse = results.get(d).get();
                } catch (java.util.concurrent.ExecutionException e) {
                    failures.add("device " + d + ": " + e.getCause());
                    continue;
                }
                if (first == null) {
                    first = sparse;
                    continue;
                }
                String[] names = {"Z", "dX", "dW1", "dW2"};
                for (int i = 0; i < names.length; i++) {
                    String error = compare("2:4 " + names[i] + " of device " + d + " vs the first device",
                            first[i], sparse[i], 1e-2);
                    if (error != null) {
                        failures.add(error);
                    }
                }
            }
            return failures;
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * One device's thread: {@code iterations} exact FFNs checked against the CPU backend (an
     * {@link AssertionError} on a mismatch), then the 2:4 FFN on fixed inputs; returns the latter's {Z, dX, dW1,
     * dW2}.
     */
    private static float[][] onDevice(int device, int iterations) {
        torch_cuda.set_device((byte) device); // this thread's current device: LibTorch allocates and enqueues there
        try (Sparse24 gpu = Sparse24.cuda(device); Sparse24 cpu = Sparse24.cpu();
             SparseFfn exact = new SparseFfn(gpu, D, F, DType.BF16, SparseFfnOptions.dense());
             SparseFfn reference = new SparseFfn(cpu, D, F, DType.FP32, SparseFfnOptions.dense());
             SparseFfn sparse = new SparseFfn(gpu, D, F, DType.BF16,
                     SparseFfnOptions.builder().seed(5).algorithmSearch(false).build());
             SparseFfnFunction fExact = new SparseFfnFunction(exact);
             SparseFfnFunction fReference = new SparseFfnFunction(reference);
             SparseFfnFunction fSparse = new SparseFfnFunction(sparse)) {
            Device cuda = TorchTensors.device(gpu);
            for (int it = 0; it < iterations; it++) {
                float[][] inputs = inputs(new Random(1000L * it + device));
                float[][] got = run(fExact, inputs, cuda, ScalarType.BFloat16);
                if (address(gpu.stream()) != address(torch_cuda.getCurrentCUDAStream((byte) device).stream())) {
                    throw new AssertionError("device " + device + ": the context's stream is not LibTorch's current "
                            + "stream of the device");
                }
                // the CPU reference on the bf16-rounded inputs
                float[][] rounded = new float[3][];
                for (int i = 0; i < 3; i++) {
                    rounded[i] = floats(tensor(inputs[i]).to(ScalarType.BFloat16).to(ScalarType.Float));
                }
                float[][] expected = run(fReference, new float[][] {rounded[0], rounded[1], rounded[2], inputs[3]},
                        new Device(torch.DeviceType.CPU), ScalarType.Float);
                String[] names = {"Z", "dX", "dW1", "dW2"};
                for (int i = 0; i < names.length; i++) {
                    String error = compare("device " + device + ", iteration " + it + ": " + names[i],
                            expected[i], got[i], TOLERANCE);
                    if (error != null) {
                        throw new AssertionError(error);
                    }
                }
            }
            float[][] result = run(fSparse, inputs(new Random(7)), cuda, ScalarType.BFloat16);
            System.out.printf(Locale.ROOT, "MultiGpuCheck: device %d (%s): %d exact FFNs match the CPU backend%n",
                    device, gpu.info().deviceName(), iterations);
            return result;
        }
    }

    /** {x [T, d], w1 [f, d], w2 [d, f], g [T, d] (the loss is sum(Z ∘ g))}, random, none zero. */
    private static float[][] inputs(Random r) {
        return new float[][] {normal(r, T * D, 1), normal(r, F * D, 0.1), normal(r, D * F, 0.05),
                normal(r, T * D, 1)};
    }

    /** Z and the gradients {dX, dW1, dW2} of sum(Z ∘ g), as FP32 arrays. */
    private static float[][] run(SparseFfnFunction f, float[][] in, Device device, ScalarType type) {
        Tensor x = tensor(in[0], T, D).to(device, type).set_requires_grad(true);
        Tensor w1 = tensor(in[1], F, D).to(device, type).set_requires_grad(true);
        Tensor w2 = tensor(in[2], D, F).to(device, type).set_requires_grad(true);
        Tensor g = tensor(in[3], T, D).to(device, ScalarType.Float);
        Tensor z = f.apply(x, w1, w2);
        z.to(ScalarType.Float).mul(g).sum().backward();
        return new float[][] {floats(z), floats(x.grad()), floats(w1.grad()), floats(w2.grad())};
    }

    private static Tensor tensor(float[] values, long... shape) {
        return Tensor.create(values, shape.length == 0 ? new long[] {values.length} : shape);
    }

    /** A stream handle's address; JavaCPP gives null for the legacy default stream (handle 0). */
    private static long address(org.bytedeco.javacpp.Pointer stream) {
        return stream == null ? 0 : stream.address();
    }

    static float[] floats(Tensor t) {
        Tensor c = t.detach().cpu().to(ScalarType.Float).contiguous();
        float[] out = new float[(int) c.numel()];
        c.data_ptr_float().get(out);
        return out;
    }

    static float[] normal(Random r, int n, double std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (r.nextGaussian() * std);
        }
        return v;
    }

    /** null if max |actual - expected| <= rel * max |expected| (and nothing is NaN), else the message. */
    static String compare(String what, float[] expected, float[] actual, double rel) {
        if (expected.length != actual.length) {
            return what + ": " + actual.length + " values, expected " + expected.length;
        }
        double scale = 0;
        double err = 0;
        int worst = 0;
        for (int i = 0; i < expected.length; i++) {
            scale = Math.max(scale, Math.abs(expected[i]));
            double e = Math.abs((double) actual[i] - expected[i]);
            if (!(e <= err)) {
                err = e;
                worst = i;
            }
        }
        if (!(scale > 0)) {
            return what + ": the expected values are all zero";
        }
        return err <= rel * scale ? null : String.format(Locale.ROOT, "%s: max |difference| %.3g > %.3g * max "
                + "|expected| %.3g (at %d: expected %.5g, got %.5g)", what, err, rel, scale, worst, expected[worst],
                actual[worst]);
    }
}
