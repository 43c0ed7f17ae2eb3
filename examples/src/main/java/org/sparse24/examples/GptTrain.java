package org.sparse24.examples;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.AdamW;
import org.bytedeco.pytorch.AdamWOptions;
import org.bytedeco.pytorch.Backend;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Optimizer;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch_cuda;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.sparse24.DType;
import org.sparse24.Event;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfnOptions;
import org.sparse24.torch.TorchTensors;

/**
 * Trains a small byte-level GPT with LibTorch, its FFNs sparse24's 2:4 ({@code --ffn sparse}, optionally after
 * {@code --dense-warmup N} dense steps) or dense ({@code --ffn dense}); writes one CSV row per step (train loss,
 * held-out loss every {@code --eval-every} steps, per-layer sparsity and 2:4 drop rates every
 * {@code --stats-every} steps, step and FFN time from events). {@code --report OUTDIR RUN.csv...} turns the CSVs
 * of several runs into PNG plots and a markdown summary ({@link Report}). Options: {@link TrainConfig#USAGE}.
 */
public final class GptTrain {
    private GptTrain() {
    }

    /** What a run ended with. */
    public record Result(int steps, double firstLoss, double lastLoss, double heldOutLoss, double medianStepMs,
                         double medianFfnMs, double minSparsity, double meanSparsity, double seconds, Path csv) {
    }

    public static void main(String[] args) throws Exception {
        try {
            if (args.length > 0 && args[0].equals("--report")) {
                Report.main(Arrays.copyOfRange(args, 1, args.length));
                return;
            }
            if (args.length == 0 || args[0].equals("--help") || args[0].equals("-h")) {
                System.out.print(TrainConfig.USAGE);
                return;
            }
            train(TrainConfig.parse(args));
        } catch (IllegalArgumentException e) {
            System.err.println("GptTrain: " + e.getMessage());
            System.exit(2);
        }
    }

