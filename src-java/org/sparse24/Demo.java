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
 *                        [--dtype bf16|fp16|fp32] [--runs N] [--shift s] [--seed n] [--help]
 * </pre>
 * Defaults: CPU T=256 d=256 f=1024, CUDA T=16384 d=4096 f=16384, BF16. Inputs are random with a constant input
 * feature whose weight shifts H by {@code -shift} (default 1.28), so about 90% of the activations are zero, as
 * in trained Squared-ReLU models (the paper reports 84-98%). A bad option prints one line naming it and exits
 * with status 2; a failure while running prints one line and exits with status 1.
 */
public final class Demo {
    private static final String USAGE = String.join(System.lineSeparator(),
            "usage: java org.sparse24.Demo [options]   (or: mvn -q process-classes exec:java -Dexec.args=\"...\")",
            "Runs one sparse FFN forward + backward and the dense FFN, and compares them.",
            "  --backend auto|cpu|cuda   backend (default auto: CUDA if usable, else the CPU reference)",
            "  --device N                CUDA device ordinal, N >= 0 (default 0)",
            "  --tokens T                tokens, T >= 1 (default: CUDA 16384, CPU 256)",
            "  --d-model d               model width, d >= 1 (default: CUDA 4096, CPU 256)",
            "  --d-ff f                  FFN width, a multiple of 4 (default: CUDA 16384, CPU 1024)",
            "  --dtype bf16|fp16|fp32    element type (default bf16; fp32 on the CPU backend only)",
            "  --runs N                  timed runs after one warm-up, N >= 1 (default: CUDA 20, CPU 5)",
            "  --shift s                 activation shift, s >= 0 (default 1.28: about 90% zeros)",
            "  --seed n                  random seed (default 24)",
            "  --help                    this text");

    /** A bad command line: printed as one line, exit status 2. */
    private static final class UsageException extends RuntimeException {
        UsageException(String message) {
            super(message);
        }
    }

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

    /**
     * Runs the demo; see the class comment for the options. Exits with status 2 on a bad option and 1 on a
     * failure, printing one line.
     */
    public static void main(String[] args) {
        Locale.setDefault(Locale.ROOT);
        Demo demo = new Demo();
        try {
            if (!demo.parse(args)) {
                System.out.println(USAGE);
                return;
            }
        } catch (UsageException e) {
            System.err.println("demo: " + e.getMessage() + " (--help lists the options)");
            System.exit(2);
        }
        try {
            demo.run();
        } catch (RuntimeException e) {
            System.err.println("demo: " + e.getClass().getSimpleName() + ": " + e.getMessage());
            System.exit(1);
        }
    }

    /** Reads the options; false when --help was asked for. */
    private boolean parse(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String option = args[i];
            if (option.equals("--help") || option.equals("-h")) {
                return false;
            }
            if (i + 1 >= args.length) {
                throw new UsageException(option.startsWith("--") ? "missing value after " + option
                        : "unexpected argument '" + option + "'");
            }
            String value = args[++i];
            switch (option) {
                case "--backend" -> backend = choice(option, value, Backend.class, "auto|cpu|cuda");
                case "--device" -> device = (int) number(option, value, 0, Integer.MAX_VALUE, "a CUDA device ordinal >= 0");
                case "--tokens" -> tokens = number(option, value, 1, Integer.MAX_VALUE, "an integer >= 1");
                case "--d-model" -> dModel = number(option, value, 1, Integer.MAX_VALUE, "an integer >= 1");
                case "--d-ff" -> {
                    dFf = number(option, value, 4, Integer.MAX_VALUE, "a multiple of 4, >= 4");
                    if (dFf % 4 != 0) {
                        throw new UsageException("--d-ff: expected a multiple of 4, >= 4, got " + value);
                    }
                }
                case "--dtype" -> dtype = choice(option, value, DType.class, "bf16|fp16|fp32");
                case "--runs" -> runs = (int) number(option, value, 1, 100_000, "an integer from 1 to 100000");
                case "--shift" -> {
                    try {
                        shift = Double.parseDouble(value);
                    } catch (NumberFormatException e) {
                        shift = Double.NaN;
                    }
                    if (!(shift >= 0) || Double.isInfinite(shift)) {
                        throw new UsageException("--shift: expected a finite number >= 0, got '" + value + "'");
                    }
                }
                case "--seed" -> seed = number(option, value, Long.MIN_VALUE, Long.MAX_VALUE, "an integer");
                default -> throw new UsageException("unknown option '" + option + "'");
            }
        }
        return true;
    }

    private static long number(String option, String value, long min, long max, String expected) {
        try {
            long v = Long.parseLong(value);
            if (v >= min && v <= max) {
                return v;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new UsageException(option + ": expected " + expected + ", got '" + value + "'");
    }

    private static <E extends Enum<E>> E choice(String option, String value, Class<E> type, String valid) {
        for (String name : valid.split("\\|")) {
            if (name.equalsIgnoreCase(value)) {
                return Enum.valueOf(type, name.toUpperCase(Locale.ROOT));
            }
        }
        throw new UsageException(option + ": expected one of " + valid.replace("|", ", ") + ", got '" + value + "'");
    }

    private void run() {
        try (Sparse24 ctx = Sparse24.create(backend, device)) {
            boolean cuda = ctx.backend() == Backend.CUDA;
            tokens = tokens > 0 ? tokens : cuda ? 16384 : 256;
            dModel = dModel > 0 ? dModel : cuda ? 4096 : 256;
            dFf = dFf > 0 ? dFf : cuda ? 16384 : 1024;
            runs = runs > 0 ? runs : cuda ? 20 : 5;
            System.out.println("sparse24 " + Sparse24.version() + " on " + ctx.info());
            if (!ctx.info().fallbackReason().isEmpty()) {
                System.out.println("AUTO chose the CPU backend: " + ctx.info().fallbackReason());
            }
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
                timing("forward ", sparseMs[0], denseMs[0], cuda);
                timing("backward", sparseMs[1], denseMs[1], cuda);
                timing("total   ", sparseMs[0] + sparseMs[1], denseMs[0] + denseMs[1], cuda);
                if (!cuda) {
                    System.out.println("The CPU backend is the reference implementation (no sparse GEMMs): its"
                            + " timings are no speedup measurement; speedups need the CUDA backend.");
                }
            }
        }
    }

    private static void timing(String what, double sparseMs, double denseMs, boolean cuda) {
        System.out.printf("  %s  sparse %9.3f ms   dense %9.3f ms   %s%n", what, sparseMs, denseMs,
                cuda ? String.format("speedup %.2fx", denseMs / sparseMs) : "(CPU reference)");
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
