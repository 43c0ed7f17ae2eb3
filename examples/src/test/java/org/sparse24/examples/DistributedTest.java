package org.sparse24.examples;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.IntFunction;
import java.util.zip.GZIPOutputStream;

import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Backend;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.FileStore;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfnOptions;

/**
 * Data and tensor parallelism on the CPU: two ranks as two threads of this JVM, LibTorch's Gloo process group meeting
 * through a FileStore (the same c10d calls as NCCL on GPUs), sparse24's CPU backend, FP32.
 */
class DistributedTest {
    private static final Device CPU = new Device(torch.DeviceType.CPU);
    private static final SparseFfnOptions EXACT_BACKWARD = SparseFfnOptions.builder().sparseBackward(false).seed(3)
            .build();
    private static final SparseFfnOptions SPLIT = SparseFfnOptions.builder().seed(3).build();

    @TempDir
    static Path dir;
    private static int stores;

    @BeforeAll
    static void threads() {
        torch.set_num_threads(1);
    }

    /** Runs {@code body(rank, group)} on {@code world} threads, a Gloo group of {@code world} ranks among them. */
    private static <T> List<T> onRanks(int world, RankBody<T> body) throws Exception {
        Path store = dir.resolve("store-" + stores++);
        ExecutorService pool = Executors.newFixedThreadPool(world);
        try {
            List<Future<T>> futures = new ArrayList<>();
            for (int r = 0; r < world; r++) {
                int rank = r;
                futures.add(pool.submit(() -> body.run(rank, ProcessGroups.gloo(store, rank, world))));
            }
            List<T> results = new ArrayList<>();
            for (Future<T> f : futures) {
                results.add(f.get(120, TimeUnit.SECONDS));
            }
            return results;
        } finally {
            pool.shutdownNow();
        }
    }

    private interface RankBody<T> {
        T run(int rank, Backend group) throws Exception;
    }

    @Test
    void bucketsFillFromTheLastParameterAndCloseAtTheirSize() {
        long[] numels = {10, 1000, 5, 5, 300};
        List<int[]> buckets = GradientBuckets.assign(numels, 1200);
        assertEquals(3, buckets.size());
        assertArrayEquals(new int[] {4}, buckets.get(0));       // 1200 bytes: closed
        assertArrayEquals(new int[] {3, 2, 1}, buckets.get(1)); // 40 bytes, then 4040: closed
        assertArrayEquals(new int[] {0}, buckets.get(2));       // what is left
        assertEquals(1, GradientBuckets.assign(numels, Long.MAX_VALUE).size());
        assertEquals(numels.length, GradientBuckets.assign(numels, 1).size());
    }

    @Test
    void dataParallelOptionsAreChecked() {
        TrainConfig c = TrainConfig.parse(new String[] {"--device", "cpu", "--corpus", "c", "--batch", "6",
                "--world-size", "3", "--rank", "2", "--store", "s", "--bucket-mb", "0.5", "--overlap", "false"});
        assertEquals(new TrainConfig.Dist(2, 3, Path.of("s"), 512 << 10, false), c.dist());
        assertEquals(2, c.localBatch());
        assertThrowsWith("--batch (5) must be a multiple of --world-size (2)", "--batch", "5", "--world-size", "2",
                "--store", "s");
        assertThrowsWith("--store FILE (or $S24_STORE) is required", "--world-size", "2");
        assertThrowsWith("--rank must be in [0, 2), got 2", "--world-size", "2", "--rank", "2", "--store", "s");
        assertThrowsWith("--overlap: expected true or false", "--overlap", "yes");
    }