    /** One training run. */
    public static Result train(TrainConfig c) throws IOException {
        long t0 = System.nanoTime();
        Corpus corpus = Corpus.load(c.corpus(), c.seed());
        DType dtype = c.cuda() ? DType.BF16 : DType.FP32;
        ScalarType compute = TorchTensors.scalarType(dtype);
        TrainConfig.Dist dist = c.dist();
        boolean lead = dist.rank() == 0; // rank 0 evaluates, logs and writes the CSV named by --csv
        if (c.cuda()) {
            torch_cuda.set_device((byte) dist.rank()); // LibTorch's current device: rank r runs on GPU r
        }
        Backend group = dist.enabled() ? ProcessGroups.forDevice(c.cuda(), dist.store(), dist.rank(), dist.world())
                : null;
        try (Sparse24 ctx = c.cuda() ? Sparse24.cuda(dist.rank()) : Sparse24.cpu()) {
            TorchTensors.useCurrentStream(ctx); // the events below record on LibTorch's stream
            Device device = TorchTensors.device(ctx);
            SparseFfnOptions sparse = SparseFfnOptions.builder().seed(c.seed()).build();
            Path csvPath = lead ? c.csv() : Path.of(c.csv() + ".rank" + dist.rank());
            try (Gpt model = newModel(c, device, compute, ctx, dtype, sparse);
                 Event stepStart = Event.create(ctx); Event stepEnd = Event.create(ctx);
                 StepCsv csv = new StepCsv(csvPath, c.layers());
                 GradientBuckets ddp = group == null ? null : new GradientBuckets(group, model.parametersInOrder(),
                         dist.bucketBytes(), dist.overlap())) {
                if (ddp != null) {
                    ddp.broadcastParameters();
                    System.out.printf(Locale.ROOT, "GptTrain: rank %d of %d (%s), %d of %d sequences a step, %d "
                                    + "gradient buckets, %s%n", dist.rank(), dist.world(),
                            group.getBackendName().getString(), c.localBatch(), c.batch(), ddp.bucketCount(),
                            dist.overlap() ? "all-reduced during the backward" : "all-reduced after the backward");
                }
                System.out.printf(Locale.ROOT, "GptTrain: %s on %s, %s; %d layers, d=%d, f=%d, %d heads, %d x %d "
                                + "tokens a step (%.3g TFLOP), %d steps; %.1fM parameters; corpus %s (%d bytes, %d for "
                                + "training)%n", c.label(), c.device(), compute, c.layers(), c.dModel(), c.dFf(),
                        c.heads(), c.batch(), c.seq(), c.flopsPerStep() / 1e12, c.steps(),
                        model.parameterCount() / 1e6, c.corpus(), corpus.size(), corpus.trainSize());
                AdamW decayed = adamW(model.decayedParameters(), c.lr(), c.weightDecay());
                AdamW other = adamW(model.otherParameters(), c.lr(), 0);
                TensorVector params = model.parameters();
                List<Tensor> heldOut = lead ? heldOutBatches(c, corpus, device) : List.of();
                List<Double> stepMs = new ArrayList<>();
                List<Double> ffnMs = new ArrayList<>();
                double first = Double.NaN;
                double last = Double.NaN;
                double lastHeldOut = Double.NaN;
                List<Ffn.Stats> lastStats = null;
                for (int step = 0; step < c.steps(); step++) {
                    if (step % 25 == 24) {
                        // Java wrappers that escape the step's scope (made on autograd's device threads) are freed
                        // by the collector; device memory does not press the Java heap, so ask for it (on the H200
                        // device memory grew ~125 MB a step without this and ran out at step 1100)
                        System.gc();
                    }
                    try (PointerScope scope = new PointerScope()) {
                        boolean measured = step % c.statsEvery() == 0 || step == c.steps() - 1;
                        boolean sparseStep = model.ffns().get(0).sparseNext();
                        model.ffns().forEach(f -> f.measureNext(measured));
                        double lr = c.lrAt(step);
                        setLr(decayed, lr);
                        setLr(other, lr);
                        Tensor batch = toDevice(localRows(corpus.nextTrainBatch(c.batch(), c.seq()), c), c.localBatch(),
                                c, device);
                        long w0 = System.nanoTime();
                        stepStart.record();
                        Tensor loss = model.loss(batch);
                        loss.backward();
                        if (ddp != null) {
                            ddp.finish();
                            loss = meanOverRanks(group, loss);
                        }
                        double gradNorm = torch.clip_grad_norm_(params, c.clip());
                        decayed.step();
                        other.step();
                        decayed.zero_grad(true);
                        other.zero_grad(true);
                        stepEnd.record();
                        double train = loss.item_double(); // waits for the step
                        double wallMs = (System.nanoTime() - w0) / 1e6;
                        double ms = Event.elapsedMillis(stepStart, stepEnd);
                        float[] ffn = model.ffnMillis();
                        if (!Double.isFinite(train)) {
                            throw new IllegalStateException("the training loss is " + train + " at step " + step);
                        }
                        List<Ffn.Stats> stats = measured ? model.ffns().stream().map(Ffn::stats).toList() : null;
                        if (!measured) { // measured steps synchronize inside the backward: not timed
                            stepMs.add(ms);
                            ffnMs.add((double) ffn[0] + ffn[1]);
                        } else {
                            lastStats = stats;
                        }
                        double held = Double.NaN;
                        if (lead && (step % c.evalEvery() == 0 || step == c.steps() - 1)) {
                            held = evaluate(model, heldOut);
                            lastHeldOut = held;
                        }
                        if (step == 0) {
                            first = train;
                        }
                        last = train;
                        csv.row(step, lr, sparseStep, train, held, gradNorm, ms, wallMs, ffn, stats);
                        if (lead && (step % c.logEvery() == 0 || step == c.steps() - 1)) {
                            System.out.printf(Locale.ROOT, "step %5d/%d  loss %.4f%s  lr %.2e  %.1f ms/step (FFN %.1f"
                                            + " ms)%s%s%n", step, c.steps(), train,
                                    Double.isNaN(held) ? "" : String.format(Locale.ROOT, "  held-out %.4f", held),
                                    lr, ms, ffn[0] + ffn[1], sparseStep ? "  2:4" : "",
                                    stats == null ? "" : "  " + sparsityRange(stats));
                        }
                    }
                }
                double seconds = (System.nanoTime() - t0) / 1e9;
                double[] sp = sparsity(lastStats);
                Result r = new Result(c.steps(), first, last, lastHeldOut, median(stepMs), median(ffnMs), sp[0],
                        sp[1], seconds, csvPath);
                System.out.printf(Locale.ROOT, "GptTrain done%s: %s, %d steps: loss %.4f -> %.4f, held-out %s; "
                                + "median %.2f ms/step (%.3g TFLOP/s), FFN %.2f ms; activation sparsity min %.3f mean "
                                + "%.3f; %.0f s; %s%n",
                        dist.enabled() ? " (rank " + dist.rank() + " of " + dist.world() + ")" : "",
                        c.label(), r.steps(), r.firstLoss(), r.lastLoss(),
                        lead ? String.format(Locale.ROOT, "%.4f", r.heldOutLoss()) : "on rank 0", r.medianStepMs(), c.flopsPerStep() / r.medianStepMs() / 1e9,
                        r.medianFfnMs(), r.minSparsity(), r.meanSparsity(), r.seconds(), r.csv());
                return r;
            }
        } finally {
            ProcessGroups.shutdown(group);
        }
    }

    /** Rows [rank * b, (rank + 1) * b) of a global batch of [batch, seq + 1] tokens, b = batch / world. */
    static long[] localRows(long[] tokens, TrainConfig c) {
        int window = c.seq() + 1;
        int from = c.dist().rank() * c.localBatch() * window;
        return Arrays.copyOfRange(tokens, from, from + c.localBatch() * window);
    }

