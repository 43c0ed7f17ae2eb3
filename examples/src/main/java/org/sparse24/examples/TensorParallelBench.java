package org.sparse24.examples;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.bytedeco.pytorch.Backend;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorArrayRefOptional;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.bytedeco.pytorch.global.torch_cuda;
import org.sparse24.DType;
import org.sparse24.Event;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfnOptions;
import org.sparse24.torch.TorchTensors;

/**
 * The tensor-parallel FFN on a GPU host, one process per GPU (started by {@code train-ddp.sh} with
 * {@code MAIN=org.sparse24.examples.TensorParallelBench}): first a check, then a benchmark, all ranks in the same run.
 * <ol>
 *   <li>Check: the tensor-parallel sparse24 FFN with the split off (2:4 forward, exact gradients) against the
 *       one-GPU sparse24 FFN with the same options, on every rank: Z, dX and this rank's rows of dW1 and columns of
 *       dW2, within bf16 tolerance. Prints {@code TensorParallelBench: rank r CHECK PASS} (or FAIL and exit 1).</li>
 *   <li>Benchmark (forward + backward, CUDA events on the current stream, median): tensor-parallel sparse24 2:4
 *       (split on), tensor-parallel dense (LibTorch's own ops on the shard), and on rank 0 alone (the others wait)
 *       the one-GPU sparse24 2:4 and one-GPU dense FFN. Rank 0 prints a markdown table.</li>
 * </ol>
 * {@code --device cpu} runs the same on sparse24's CPU backend (FP32) over Gloo: a smoke test of this program
 * without GPUs (use small sizes). Options: {@code --tokens 16384 --d-model 4096 --d-ff 16384 --warmup 5
 * --iters 20 --seed 1}; rank, world size and rendezvous file from {@code --rank --world-size --store} or
 * {@code $RANK $WORLD_SIZE $S24_STORE}.
 */
public final class TensorParallelBench {
    private TensorParallelBench() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new LinkedHashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            a.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        int rank = Integer.parseInt(a.getOrDefault("rank", env("RANK", "0")));
        int world = Integer.parseInt(a.getOrDefault("world-size", env("WORLD_SIZE", "1")));
        String store = a.getOrDefault("store", System.getenv("S24_STORE"));
        int tokens = Integer.parseInt(a.getOrDefault("tokens", "16384"));
        int d = Integer.parseInt(a.getOrDefault("d-model", "4096"));
        int f = Integer.parseInt(a.getOrDefault("d-ff", "16384"));
        int warmup = Integer.parseInt(a.getOrDefault("warmup", "5"));
        int iters = Integer.parseInt(a.getOrDefault("iters", "20"));
        long seed = Long.parseLong(a.getOrDefault("seed", "1"));
        if (store == null) {
            throw new IllegalArgumentException("--store FILE (or $S24_STORE) is required");
        }
        boolean cudaRun = !a.getOrDefault("device", "cuda").equals("cpu");
        DType dtype = cudaRun ? DType.BF16 : DType.FP32;
        double tolerance = cudaRun ? 3e-2 : 1e-4;
        long fs = TensorParallelFfn.shardSize(f, world);

