package org.sparse24;

import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Runs one sparse FFN forward + backward on the best backend available and compares it with the dense FFN
 * (same library, no 2:4 anywhere): prints the backend, shapes, sparsity statistics, the difference to the dense
 * results and median timings of both.
 *
 * <pre>
 * java org.sparse24.Demo [--backend auto|cpu|cuda] [--device N] [--tokens T] [--d-model d] [--d-ff f]
 *                        [--dtype bf16|fp16|fp32] [--runs N] [--shift s] [--seed n]
 * </pre>
 * Defaults: CPU T=256 d=256 f=1024, CUDA T=16384 d=4096 f=16384, BF16. Inputs are random with a constant input
 * feature whose weight shifts H by {@code -shift} (default 1.28), so about 90% of the activations are zero, as
 * in trained Squared-ReLU models (the paper reports 84-98%).
 */
public final class Demo {
    private Backend backend = Backend.AUTO;
    private int device;
    private long tokens;
    private long dModel;
    private long dFf;
    private DType dtype = DType.BF16;
    private int runs;
    private double shift = 1.28;
    private long seed = 24;

    private Demo() {
    }

    /** Runs the demo; see the class comment for the options. */
    public static void main(String[] args) {
        Locale.setDefault(Locale.ROOT);
        Demo demo = new Demo();
        demo.parse(args);
        demo.run();
    }

