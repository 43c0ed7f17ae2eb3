package org.sparse24.examples;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The settings of one {@link GptTrain} run, from {@code --name value} arguments. The defaults are the H200 run
 * (d=1024, f=4096, 8 layers, 16 x 1024 tokens a step, 1500 steps, bf16); {@code --device cpu} switches the
 * model defaults to a tiny FP32 one.
 *
 * @param device      "cuda" (bf16 compute, fp32 master weights) or "cpu" (fp32)
 * @param ffn         "dense" or "sparse" (sparse24's 2:4 forward and split backward)
 * @param denseFfn    the dense FFN: "torch" (LibTorch's own ops, relu(x w1^T)^2 w2^T) or "sparse24"
 *                    ({@code SparseFfnOptions.dense()})
 * @param denseWarmup sparse only: this many first training steps run the FFN densely (sparse24, exact)
 * @param corpus      the byte file (optionally .gz); the last 1% is held out
 * @param csv         the per-step CSV written
 * @param dist        data parallel: this process's rank, the world size, the rendezvous file, the buckets
 */
public record TrainConfig(String device, String ffn, String denseFfn, int denseWarmup, int dModel, int dFf,
                          int layers, int heads, int batch, int seq, int steps, double lr, double minLrRatio,
                          int lrWarmup, double weightDecay, double clip, int evalEvery, int evalBatches,
                          int statsEvery, int logEvery, long seed, Path corpus, Path csv, Dist dist) {

    /**
     * Data-parallel settings: {@code world} processes, one per GPU (rank r on CUDA device r), each running
     * {@code batch / world} of every step's sequences; gradients averaged through a c10d process group (NCCL on
     * CUDA, Gloo on the CPU) that meets through a {@code FileStore} at {@code store}.
     *
     * @param bucketBytes the gradient bucket size ({@link GradientBuckets})
     * @param overlap     all-reduce buckets from inside the backward
     */
    public record Dist(int rank, int world, Path store, long bucketBytes, boolean overlap) {

        boolean enabled() {
            return world > 1;
        }
    }

    static final String USAGE = """
            GptTrain: a small GPT (byte-level) trained with LibTorch; its FFN sparse24's 2:4 or dense.
              --device cuda|cpu        (cuda)  cuda: bf16 compute, fp32 master weights; cpu: fp32, tiny defaults
              --ffn dense|sparse       (dense)
              --dense-ffn torch|sparse24  (torch) the dense FFN: LibTorch's ops, or sparse24 without 2:4
              --dense-warmup N         (0)     sparse: the first N steps run the FFN densely
              --d-model 1024 --d-ff 4096 --layers 8 --heads 16 --batch 16 --seq 1024   (cpu: 32 128 2 2 4 32)
              --steps 1500 --lr 8e-4 --min-lr-ratio 0.1 --lr-warmup 100 --weight-decay 0.1 --clip 1.0
              --eval-every 100 --eval-batches 8 --stats-every 10 --log-every 100 --seed 1
              --corpus FILE[.gz]       byte corpus (required); the last 1% is held out
              --csv FILE               (gpt-<ffn>.csv) one row per step (rank 0's; rank r > 0 adds .rank<r>)
            Data parallel (one process per GPU; see train-ddp.sh; --batch is the global batch):
              --world-size N           ($WORLD_SIZE or 1)
              --rank R                 ($RANK or 0) uses CUDA device R
              --store FILE             ($S24_STORE) the rendezvous file (FileStore), on local disk, absent at start
              --bucket-mb 25           gradient bucket size
              --overlap true|false     (true) all-reduce buckets during the backward
            GptTrain --report OUTDIR RUN.csv...   PNG plots and a markdown summary of runs (the first is the baseline)
            """;

    /** Parses {@code --name value} pairs; unknown names and bad values throw {@link IllegalArgumentException}. */
    static TrainConfig parse(String[] args) {
        Map<String, String> a = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i += 2) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new IllegalArgumentException("expected --name value pairs, got '" + args[i] + "'\n" + USAGE);
            }
            a.put(args[i].substring(2), args[i + 1]);
        }
        String device = take(a, "device", "cuda");
        boolean cpu = device.equals("cpu");
        if (!cpu && !device.equals("cuda")) {
            throw new IllegalArgumentException("--device: expected cuda or cpu, got " + device);
        }
        String ffn = take(a, "ffn", "dense");
        if (!ffn.equals("dense") && !ffn.equals("sparse")) {
            throw new IllegalArgumentException("--ffn: expected dense or sparse, got " + ffn);
        }
        String denseFfn = take(a, "dense-ffn", "torch");
        if (!denseFfn.equals("torch") && !denseFfn.equals("sparse24")) {
            throw new IllegalArgumentException("--dense-ffn: expected torch or sparse24, got " + denseFfn);
        }
        int denseWarmup = nonNegative(a, "dense-warmup", 0);
        if (denseWarmup > 0 && !ffn.equals("sparse")) {
            throw new IllegalArgumentException("--dense-warmup applies to --ffn sparse only");
        }
        String corpus = take(a, "corpus", null);
        if (corpus == null) {
            throw new IllegalArgumentException("--corpus FILE is required\n" + USAGE);
        }
        String csv = take(a, "csv", "gpt-" + ffn + ".csv");
        TrainConfig c = new TrainConfig(device, ffn, denseFfn, denseWarmup,
                positive(a, "d-model", cpu ? 32 : 1024), positive(a, "d-ff", cpu ? 128 : 4096),
                positive(a, "layers", cpu ? 2 : 8), positive(a, "heads", cpu ? 2 : 16),
                positive(a, "batch", cpu ? 4 : 16), positive(a, "seq", cpu ? 32 : 1024),
                positive(a, "steps", 1500), positiveReal(a, "lr", 8e-4), positiveReal(a, "min-lr-ratio", 0.1),
                nonNegative(a, "lr-warmup", 100), nonNegativeReal(a, "weight-decay", 0.1),
                positiveReal(a, "clip", 1.0), positive(a, "eval-every", 100), positive(a, "eval-batches", 8),
                positive(a, "stats-every", 10), positive(a, "log-every", 100), Long.parseLong(take(a, "seed", "1")),
                Path.of(corpus), Path.of(csv), dist(a));
        if (!a.isEmpty()) {
            throw new IllegalArgumentException("unknown option(s) " + a.keySet() + "\n" + USAGE);
        }
        if (c.dModel % c.heads != 0) {
            throw new IllegalArgumentException("--d-model (" + c.dModel + ") must be a multiple of --heads ("
                    + c.heads + ")");
        }
        if (c.batch % c.dist.world != 0) {
            throw new IllegalArgumentException("--batch (" + c.batch + ") must be a multiple of --world-size ("
                    + c.dist.world + "): every rank runs batch / world-size sequences");
        }
        return c;
    }

    private static Dist dist(Map<String, String> a) {
        int world = positive(a, "world-size", envInt("WORLD_SIZE", 1));
        int rank = nonNegative(a, "rank", envInt("RANK", 0));
        if (rank >= world) {
            throw new IllegalArgumentException("--rank must be in [0, " + world + "), got " + rank);
        }
        String store = take(a, "store", System.getenv("S24_STORE"));
        if (world > 1 && store == null) {
            throw new IllegalArgumentException("--store FILE (or $S24_STORE) is required with --world-size "
                    + world);
        }
        long bucketBytes = Math.round(positiveReal(a, "bucket-mb", 25) * (1 << 20));
        String overlap = take(a, "overlap", "true");
        if (!overlap.equals("true") && !overlap.equals("false")) {
            throw new IllegalArgumentException("--overlap: expected true or false, got " + overlap);
        }
        return new Dist(rank, world, store == null ? null : Path.of(store), bucketBytes, overlap.equals("true"));
    }

    private static int envInt(String name, int fallback) {
        String v = System.getenv(name);
        try {
            return v == null || v.isEmpty() ? fallback : Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("$" + name + ": expected an integer, got '" + v + "'");
        }
    }

    /** The sequences of each step this rank runs. */
    int localBatch() {
        return batch / dist.world;
    }

    boolean cuda() {
        return device.equals("cuda");
    }

    boolean sparse() {
        return ffn.equals("sparse");
    }

    /** Tokens a step. */
    long tokens() {
        return (long) batch * seq;
    }

    /**
     * Model FLOPs of one training step (forward + backward = 3 x forward): the matrix products, 6 x tokens x
     * (weights of the blocks + the head), and causal attention, 6 x layers x tokens x seq x d (half of S x S).
     */
    double flopsPerStep() {
        double weights = (double) layers * (4.0 * dModel * dModel + 2.0 * dModel * dFf) + (double) Corpus.VOCAB * dModel;
        return 6.0 * tokens() * weights + 6.0 * layers * tokens() * seq * dModel;
    }

    /** A short name of the run, e.g. "sparse, dense warm-up 300". */
    String label() {
        return sparse() ? "sparse" + (denseWarmup > 0 ? ", dense warm-up " + denseWarmup : "")
                : "dense (" + denseFfn + ")";
    }

    /** Linear warm-up to lr over lrWarmup steps, then cosine down to lr * minLrRatio at the last step. */
    double lrAt(int step) {
        if (step < lrWarmup) {
            return lr * (step + 1) / lrWarmup;
        }
        double progress = steps - lrWarmup <= 1 ? 1 : (double) (step - lrWarmup) / (steps - lrWarmup - 1);
        double min = lr * minLrRatio;
        return min + (lr - min) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)));
    }

    private static String take(Map<String, String> a, String name, String fallback) {
        String v = a.remove(name);
        return v == null ? fallback : v;
    }

    private static int positive(Map<String, String> a, String name, int fallback) {
        int v = integer(a, name, fallback);
        if (v <= 0) {
            throw new IllegalArgumentException("--" + name + ": expected a positive integer, got " + v);
        }
        return v;
    }

    private static int nonNegative(Map<String, String> a, String name, int fallback) {
        int v = integer(a, name, fallback);
        if (v < 0) {
            throw new IllegalArgumentException("--" + name + ": expected an integer >= 0, got " + v);
        }
        return v;
    }

    private static int integer(Map<String, String> a, String name, int fallback) {
        String v = take(a, name, null);
        try {
            return v == null ? fallback : Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + ": expected an integer, got '" + v + "'");
        }
    }

    private static double positiveReal(Map<String, String> a, String name, double fallback) {
        double v = real(a, name, fallback);
        if (!(v > 0)) {
            throw new IllegalArgumentException("--" + name + ": expected a number > 0, got " + v);
        }
        return v;
    }

    private static double nonNegativeReal(Map<String, String> a, String name, double fallback) {
        double v = real(a, name, fallback);
        if (!(v >= 0)) {
            throw new IllegalArgumentException("--" + name + ": expected a number >= 0, got " + v);
        }
        return v;
    }

    private static double real(Map<String, String> a, String name, double fallback) {
        String v = take(a, name, null);
        try {
            return v == null ? fallback : Double.parseDouble(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + ": expected a number, got '" + v + "'");
        }
    }
}