        if (cudaRun) {
            torch_cuda.set_device((byte) rank);
        }
        Backend group = ProcessGroups.forDevice(cudaRun, Path.of(store), rank, world);
        try (Sparse24 ctx = cudaRun ? Sparse24.cuda(rank) : Sparse24.cpu()) {
            TorchTensors.useCurrentStream(ctx);
            Device device = TorchTensors.device(ctx);
            ScalarType type = TorchTensors.scalarType(dtype);
            torch.manual_seed(seed); // the same full weights, input and dZ on every rank
            Tensor w1 = randn(device, type, 0.02, f, d);
            Tensor w2 = randn(device, type, 0.02, d, f);
            Tensor x = randn(device, type, 1, tokens, d);
            Tensor dz = randn(device, type, 1, tokens, d);
            Tensor w1s = TensorParallelFfn.shardW1(w1, rank, world).contiguous();
            Tensor w2s = TensorParallelFfn.shardW2(w2, rank, world);
            SparseFfnOptions exactBackward = SparseFfnOptions.builder().sparseBackward(false).seed(seed).build();
            SparseFfnOptions split = SparseFfnOptions.builder().seed(seed).build();

            // the check
            List<String> failures = new ArrayList<>();
            try (Ffn one = new Sparse24Ffn(ctx, d, f, dtype, exactBackward, 0);
                 Ffn tp = new TensorParallelFfn(group, new Sparse24Ffn(ctx, d, (int) fs, dtype, exactBackward,
                         0))) {
                Tensor[] ref = gradients(one, x, w1, w2, dz);
                Tensor[] got = gradients(tp, x, w1s, w2s, dz);
                String[] names = {"Z", "dX", "dW1 (this rank's rows)", "dW2 (this rank's columns)"};
                Tensor[] expected = {ref[0], ref[1], TensorParallelFfn.shardW1(ref[2], rank, world),
                        TensorParallelFfn.shardW2(ref[3], rank, world)};
                for (int i = 0; i < names.length; i++) {
                    String e = MultiGpuCheck.compare(names[i], MultiGpuCheck.floats(expected[i]),
                            MultiGpuCheck.floats(got[i]), tolerance);
                    if (e != null) {
                        failures.add(e);
                    }
                }
            }
            failures.forEach(e -> System.out.println("TensorParallelBench: rank " + rank + " FAIL: " + e));
            System.out.println("TensorParallelBench: rank " + rank + " CHECK " + (failures.isEmpty() ? "PASS" : "FAIL")
                    + " (split off: tensor-parallel = one GPU)");

            // the benchmark (on leaves: the gradients are written, not accumulated)
            for (Tensor t : new Tensor[] {x, w1, w2, w1s, w2s}) {
                t.set_requires_grad(true);
            }
            Map<String, Double> ms = new LinkedHashMap<>();
            try (Ffn tpSparse = new TensorParallelFfn(group, new Sparse24Ffn(ctx, d, (int) fs, dtype, split, 0));
                 Ffn tpDense = new TensorParallelFfn(group, new TorchFfn())) {
                ms.put("tensor parallel, sparse24 2:4 (split backward)", time(ctx, warmup, iters,
                        () -> step(tpSparse, x, w1s, w2s, dz)));
                ms.put("tensor parallel, dense (LibTorch)", time(ctx, warmup, iters,
                        () -> step(tpDense, x, w1s, w2s, dz)));
            }
            if (rank == 0) {
                try (Ffn oneSparse = new Sparse24Ffn(ctx, d, f, dtype, split, 0); Ffn oneDense = new TorchFfn()) {
                    ms.put("one GPU, sparse24 2:4 (split backward)", time(ctx, warmup, iters,
                            () -> step(oneSparse, x, w1, w2, dz)));
                    ms.put("one GPU, dense (LibTorch)", time(ctx, warmup, iters, () -> step(oneDense, x, w1, w2, dz)));
                }
            }
            group.barrier().synchronize(); // the other ranks wait for rank 0's one-GPU runs
            if (rank == 0) {
                double flop = 6.0 * tokens * d * f; // forward + backward, dense-equivalent
                double base = ms.get("one GPU, sparse24 2:4 (split backward)");
                System.out.printf(Locale.ROOT, "%n| FFN fwd+bwd, T=%d d=%d f=%d %s, %d ranks | median ms | TFLOP/s "
                        + "(dense-equivalent) | vs one-GPU sparse24 |%n|---|---|---|---|%n", tokens, d, f, dtype,
                        world);
                ms.forEach((name, t) -> System.out.printf(Locale.ROOT, "| %s | %.3f | %.3g | %.2fx |%n", name, t,
                        flop / t / 1e9, base / t));
            }
            System.exit(failures.isEmpty() ? 0 : 1);
        } finally {
            ProcessGroups.shutdown(group);
        }
    }

    private static String env(String name, String fallback) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? fallback : v;
    }

    private static Tensor randn(Device device, ScalarType type, double std, long... shape) {
        return torch.randn(shape).mul_(new Scalar(std)).to(device, type);
    }

    /** {Z, dX, dW1, dW2} of one forward and backward with upstream gradient dz. */
    static Tensor[] gradients(Ffn ffn, Tensor x, Tensor w1, Tensor w2, Tensor dz) {
        Tensor xl = x.detach().clone().set_requires_grad(true);
        Tensor w1l = w1.detach().clone().set_requires_grad(true);
        Tensor w2l = w2.detach().clone().set_requires_grad(true);
        Tensor z = ffn.apply(xl, w1l, w2l);
        backward(z, dz);
        // grad() is a reference into the leaf's autograd data: detach() makes tensors of their own, which stay valid
        // after the leaves are collected (without it the check crashed on two H200s, in detach of a freed gradient)
        return new Tensor[] {z.detach(), xl.grad().detach(), w1l.grad().detach(), w2l.grad().detach()};
    }

    /** One training step's FFN on leaves x, w1, w2: forward, then backward with dz; the gradients are dropped. */
    private static void step(Ffn ffn, Tensor x, Tensor w1, Tensor w2, Tensor dz) {
        backward(ffn.apply(x, w1, w2), dz);
        for (Tensor t : new Tensor[] {x, w1, w2}) {
            t.mutable_grad().put(new Tensor()); // undefined: the next backward writes a fresh gradient
        }
    }

    /** Backpropagates dz from z (the graph is freed). */
    static void backward(Tensor z, Tensor dz) {
        z.backward(dz, new BoolOptional(), false, new TensorArrayRefOptional());
    }

    /** Median milliseconds of {@code run} over {@code iters} runs after {@code warmup}, by events on the stream. */
    private static double time(Sparse24 ctx, int warmup, int iters, Runnable run) {
        for (int i = 0; i < warmup; i++) {
            run.run();
        }
        double[] ms = new double[iters];
        try (Event start = Event.create(ctx); Event end = Event.create(ctx)) {
            for (int i = 0; i < iters; i++) {
                TorchTensors.useCurrentStream(ctx);
                start.record();
                run.run();
                end.record();
                ms[i] = Event.elapsedMillis(start, end);
            }
        }
        Arrays.sort(ms);
        return ms[iters / 2];
    }
}