    /** The mean of a scalar over the ranks (for the log: the loss of the global batch). */
    private static Tensor meanOverRanks(Backend group, Tensor scalar) {
        try (NoGradGuard noGrad = new NoGradGuard()) {
            Tensor t = scalar.detach().to(ScalarType.Float).clone();
            group.allreduce(new TensorVector(t))._wait();
            return t.div_(new Scalar((double) group.getSize()));
        }
    }

    /**
     * The model, its weights drawn from LibTorch's global generator seeded with the run's seed; atomically, so that
     * ranks run as threads of one JVM (the CPU test) draw the same weights.
     */
    private static synchronized Gpt newModel(TrainConfig c, Device device, ScalarType compute, Sparse24 ctx,
                                             DType dtype, SparseFfnOptions sparse) {
        torch.manual_seed(c.seed());
        return new Gpt(c, device, compute, layer -> ffn(c, ctx, dtype, sparse), ctx);
    }

    /** Layer i's FFN: LibTorch's dense ops, or sparse24 (2:4 with or without a dense warm-up, or dense). */
    private static Ffn ffn(TrainConfig c, Sparse24 ctx, DType dtype, SparseFfnOptions sparse) {
        if (c.sparse()) {
            return new Sparse24Ffn(ctx, c.dModel(), c.dFf(), dtype, sparse, c.denseWarmup());
        }
        if (c.denseFfn().equals("sparse24")) {
            return new Sparse24Ffn(ctx, c.dModel(), c.dFf(), dtype, SparseFfnOptions.dense(), 0);
        }
        return new TorchFfn();
    }

    /** AdamW with betas (0.9, 0.95), as GPT training usually has (LibTorch's default beta2 is 0.999). */
    private static AdamW adamW(TensorVector params, double lr, double weightDecay) {
        AdamWOptions options = new AdamWOptions(lr);
        options.weight_decay().put(weightDecay);
        // betas is a std::tuple, whose memory order the C++ library decides: find beta2 by its default
        DoublePointer betas = options.betas();
        int beta2 = betas.get(0) == 0.999 ? 0 : betas.get(1) == 0.999 ? 1 : -1;
        if (beta2 < 0 || betas.get(1 - beta2) != 0.9) {
            throw new IllegalStateException("AdamWOptions.betas() holds " + betas.get(0) + ", " + betas.get(1)
                    + ", not LibTorch's defaults 0.9 and 0.999");
        }
        betas.put(beta2, 0.95);
        return new AdamW(params, options);
    }

    private static void setLr(Optimizer optimizer, double lr) {
        optimizer.param_groups().get(0).options().set_lr(lr);
    }

    private static Tensor toDevice(long[] tokens, int rows, TrainConfig c, Device device) {
        return Tensor.create(tokens, rows, c.seq() + 1L).to(device, ScalarType.Long);
    }

    /** The fixed held-out batches, on the device (made once: every evaluation sees the same tokens). */
    private static List<Tensor> heldOutBatches(TrainConfig c, Corpus corpus, Device device) {
        List<Tensor> batches = new ArrayList<>();
        for (int i = 0; i < c.evalBatches(); i++) {
            batches.add(toDevice(corpus.heldOutBatch(i, c.evalBatches(), c.batch(), c.seq()), c.batch(), c,
                    device));
        }
        return batches;
    }

    /** Mean loss over the held-out batches (inference: no graph; the sparse FFN runs its inference forward). */
    private static double evaluate(Gpt model, List<Tensor> batches) {
        try (NoGradGuard noGrad = new NoGradGuard()) {
            double sum = 0;
            for (Tensor b : batches) {
                sum += model.loss(b).item_double();
            }
            return sum / batches.size();
        }
    }

    private static String sparsityRange(List<Ffn.Stats> stats) {
        double[] s = sparsity(stats);
        return String.format(Locale.ROOT, "sparsity %.3f..%.3f", s[0], s[2]);
    }

    /** {min, mean, max} activation sparsity over the layers (NaN when unknown). */
    private static double[] sparsity(List<Ffn.Stats> stats) {
        if (stats == null || stats.isEmpty()) {
            return new double[] {Double.NaN, Double.NaN, Double.NaN};
        }
        double min = Double.POSITIVE_INFINITY;
        double max = Double.NEGATIVE_INFINITY;
        double sum = 0;
        for (Ffn.Stats s : stats) {
            min = Math.min(min, s.activationSparsity());
            max = Math.max(max, s.activationSparsity());
            sum += s.activationSparsity();
        }
        return new double[] {min, sum / stats.size(), max};
    }

    static double median(List<Double> values) {
        if (values.isEmpty()) {
            return Double.NaN;
        }
        double[] v = values.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }
}