    private void parse(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String value = i + 1 < args.length ? args[i + 1] : null;
            if (value == null) {
                throw new IllegalArgumentException("missing value after " + args[i]);
            }
            switch (args[i++]) {
                case "--backend" -> backend = Backend.valueOf(value.toUpperCase(Locale.ROOT));
                case "--device" -> device = Integer.parseInt(value);
                case "--tokens" -> tokens = Long.parseLong(value);
                case "--d-model" -> dModel = Long.parseLong(value);
                case "--d-ff" -> dFf = Long.parseLong(value);
                case "--dtype" -> dtype = DType.valueOf(value.toUpperCase(Locale.ROOT));
                case "--runs" -> runs = Integer.parseInt(value);
                case "--shift" -> shift = Double.parseDouble(value);
                case "--seed" -> seed = Long.parseLong(value);
                default -> throw new IllegalArgumentException("unknown option " + args[i - 1]
                        + " (options: --backend --device --tokens --d-model --d-ff --dtype --runs --shift --seed)");
            }
        }
    }

    private void run() {
        try (Sparse24 ctx = Sparse24.create(backend, device)) {
            boolean cuda = ctx.backend() == Backend.CUDA;
            tokens = tokens > 0 ? tokens : cuda ? 16384 : 256;
            dModel = dModel > 0 ? dModel : cuda ? 4096 : 256;
            dFf = dFf > 0 ? dFf : cuda ? 16384 : 1024;
            runs = runs > 0 ? runs : cuda ? 20 : 5;
            System.out.println("sparse24 " + Sparse24.version() + " on " + ctx.info());
            System.out.printf("FFN: T=%d tokens, d=%d, f=%d, %s; X [T, d], W1 [f, d], W2 [d, f]%n", tokens, dModel,
                    dFf, dtype);

            SplittableRandom random = new SplittableRandom(seed);
            try (Tensor x = Tensor.fromFloats(ctx, dtype, inputs(random), tokens, dModel).named("x");
                 Tensor w1 = Tensor.fromFloats(ctx, dtype, firstWeights(random), dFf, dModel).named("w1");
                 Tensor w2 = Tensor.fromFloats(ctx, dtype, uniform(random, dModel * dFf, 1 / Math.sqrt(dFf)), dModel,
                         dFf).named("w2");
                 Tensor dz = Tensor.fromFloats(ctx, dtype, uniform(random, tokens * dModel, 1), tokens, dModel)
                         .named("dz");
                 SparseFfn sparse = new SparseFfn(ctx, dModel, dFf, dtype, SparseFfnOptions.defaults());
                 SparseFfn dense = new SparseFfn(ctx, dModel, dFf, dtype, SparseFfnOptions.dense())) {
                System.out.println("sparse: " + sparse.options());
                System.out.println("  plan: " + sparse.planInfo(tokens));
                compare(sparse, dense, x, w1, w2, dz);
                double[] sparseMs = time(sparse, x, w1, w2, dz);
                double[] denseMs = time(dense, x, w1, w2, dz);
                System.out.printf("timings (median of %d runs after a warm-up):%n", runs);
                System.out.printf("  forward   sparse %9.3f ms   dense %9.3f ms   speedup %.2fx%n", sparseMs[0],
                        denseMs[0], denseMs[0] / sparseMs[0]);
                System.out.printf("  backward  sparse %9.3f ms   dense %9.3f ms   speedup %.2fx%n", sparseMs[1],
                        denseMs[1], denseMs[1] / sparseMs[1]);
                double sparseTotal = sparseMs[0] + sparseMs[1];
                double denseTotal = denseMs[0] + denseMs[1];
                System.out.printf("  total     sparse %9.3f ms   dense %9.3f ms   speedup %.2fx%n", sparseTotal,
                        denseTotal, denseTotal / sparseTotal);
            }
        }
    }

    /** One forward + backward of each; prints the statistics and the differences of the sparse results. */
    private void compare(SparseFfn sparse, SparseFfn dense, Tensor x, Tensor w1, Tensor w2, Tensor dz) {
        try (ForwardResult s = sparse.forward(x, w1, w2);
             ForwardResult d = dense.forward(x, w1, w2);
             Gradients sg = sparse.backward(s.saved(), x, w1, w2, dz);
             Gradients dg = dense.backward(d.saved(), x, w1, w2, dz)) {
            System.out.println("sparsity: " + s.saved().sparsity());
            System.out.println("sparse vs dense FFN (the 2:4 approximation; relative L2 / max abs difference):");
            report("Z  ", s.output(), d.output());
            report("dX ", sg.dx(), dg.dx());
            report("dW1", sg.dw1(), dg.dw1());
            report("dW2", sg.dw2(), dg.dw2());
        }
    }

    private static void report(String name, Tensor value, Tensor reference) {
        float[] a = value.toFloats();
        float[] b = reference.toFloats();
        double diff = 0;
        double norm = 0;
        double max = 0;
        for (int i = 0; i < a.length; i++) {
            double e = (double) a[i] - b[i];
            diff += e * e;
            norm += (double) b[i] * b[i];
            max = Math.max(max, Math.abs(e));
        }
        System.out.printf("  %s %s: relative %.3e, max %.3e%n", name, Arrays.toString(value.shape()),
                Math.sqrt(diff / Math.max(norm, Double.MIN_NORMAL)), max);
    }

    /** Median forward and backward milliseconds over {@code runs} runs after one warm-up. */
    private double[] time(SparseFfn ffn, Tensor x, Tensor w1, Tensor w2, Tensor dz) {
        Sparse24 ctx = ffn.context();
        double[] forward = new double[runs];
        double[] backward = new double[runs];
        try (Tensor z = Tensor.allocate(ctx, dtype, tokens, dModel);
             Tensor dx = Tensor.allocate(ctx, dtype, tokens, dModel);
             Tensor dw1 = Tensor.allocate(ctx, dtype, dFf, dModel);
             Tensor dw2 = Tensor.allocate(ctx, dtype, dModel, dFf);
             SavedState saved = ffn.newSavedState(tokens);
             Event start = Event.create(ctx);
             Event middle = Event.create(ctx);
             Event end = Event.create(ctx)) {
            for (int i = -1; i < runs; i++) {
                start.record();
                ffn.forward(x, w1, w2, z, saved);
                middle.record();
                ffn.backward(saved, x, w1, w2, dz, dx, dw1, dw2);
                end.record();
                if (i >= 0) {
                    forward[i] = Event.elapsedMillis(start, middle);
                    backward[i] = Event.elapsedMillis(middle, end);
                }
            }
        }
        return new double[] {median(forward), median(backward)};
    }

    private static double median(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    /** X [T, d]: unit variance, except column 0, which is the constant 1. */
    private float[] inputs(SplittableRandom random) {
        float[] x = uniform(random, tokens * dModel, 1);
        for (long t = 0; t < tokens; t++) {
            x[(int) (t * dModel)] = 1;
        }
        return x;
    }

    /** W1 [f, d]: variance 1/d, except column 0 (the weight of the constant input), which is -shift. */
    private float[] firstWeights(SplittableRandom random) {
        float[] w = uniform(random, dFf * dModel, 1 / Math.sqrt(dModel));
        for (long j = 0; j < dFf; j++) {
            w[(int) (j * dModel)] = (float) -shift;
        }
        return w;
    }

    /** Uniform values with mean 0 and standard deviation {@code std}. */
    private static float[] uniform(SplittableRandom random, long n, double std) {
        if (n > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("a tensor of " + n + " elements is too large for this demo");
        }
        float[] v = new float[(int) n];
        double half = std * Math.sqrt(3);
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) random.nextDouble(-half, half);
        }
        return v;
    }
}
