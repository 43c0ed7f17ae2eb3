package org.sparse24.bench;

import java.io.IOException;
import java.math.BigDecimal;
import java.math.MathContext;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.function.Supplier;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Pointer;
import org.sparse24.Backend;
import org.sparse24.DType;
import org.sparse24.Event;
import org.sparse24.Layout;
import org.sparse24.PackedMatrix;
import org.sparse24.PlanInfo;
import org.sparse24.SavedState;
import org.sparse24.Sparse24;
import org.sparse24.Sparse24Ops;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;
import org.sparse24.Sparsity;
import org.sparse24.Tensor;

/**
 * Benchmark of the sparse24 building blocks and of the FFN, sparse against dense, through the Java API.
 *
 * <pre>
 * java org.sparse24.bench.FfnBenchmark OUTDIR [--shapes TxDxF,...] [--reps 20] [--warmup 5]
 *                                             [--backend AUTO|CPU|CUDA] [--dtype BF16|FP16|FP32] [--no-search]
 *                                             [--crossover] [--clear-plans]
 * </pre>
 * Per shape (T tokens, d model width, f FFN width): the fused row-wise sparsify kernel and the transposed split
 * kernel (ms, GB/s, % of the measured copy bandwidth) through {@code Sparse24Ops} with device-resident index and
 * count tensors (one call between two events) next to the same call 10 times back to back (the kernel's own
 * time: launches overlap the previous kernel) and the host-array convenience call; the four GEMMs of the FFN
 * sparse (cuSPARSELt, tuned plans) against dense (cuBLASLt) of the same shape; the time to prepare the FFN's
 * plans ({@code SparseFfn.tune}: a tuning run, or plans read back from the plan cache); and the FFN forward,
 * backward and both, sparse (default options) against dense (no 2:4). {@code --crossover} measures only the FFN,
 * over T in {2048, 4096, 8192, 16384, 32768} and (d, f) in {(2048, 8192), (4096, 16384), (8192, 28672)}, and
 * writes OUTDIR/crossover.md (a markdown table). {@code --clear-plans} deletes the plan cache first (a fresh
 * tuning run). Times are medians of {@code reps} runs after {@code warmup} runs, between two events of the
 * context's stream (CUDA events; the host clock on the CPU backend). Inputs are random normal (x ~ N(0.5, 1),
 * w1 ~ N(shift, 0.02) so ~88% of relu(H) is zero as in trained models, w2 ~ N(0, 0.02), dz ~ N(0, 1)), tiled
 * from blocks of 2^22 values. Writes OUTDIR/ffn-benchmark.json and OUTDIR/ffn-benchmark.csv (after every
 * measurement, so an interrupted run keeps what it measured). A failed measurement is printed and skipped; the
 * exit status is 1 if any failed, 2 for bad arguments.
 */
public final class FfnBenchmark {
    private static final String CUDA_SHAPES = "16384x2048x8192,16384x4096x16384,8192x8192x28672";
    private static final String CPU_SHAPES = "256x256x1024";
    private static final long[] CROSSOVER_TOKENS = {2048, 4096, 8192, 16384, 32768};
    private static final long[][] CROSSOVER_WIDTHS = {{2048, 8192}, {4096, 16384}, {8192, 28672}};
    private static final int BACK_TO_BACK = 10;
    private static final int BLOCK = 1 << 22;
    private static final long SEED = 24;

    /** One line of the results; NaN where a column does not apply. */
    record Row(String shape, String what, double ms, double denseMs, double gbps, double pctCopy,
               double denseTflops, String note) {
        double speedup() {
            return denseMs / ms;
        }
    }

    // options
    private final Path outDir;
    private String shapes;
    private int reps = 20;
    private int warmup = 5;
    private Backend backend = Backend.AUTO;
    private DType dtype = DType.BF16;
    private boolean search = true;
    private boolean crossover;
    private boolean clearPlans;

    // state
    private Sparse24 ctx;
    private Event start;
    private Event middle;
    private Event end;
    private double copyGbps = Double.NaN;
    private final float[][] normals = new float[4][];
    private final List<Row> rows = new ArrayList<>();
    private final List<String> failures = new ArrayList<>();