    private static void assertThrowsWith(String message, String... args) {
        List<String> all = new ArrayList<>(List.of("--device", "cpu", "--corpus", "c"));
        all.addAll(List.of(args));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TrainConfig.parse(all.toArray(new String[0])));
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }

    /**
     * The rendezvous store belongs to the process group, not to its Java wrapper: the preset allocates a FileStore
     * with plain new while a group holds it as an intrusive_ptr, so neither the PointerScope it was made in nor the
     * collector may delete it (on two H200s the collector did: NCCL's heartbeat monitor crashed).
     */
    @Test
    void aProcessGroupOwnsItsStore() {
        FileStore store;
        Backend group;
        try (PointerScope scope = new PointerScope()) {
            store = ProcessGroups.fileStore(dir.resolve("owned-store"), 1);
            group = ProcessGroups.gloo(store, 0, 1);
            group.retainReference();
        }
        try {
            System.gc();
            assertEquals(1, store.add("after-scope", 1), "the store was deleted with the scope it was made in");
            group.barrier().synchronize();
        } finally {
            group.close();
        }
    }

    @Test
    void multicastMustBeOffInTheEnvironment() {
        ProcessGroups.requireMulticastOff(ProcessGroups.MULTICAST_OFF);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> ProcessGroups.requireMulticastOff(
                Map.of("NCCL_NVLS_ENABLE", "1", "NVSHMEM_DISABLE_NVLS", "1")));
        assertTrue(e.getMessage().contains("NCCL_NVLS_ENABLE=0 (is '1')"), e.getMessage());
        assertTrue(e.getMessage().contains("TORCH_SYMM_MEM_DISABLE_MULTICAST=1 (is unset)"), e.getMessage());
    }

    @Test
    void dataParallelGradientsEqualOneProcessOnTheWholeBatchOverlappedOrNot() throws Exception {
        for (boolean overlap : new boolean[] {true, false}) {
            TrainConfig c = TrainConfig.parse(new String[] {"--device", "cpu", "--corpus", "unused", "--batch", "4",
                    "--seq", "16", "--world-size", "2", "--store", "unused"});
            long[] tokens = new long[c.batch() * (c.seq() + 1)];
            Random r = new Random(5);
            for (int i = 0; i < tokens.length; i++) {
                tokens[i] = r.nextInt(Corpus.VOCAB);
            }
            Tensor whole = Tensor.create(tokens, c.batch(), c.seq() + 1L);
            List<float[]> expected = new ArrayList<>();
            List<Sparse24> contexts = new ArrayList<>();
            List<Gpt> models = new ArrayList<>();
            try {
                for (int m = 0; m < 3; m++) { // the one-process model, then one per rank: the same weights
                    Sparse24 ctx = Sparse24.cpu();
                    contexts.add(ctx);
                    torch.manual_seed(11);
                    models.add(new Gpt(c, CPU, ScalarType.Float, l -> new Sparse24Ffn(ctx, c.dModel(), c.dFf(),
                            DType.FP32, EXACT_BACKWARD, 0), ctx));
                }
                models.get(0).loss(whole).backward();
                for (Tensor p : models.get(0).parametersInOrder()) {
                    expected.add(MultiGpuCheck.floats(p.grad()));
                }
                List<List<float[]>> ranks = onRanks(2, (rank, group) -> {
                    Gpt model = models.get(1 + rank);
                    try (GradientBuckets buckets = new GradientBuckets(group, model.parametersInOrder(), 8 << 10,
                            overlap)) {
                        assertTrue(buckets.bucketCount() > 3, "buckets: " + buckets.bucketCount());
                        TrainConfig rc = TrainConfig.parse(new String[] {"--device", "cpu", "--corpus", "unused",
                                "--batch", "4", "--seq", "16", "--world-size", "2", "--rank", "" + rank, "--store",
                                "unused"});
                        long[] mine = GptTrain.localRows(tokens, rc);
                        model.loss(Tensor.create(mine, rc.localBatch(), c.seq() + 1L)).backward();
                        buckets.finish();
                        assertEquals(overlap ? buckets.bucketCount() : 0, buckets.overlappedBuckets(),
                                "buckets all-reduced during the backward");
                        List<float[]> grads = new ArrayList<>();
                        for (Tensor p : model.parametersInOrder()) {
                            grads.add(MultiGpuCheck.floats(p.grad()));
                        }
                        return grads;
                    }
                });
                for (int rank = 0; rank < 2; rank++) {
                    for (int i = 0; i < expected.size(); i++) {
                        assertNull(MultiGpuCheck.compare("overlap " + overlap + ", rank " + rank + ", parameter " + i,
                                expected.get(i), ranks.get(rank).get(i), 1e-5));
                    }
                }
            } finally {
                models.forEach(Gpt::close);
                contexts.forEach(Sparse24::close);
            }
        }
    }

    @Test
    void dataParallelTrainingFollowsTheOneProcessLossCurve() throws Exception {
        Path corpus = dir.resolve("readme.bin.gz");
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(corpus))) {
            out.write(Files.readAllBytes(Path.of("..", "README.md")));
        }
        IntFunction<String[]> args = world -> new String[] {"--device", "cpu", "--steps", "6", "--lr", "3e-3",
                "--lr-warmup", "2", "--eval-every", "5", "--eval-batches", "1", "--log-every", "5", "--corpus",
                corpus.toString(), "--csv", dir.resolve("ddp-" + world + ".csv").toString(), "--world-size",
                "" + world, "--store", dir.resolve("train-store-" + stores++).toString()};
        GptTrain.Result one = GptTrain.train(TrainConfig.parse(args.apply(1)));
        String[] two = args.apply(2);
        List<GptTrain.Result> ranks = new ArrayList<>();
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            List<Future<GptTrain.Result>> futures = new ArrayList<>();
            for (int r = 0; r < 2; r++) {
                String[] a = java.util.Arrays.copyOf(two, two.length + 2);
                a[two.length] = "--rank";
                a[two.length + 1] = "" + r;
                futures.add(pool.submit(() -> GptTrain.train(TrainConfig.parse(a))));
            }
            for (Future<GptTrain.Result> f : futures) {
                ranks.add(f.get(120, TimeUnit.SECONDS));
            }
        } finally {
            pool.shutdownNow();
        }
        double[] expected = Report.read(one.csv()).col("train_loss");
        for (GptTrain.Result r : ranks) {
            double[] got = Report.read(r.csv()).col("train_loss");
            assertEquals(expected.length, got.length);
            for (int s = 0; s < expected.length; s++) {
                assertEquals(expected[s], got[s], 1e-4 * expected[s], "the global batch's loss at step " + s);
            }
        }
        assertEquals(Path.of(one.csv().toString().replace("ddp-1", "ddp-2")), ranks.get(0).csv());
        assertEquals(Path.of(ranks.get(0).csv() + ".rank1"), ranks.get(1).csv(), "rank 1 writes its own CSV");
        assertTrue(Double.isNaN(ranks.get(1).heldOutLoss()), "only rank 0 evaluates");
        assertEquals(one.heldOutLoss(), ranks.get(0).heldOutLoss(), 1e-4 * one.heldOutLoss());
    }

    @Test
    void tensorParallelEqualsTheUnshardedFfnWithTheSplitOff() throws Exception {
        float[][] one = unsharded(EXACT_BACKWARD);
        List<float[][]> ranks = tensorParallel(EXACT_BACKWARD);
        for (int rank = 0; rank < 2; rank++) {
            float[][] got = ranks.get(rank);
            float[][] expected = shardOf(one, rank);
            String[] names = {"Z", "dX", "dW1 rows", "dW2 columns"};
            for (int i = 0; i < names.length; i++) {
                assertNull(MultiGpuCheck.compare("rank " + rank + ": " + names[i], expected[i], got[i], 1e-5));
            }
        }
    }

    @Test
    void tensorParallelWithTheSplitKeepsTheForwardAndDxAndApproximatesTheWeightGradientsAsWell() throws Exception {
        float[][] exact = unsharded(EXACT_BACKWARD);
        float[][] one = unsharded(SPLIT);
        List<float[][]> ranks = tensorParallel(SPLIT);
        for (int rank = 0; rank < 2; rank++) {
            float[][] got = ranks.get(rank);
            float[][] exactShard = shardOf(exact, rank);
            float[][] oneShard = shardOf(one, rank);
            assertNull(MultiGpuCheck.compare("rank " + rank + ": Z", exactShard[0], got[0], 1e-5));
            assertNull(MultiGpuCheck.compare("rank " + rank + ": dX (the split changes weight gradients only)",
                    exactShard[1], got[1], 1e-5));
            for (int i = 2; i < 4; i++) {
                double oneError = relativeError(exactShard[i], oneShard[i]);
                double tpError = relativeError(exactShard[i], got[i]);
                assertTrue(oneError > 1e-3, "the split approximates (one device): " + oneError);
                // each shard picks ceil(5% of f/2) rounded up to 8 dense features: at least as many as one device
                assertTrue(tpError <= oneError * 1.05, "rank " + rank + ", gradient " + i + ": tensor parallel "
                        + tpError + " vs one device " + oneError + " (relative max error to the exact gradient)");
            }
        }
    }

    private static final int T = 64;
    private static final int D = 32;
    private static final int F = 128;

    /** {x, w1, w2, dz}, random. */
    private static float[][] ffnInputs() {
        Random r = new Random(9);
        return new float[][] {MultiGpuCheck.normal(r, T * D, 1), MultiGpuCheck.normal(r, F * D, 0.2),
                MultiGpuCheck.normal(r, D * F, 0.1), MultiGpuCheck.normal(r, T * D, 1)};
    }

    /** {Z, dX, dW1, dW2} of the whole FFN on one context. */
    private static float[][] unsharded(SparseFfnOptions options) {
        float[][] in = ffnInputs();
        try (Sparse24 ctx = Sparse24.cpu(); Ffn ffn = new Sparse24Ffn(ctx, D, F, DType.FP32, options, 0)) {
            return floats(TensorParallelBench.gradients(ffn, Tensor.create(in[0], T, D), Tensor.create(in[1], F, D),
                    Tensor.create(in[2], D, F), Tensor.create(in[3], T, D)));
        }
    }

    /** Each rank's {Z, dX, dW1 shard, dW2 shard} of the tensor-parallel FFN over 2 ranks. */
    private static List<float[][]> tensorParallel(SparseFfnOptions options) throws Exception {
        float[][] in = ffnInputs();
        return onRanks(2, (rank, group) -> {
            try (Sparse24 ctx = Sparse24.cpu();
                 Ffn ffn = new TensorParallelFfn(group, new Sparse24Ffn(ctx, D, F / 2, DType.FP32, options, 0))) {
                Tensor w1 = TensorParallelFfn.shardW1(Tensor.create(in[1], F, D), rank, 2).contiguous();
                Tensor w2 = TensorParallelFfn.shardW2(Tensor.create(in[2], D, F), rank, 2);
                return floats(TensorParallelBench.gradients(ffn, Tensor.create(in[0], T, D), w1, w2,
                        Tensor.create(in[3], T, D)));
            }
        });
    }

    /** {Z, dX, rows of dW1, columns of dW2} of rank's shard of a whole-FFN result. */
    private static float[][] shardOf(float[][] whole, int rank) {
        return new float[][] {whole[0], whole[1],
                MultiGpuCheck.floats(TensorParallelFfn.shardW1(Tensor.create(whole[2], F, D), rank, 2)),
                MultiGpuCheck.floats(TensorParallelFfn.shardW2(Tensor.create(whole[3], D, F), rank, 2))};
    }

    private static float[][] floats(Tensor[] tensors) {
        float[][] out = new float[tensors.length][];
        for (int i = 0; i < tensors.length; i++) {
            out[i] = MultiGpuCheck.floats(tensors[i]);
        }
        return out;
    }

    /** max |a - b| / max |a|. */
    private static double relativeError(float[] a, float[] b) {
        double scale = 0;
        double err = 0;
        for (int i = 0; i < a.length; i++) {
            scale = Math.max(scale, Math.abs(a[i]));
            err = Math.max(err, Math.abs(a[i] - b[i]));
        }
        return err / scale;
    }
}