    private FfnBenchmark(Path outDir) {
        this.outDir = outDir;
    }

    /** Runs the benchmark; see the class comment for the arguments. */
    public static void main(String[] args) {
        Locale.setDefault(Locale.ROOT);
        FfnBenchmark bench;
        try {
            bench = parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("FfnBenchmark: " + e.getMessage());
            System.err.println("usage: FfnBenchmark OUTDIR [--shapes TxDxF,...] [--reps N] [--warmup N] "
                    + "[--backend AUTO|CPU|CUDA] [--dtype BF16|FP16|FP32] [--no-search] [--crossover] [--clear-plans]");
            System.exit(2);
            return;
        }
        int failed = bench.run();
        System.exit(failed == 0 ? 0 : 1);
    }

    private static FfnBenchmark parse(String[] args) {
        if (args.length == 0 || args[0].startsWith("--")) {
            throw new IllegalArgumentException("the first argument must be the output directory");
        }
        FfnBenchmark b = new FfnBenchmark(Paths.get(args[0]));
        for (int i = 1; i < args.length; i++) {
            String option = args[i];
            if (option.equals("--no-search")) {
                b.search = false;
                continue;
            }
            if (option.equals("--crossover")) {
                b.crossover = true;
                continue;
            }
            if (option.equals("--clear-plans")) {
                b.clearPlans = true;
                continue;
            }
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("missing value after " + option);
            }
            String value = args[++i];
            switch (option) {
                case "--shapes" -> {
                    parseShapes(value);
                    b.shapes = value;
                }
                case "--reps" -> b.reps = Integer.parseInt(value);
                case "--warmup" -> b.warmup = Integer.parseInt(value);
                case "--backend" -> b.backend = Backend.valueOf(value.toUpperCase(Locale.ROOT));
                case "--dtype" -> b.dtype = DType.valueOf(value.toUpperCase(Locale.ROOT));
                default -> throw new IllegalArgumentException("unknown option " + option);
            }
        }
        if (b.reps < 1 || b.warmup < 0) {
            throw new IllegalArgumentException("--reps must be >= 1 and --warmup >= 0");
        }
        if (b.dtype == DType.FP32 && b.backend != Backend.CPU) {
            throw new IllegalArgumentException("--dtype FP32 needs --backend CPU (the CUDA backend runs BF16/FP16)");
        }
        return b;
    }

    /** "TxDxF,..." as {T, d, f} triples; T and f must be multiples of 4 (2:4 along features and along tokens). */
    private static List<long[]> parseShapes(String list) {
        List<long[]> out = new ArrayList<>();
        for (String s : list.split(",")) {
            String[] p = s.trim().toLowerCase(Locale.ROOT).split("x");
            if (p.length != 3) {
                throw new IllegalArgumentException("shape '" + s + "' is not TxDxF");
            }
            long[] tdf = {Long.parseLong(p[0]), Long.parseLong(p[1]), Long.parseLong(p[2])};
            if (tdf[0] < 4 || tdf[1] < 1 || tdf[2] < 4 || tdf[0] % 4 != 0 || tdf[2] % 4 != 0) {
                throw new IllegalArgumentException("shape '" + s + "': T and f must be positive multiples of 4, d >= 1");
            }
            out.add(tdf);
        }
        return out;
    }

    /** Runs everything; returns the number of failed measurements. */
    private int run() {
        try {
            Files.createDirectories(outDir);
        } catch (IOException e) {
            System.err.println("FfnBenchmark: cannot create " + outDir + ": " + e);
            return 1;
        }
        try (Sparse24 context = Sparse24.create(backend)) {
            ctx = context;
            boolean cuda = ctx.backend() == Backend.CUDA;
            List<long[]> list = parseShapes(shapes != null ? shapes : cuda ? CUDA_SHAPES : CPU_SHAPES);
            System.out.println("sparse24 " + Sparse24.version() + " FfnBenchmark on " + ctx.info());
            System.out.printf("device: %s; %s, median of %d runs after %d warm-up runs, algorithm search %s%n",
                    ctx.info().deviceName(), dtype, reps, warmup, search ? "on" : "off");
            ctx.setAlgorithmSearch(search);
            if (clearPlans) {
                ctx.clearPlanCache();
            }
            start = Event.create(ctx);
            middle = Event.create(ctx);
            end = Event.create(ctx);
            if (crossover) {
                crossover();
                return finish();
            }
            measure("-", "copy bandwidth", this::copyBandwidth);
            for (long[] s : list) {
                String shape = s[0] + "x" + s[1] + "x" + s[2];
                System.out.printf("%n== T=%d d=%d f=%d (%s) ==%n", s[0], s[1], s[2], shape);
                System.out.printf("%-44s %10s %10s %8s %9s %7s %8s  %s%n", "what", "ms", "dense ms", "speedup",
                        "GB/s", "% copy", "TFLOP/s", "note");
                measure(shape, "shape", () -> {
                    runShape(shape, s[0], s[1], s[2]);
                    return List.of();
                });
            }
        } catch (RuntimeException | Error e) {
            fail("-", "context", e);
        }
        return finish();
    }

    private int finish() {
        write();
        System.out.printf("%n%d measurements, %d failed; results in %s%n", rows.size(), failures.size(),
                outDir.toAbsolutePath());
        failures.forEach(f -> System.out.println("FAILED " + f));
        return failures.size();
    }

    // ---- crossover -----------------------------------------------------------------------------------------

    /**
     * The FFN, sparse against dense, over the crossover grid; per (d, f) the inputs are allocated once for the
     * largest T and the smaller T use their leading rows.
     */
    private void crossover() {
        double flopsPerRep = 0;
        for (long[] w : CROSSOVER_WIDTHS) {
            for (long t : CROSSOVER_TOKENS) {
                flopsPerRep += 2 * 6.0 * t * w[0] * w[1];  // forward + backward, sparse and dense: 2 x 3 GEMMs
            }
        }
        System.out.printf("crossover: %d shapes, %d runs each; estimated %.0f s of FFN calls at ~500 TFLOP/s, plus "
                        + "the plans' tuning (a few seconds a shape, once: kept in the plan cache)%n",
                CROSSOVER_TOKENS.length * CROSSOVER_WIDTHS.length, reps + warmup,
                flopsPerRep * (reps + warmup) / 500e12);
        System.out.printf("%-22s %10s %10s %8s  %s%n", "what", "ms", "dense ms", "speedup", "note");
        StringBuilder md = new StringBuilder("| T × d × f | forward | backward | forward + backward |\n|---|---|---|---|\n");
        for (long[] w : CROSSOVER_WIDTHS) {
            long d = w[0];
            long f = w[1];
            long tMax = CROSSOVER_TOKENS[CROSSOVER_TOKENS.length - 1];
            double shift = w1Mean(d);
            try (Tensor xAll = random("x", 0, 0.5, 1, tMax, d);
                 Tensor w1 = random("w1", 1, shift, 0.02, f, d);
                 Tensor w2 = random("w2", 2, 0, 0.02, d, f);
                 Tensor dzAll = random("dz", 3, 0, 1, tMax, d);
                 Tensor zAll = Tensor.allocate(ctx, dtype, tMax, d).named("z");
                 Tensor dxAll = Tensor.allocate(ctx, dtype, tMax, d).named("dx");
                 Tensor dw1 = Tensor.allocate(ctx, dtype, f, d).named("dw1");
                 Tensor dw2 = Tensor.allocate(ctx, dtype, d, f).named("dw2")) {
                for (long t : CROSSOVER_TOKENS) {
                    String shape = t + "x" + d + "x" + f;
                    try (Tensor x = rowsOf(xAll, t); Tensor dz = rowsOf(dzAll, t); Tensor z = rowsOf(zAll, t);
                         Tensor dx = rowsOf(dxAll, t)) {
                        int before = rows.size();
                        measure(shape, "FFN", () -> ffn(shape, t, d, f, x, w1, w2, dz, z, dx, dw1, dw2));
                        if (rows.size() - before >= 3) {
                            Row fwd = rows.get(before);
                            Row bwd = rows.get(before + 1);
                            Row both = rows.get(before + 2);
                            md.append(String.format("| %d × %d × %d | %.2f× | %.2f× | %.2f× |%n", t, d, f,
                                    fwd.speedup(), bwd.speedup(), both.speedup()));
                        }
                    }
                    writeText("crossover.md", md.toString());
                }
            } catch (RuntimeException | Error e) {
                fail(d + "x" + f, "crossover", e);
            }
        }
        System.out.println();
        System.out.print(md);
    }

    /** A view of the first {@code n} rows of {@code t} (same memory). */
    private Tensor rowsOf(Tensor t, long n) {
        return Tensor.borrow(ctx, t.data(), t.dtype(), n, t.dim(1)).named(t.name());
    }

    // ---- measurements ------------------------------------------------------------------------------------

    /** A context-to-context copy (gatherRows without permutation: cudaMemcpyAsync), bytes read + written. */
    private List<Row> copyBandwidth() {
        long bytes = ctx.backend() == Backend.CUDA ? 1L << 30 : 1L << 27;
        long cols = 8192;
        try (Tensor a = Tensor.allocate(ctx, DType.BF16, bytes / 2 / cols, cols);
             Tensor b = Tensor.allocate(ctx, DType.BF16, bytes / 2 / cols, cols)) {
            a.poison(0x3c);
            b.poison(0);
            double ms = time(() -> Sparse24Ops.gatherRows(a, (Tensor) null, b));
            copyGbps = 2.0 * bytes / ms / 1e6;
            return List.of(new Row("-", "copy " + (bytes >> 20) + " MiB context to context", ms, Double.NaN,
                    copyGbps, 100, Double.NaN, "bytes read + written"));
        }
    }

    private void runShape(String shape, long T, long d, long f) {
        boolean cuda = ctx.backend() == Backend.CUDA;
        Layout layout = cuda && T % 64 == 0 && f % 64 == 0 ? Layout.CUSPARSELT : Layout.ROW;
        int k;  // as many dense features as the FFN's split takes
        try (SparseFfn probe = new SparseFfn(ctx, d, f, dtype, SparseFfnOptions.defaults())) {
            k = (int) probe.planInfo(T).denseFeatures();
        }
        double shift = w1Mean(d);
        try (Tensor x = random("x", 0, 0.5, 1, T, d);
             Tensor w1 = random("w1", 1, shift, 0.02, f, d);
             Tensor w2 = random("w2", 2, 0, 0.02, d, f);
             Tensor dz = random("dz", 3, 0, 1, T, d);
             Tensor h = Tensor.allocate(ctx, dtype, T, f).named("h");
             Tensor z = Tensor.allocate(ctx, dtype, T, d).named("z");
             Tensor dx = Tensor.allocate(ctx, dtype, T, d).named("dx");
             Tensor dw1 = Tensor.allocate(ctx, dtype, f, d).named("dw1");
             Tensor dw2 = Tensor.allocate(ctx, dtype, d, f).named("dw2");
             Tensor denseCols = k > 0 ? Tensor.allocate(ctx, dtype, T, k).named("denseCols") : null;
             PackedMatrix yhat = PackedMatrix.allocate(ctx, layout, dtype, T, f);
             PackedMatrix yt = PackedMatrix.allocate(ctx, layout, dtype, f, T)) {
            // H = X W1^T as the FFN computes it; its 2:4 Yhat, the dense features and the split Yt for the GEMMs.
            // The index, count and total arrays live in the context's memory, as the FFN keeps them.
            Sparse24Ops.gemm(x, false, w1, true, h);
            int[] perm = Sparse24Ops.tokenPermutation(SEED, 0, Math.toIntExact(T));
            try (Tensor counts = Tensor.allocate(ctx, DType.INT32, f).named("counts");
                 Tensor totals = Tensor.allocate(ctx, DType.INT64, 2).named("totals");
                 Tensor isDense = Tensor.allocate(ctx, DType.UINT8, f).named("isDense");
                 Tensor denseIdx = k > 0 ? Tensor.allocate(ctx, DType.INT32, k).named("denseIdx") : null;
                 Tensor permT = Tensor.fromInts(ctx, perm, T).named("perm")) {
                Sparse24Ops.sparsify24Rows(h, false, yhat, counts, totals);
                if (k > 0) {
                    Sparse24Ops.selectDenseFeatures(counts, denseIdx, isDense);
                } else {
                    isDense.copyFrom(new byte[Math.toIntExact(f)]);
                }
                Sparse24Ops.sparsify24ColsSplit(yhat, permT, isDense, denseIdx, yt, denseCols, totals);
                int[] countsHost = counts.toInts();
                int[] denseIdxHost = denseIdx == null ? new int[0] : denseIdx.toInts();

                double rowsBytes = (double) h.byteSize() + yhat.byteSize();
                double splitBytes = (double) yhat.byteSize() + yt.byteSize();
                String splitNote = "read Yhat + write Yt; perm, " + k + " dense features";
                measure(shape, "sparsify24_rows", () -> List.of(
                        bandwidth(shape, "sparsify24_rows " + layout + " (Java API)",
                                time(() -> Sparse24Ops.sparsify24Rows(h, false, yhat, counts, totals)), rowsBytes,
                                "read H + write Yhat; device counts and totals, one call"),
                        bandwidth(shape, "sparsify24_rows " + layout + " (kernel)",
                                timeBackToBack(() -> Sparse24Ops.sparsify24Rows(h, false, yhat, counts, totals)),
                                rowsBytes, BACK_TO_BACK + " calls back to back: the kernel's own time"),
                        bandwidth(shape, "sparsify24_rows " + layout + " (host arrays)",
                                time(() -> Sparse24Ops.sparsify24Rows(h, false, yhat, countsHost)), rowsBytes,
                                "int[] counts: allocated, copied back, synchronized per call")));
                measure(shape, "sparsify24_cols_split", () -> List.of(
                        bandwidth(shape, "cols_split " + layout + " (Java API)",
                                time(() -> Sparse24Ops.sparsify24ColsSplit(yhat, permT, isDense, denseIdx, yt,
                                        denseCols, totals)), splitBytes, splitNote + "; device indices, one call"),
                        bandwidth(shape, "cols_split " + layout + " (kernel)",
                                timeBackToBack(() -> Sparse24Ops.sparsify24ColsSplit(yhat, permT, isDense, denseIdx,
                                        yt, denseCols, totals)), splitBytes,
                                BACK_TO_BACK + " calls back to back: the kernel's own time"),
                        bandwidth(shape, "cols_split " + layout + " (host arrays)",
                                time(() -> Sparse24Ops.sparsify24ColsSplit(yhat, perm, denseIdxHost, yt, denseCols)),
                                splitBytes, "int[] indices: allocated, copied, synchronized per call")));
            }

            // sparse GEMM (Yhat stands in for dH: same shape and mask) against the dense GEMM the dense FFN runs
            double flops = 2.0 * T * d * f;
            String note = "sparse operand " + layout;
            gemm(shape, "GEMM Z = Yhat W2^T", flops, note, () -> Sparse24Ops.spmm(yhat, w2, true, z),
                    () -> Sparse24Ops.gemm(h, false, w2, true, z));
            gemm(shape, "GEMM dX = dH W1", flops, note, () -> Sparse24Ops.spmm(yhat, w1, false, dx),
                    () -> Sparse24Ops.gemm(h, false, w1, false, dx));
            gemm(shape, "GEMM dW2^T = Yt dZ (dense dW2 = dZ^T Y)", flops, note,
                    () -> Sparse24Ops.spmm(yt, dz, false, true, dw2), () -> Sparse24Ops.gemm(dz, true, h, false, dw2));
            gemm(shape, "GEMM dW1 = dHt X (dense dH^T X)", flops, note,
                    () -> Sparse24Ops.spmm(yt, x, false, false, dw1), () -> Sparse24Ops.gemm(h, true, x, false, dw1));

            measure(shape, "FFN", () -> ffn(shape, T, d, f, x, w1, w2, dz, z, dx, dw1, dw2));
        }
    }

    /** One sparse GEMM against its dense equivalent. */
    private void gemm(String shape, String what, double flops, String note, Runnable sparse, Runnable dense) {
        measure(shape, what, () -> {
            double ms = time(sparse);
            double denseMs = time(dense);
            return List.of(new Row(shape, what, ms, denseMs, Double.NaN, Double.NaN, flops / denseMs / 1e9, note));
        });
    }

    /** FFN forward, backward and both: sparse (default options) against dense (no 2:4), and the sparsity. */
    private List<Row> ffn(String shape, long T, long d, long f, Tensor x, Tensor w1, Tensor w2, Tensor dz, Tensor z,
                          Tensor dx, Tensor dw1, Tensor dw2) {
        SparseFfnOptions options = SparseFfnOptions.builder().algorithmSearch(search).build();
        try (SparseFfn sparse = new SparseFfn(ctx, d, f, dtype, options);
             SparseFfn dense = new SparseFfn(ctx, d, f, dtype, SparseFfnOptions.dense());
             SavedState sparseSaved = sparse.newSavedState(T);
             SavedState denseSaved = dense.newSavedState(T)) {
            long t0 = System.nanoTime();
            sparse.tune(T);  // the plans: tuned now, or read back from the plan cache and validated
            double prepareMs = (System.nanoTime() - t0) / 1e6;
            dense.tune(T);
            double[] s = timeFfn(sparse, sparseSaved, x, w1, w2, dz, z, dx, dw1, dw2);
            double[] n = timeFfn(dense, denseSaved, x, w1, w2, dz, z, dx, dw1, dw2);
            PlanInfo plan = sparse.planInfo(T);
            Sparsity st = sparseSaved.sparsity();
            String path = String.format("sparse path: forward %s, backward %s", plan.sparseForwardPath() ? "yes" : "no",
                    plan.sparseBackwardPath() ? "yes" : "no");
            double flops = 2.0 * T * d * f;
            String stats = String.format("activation sparsity %.2f%%, forward 2:4 dropped %.2f%%, dW2 2:4 dropped "
                            + "%.2f%%, dW1 2:4 dropped %.2f%%, dense features %d", 100 * st.activationSparsity(),
                    100 * st.forwardDropRate(), 100 * st.dw2DropRate(), 100 * st.dw1DropRate(), st.denseFeatures());
            return List.of(
                    new Row(shape, "FFN forward", s[0], n[0], Double.NaN, Double.NaN, 2 * flops / n[0] / 1e9, path),
                    new Row(shape, "FFN backward", s[1], n[1], Double.NaN, Double.NaN, 4 * flops / n[1] / 1e9, path),
                    new Row(shape, "FFN forward+backward", s[2], n[2], Double.NaN, Double.NaN, 6 * flops / n[2] / 1e9,
                            path),
                    new Row(shape, "sparsity (sparse FFN)", Double.NaN, Double.NaN, Double.NaN, Double.NaN,
                            Double.NaN, stats),
                    new Row(shape, "plans prepared (SparseFfn.tune)", prepareMs, Double.NaN, Double.NaN, Double.NaN,
                            Double.NaN, "host ms: a tuning run, or the plan cache read back and validated"));
        }
    }

    /** Median forward, backward and forward+backward milliseconds. */
    private double[] timeFfn(SparseFfn ffn, SavedState saved, Tensor x, Tensor w1, Tensor w2, Tensor dz, Tensor z,
                             Tensor dx, Tensor dw1, Tensor dw2) {
        for (int i = 0; i < warmup; i++) {
            ffn.forward(x, w1, w2, z, saved);
            ffn.backward(saved, x, w1, w2, dz, dx, dw1, dw2);
        }
        float[] fwd = new float[reps];
        float[] bwd = new float[reps];
        float[] both = new float[reps];
        for (int i = 0; i < reps; i++) {
            start.record();
            ffn.forward(x, w1, w2, z, saved);
            middle.record();
            ffn.backward(saved, x, w1, w2, dz, dx, dw1, dw2);
            end.record();
            fwd[i] = Event.elapsedMillis(start, middle);
            bwd[i] = Event.elapsedMillis(middle, end);
            both[i] = Event.elapsedMillis(start, end);
        }
        return new double[] {median(fwd), median(bwd), median(both)};
    }

    // ---- timing, inputs, bookkeeping ---------------------------------------------------------------------

    /** Median milliseconds of {@code op} between two events, after the warm-up runs. */
    private double time(Runnable op) {
        for (int i = 0; i < warmup; i++) {
            op.run();
        }
        float[] ms = new float[reps];
        for (int i = 0; i < reps; i++) {
            start.record();
            op.run();
            end.record();
            ms[i] = Event.elapsedMillis(start, end);
        }
        return median(ms);
    }

    /** Median over {@code reps} of the time of {@link #BACK_TO_BACK} calls in a row, divided by their number. */
    private double timeBackToBack(Runnable op) {
        return time(() -> {
            for (int i = 0; i < BACK_TO_BACK; i++) {
                op.run();
            }
        }) / BACK_TO_BACK;
    }

    private static double median(float[] values) {
        float[] v = values.clone();
        Arrays.sort(v);
        int n = v.length;
        return n % 2 == 1 ? v[n / 2] : 0.5 * ((double) v[n / 2 - 1] + v[n / 2]);
    }

    private Row bandwidth(String shape, String what, double ms, double bytes, String note) {
        double gbps = bytes / ms / 1e6;
        return new Row(shape, what, ms, Double.NaN, gbps, 100 * gbps / copyGbps, Double.NaN, note);
    }

    /** The mean of w1 ~ N(mean, 0.02) that makes ~88% of relu(H) zero for x ~ N(0.5, 1) of width d (class comment). */
    private static double w1Mean(long d) {
        return -1.2 * Math.sqrt(1.25 * d) * 0.02 / (0.5 * d);
    }

    /**
     * A tensor of N(mean, std) values: one block of up to 2^22 standard normal values per role (drawn once),
     * scaled and tiled over the tensor chunk by chunk through borrowed views, so no Java array exceeds the block.
     */
    private Tensor random(String name, int role, double mean, double std, long... shape) {
        if (normals[role] == null) {
            Random r = new Random(SEED + role);
            normals[role] = new float[BLOCK];
            for (int i = 0; i < BLOCK; i++) {
                normals[role][i] = (float) r.nextGaussian();
            }
        }
        Tensor t = Tensor.allocate(ctx, dtype, shape).named(name);
        try {
            long n = t.elementCount();
            float[] chunk = new float[(int) Math.min(n, BLOCK)];
            for (int i = 0; i < chunk.length; i++) {
                chunk[i] = (float) (mean + std * normals[role][i]);
            }
            for (long offset = 0; offset < n; offset += chunk.length) {
                int len = (int) Math.min(chunk.length, n - offset);
                try (Tensor view = Tensor.borrow(ctx, at(t, offset * dtype.byteSize()), dtype, len)) {
                    view.copyFrom(len == chunk.length ? chunk : Arrays.copyOf(chunk, len));
                }
            }
            return t;
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
    }

    /** A view of {@code t}'s memory {@code bytes} past its start (JavaCPP's position, in bytes). */
    private static Pointer at(Tensor t, long bytes) {
        return new BytePointer(t.data()).position(bytes);
    }

    /** Runs one measurement; a failure is recorded and printed, and the benchmark goes on. */
    private void measure(String shape, String what, Supplier<List<Row>> measurement) {
        try {
            for (Row r : measurement.get()) {
                rows.add(r);
                print(r);
            }
        } catch (RuntimeException | Error e) {
            fail(shape, what, e);
        }
        write();
    }

    private void fail(String shape, String what, Throwable e) {
        String message = shape + " " + what + ": " + e;
        failures.add(message);
        System.out.println("FAILED " + message);
        e.printStackTrace(System.out);
    }

    private static void print(Row r) {
        System.out.printf("%-44s %10s %10s %8s %9s %7s %8s  %s%n", r.what(), num(r.ms(), "%.3f"),
                num(r.denseMs(), "%.3f"), num(r.speedup(), "%.3fx"), num(r.gbps(), "%.1f"),
                num(r.pctCopy(), "%.1f%%"), num(r.denseTflops(), "%.2f"), r.note());
    }

    private static String num(double v, String format) {
        return Double.isFinite(v) ? String.format(format, v) : "";
    }

    // ---- output files ------------------------------------------------------------------------------------

    private void write() {
        StringBuilder csv = new StringBuilder("shape,what,ms,dense_ms,speedup,gbps,pct_copy,dense_tflops,note\n");
        for (Row r : rows) {
            csv.append(String.join(",", r.shape(), csvText(r.what()), csvNum(r.ms()), csvNum(r.denseMs()),
                    csvNum(r.speedup()), csvNum(r.gbps()), csvNum(r.pctCopy()), csvNum(r.denseTflops()),
                    csvText(r.note()))).append('\n');
        }
        StringBuilder json = new StringBuilder("{\n");
        json.append("  \"device\": ").append(jsonText(ctx == null ? "" : ctx.info().deviceName())).append(",\n");
        json.append("  \"context\": ").append(jsonText(ctx == null ? "" : ctx.info().toString())).append(",\n");
        json.append("  \"version\": ").append(jsonText(Sparse24.version())).append(",\n");
        json.append("  \"dtype\": ").append(jsonText(dtype.toString())).append(",\n");
        json.append("  \"reps\": ").append(reps).append(", \"warmup\": ").append(warmup)
                .append(", \"algorithm_search\": ").append(search).append(",\n");
        json.append("  \"copy_gbps\": ").append(jsonNum(copyGbps)).append(",\n");
        json.append("  \"results\": [");
        for (int i = 0; i < rows.size(); i++) {
            Row r = rows.get(i);
            json.append(i == 0 ? "\n" : ",\n").append("    {\"shape\": ").append(jsonText(r.shape()))
                    .append(", \"what\": ").append(jsonText(r.what()))
                    .append(", \"ms\": ").append(jsonNum(r.ms()))
                    .append(", \"dense_ms\": ").append(jsonNum(r.denseMs()))
                    .append(", \"speedup\": ").append(jsonNum(r.speedup()))
                    .append(", \"gbps\": ").append(jsonNum(r.gbps()))
                    .append(", \"pct_copy\": ").append(jsonNum(r.pctCopy()))
                    .append(", \"dense_tflops\": ").append(jsonNum(r.denseTflops()))
                    .append(", \"note\": ").append(jsonText(r.note())).append('}');
        }
        json.append("\n  ],\n  \"failures\": [");
        for (int i = 0; i < failures.size(); i++) {
            json.append(i == 0 ? "\n    " : ",\n    ").append(jsonText(failures.get(i)));
        }
        json.append("\n  ]\n}\n");
        writeText("ffn-benchmark.csv", csv.toString());
        writeText("ffn-benchmark.json", json.toString());
    }

    private void writeText(String file, String text) {
        try {
            Files.writeString(outDir.resolve(file), text, StandardCharsets.UTF_8);
        } catch (IOException e) {
            System.out.println("FfnBenchmark: cannot write " + file + " to " + outDir + ": " + e);
        }
    }

    private static String round(double v) {
        return new BigDecimal(v).round(new MathContext(6)).stripTrailingZeros().toPlainString();
    }

    private static String csvNum(double v) {
        return Double.isFinite(v) ? round(v) : "";
    }

    private static String csvText(String s) {
        return s.contains(",") || s.contains("\"") ? "\"" + s.replace("\"", "\"\"") + "\"" : s;
    }

    private static String jsonNum(double v) {
        return Double.isFinite(v) ? round(v) : "null";
    }

    private static String jsonText(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                default -> out.append(c < 0x20 ? String.format("\\u%04x", (int) c) : String.valueOf(c));
            }
        }
        return out.append('"').toString();
    }
}
