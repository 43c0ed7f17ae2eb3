package org.sparse24.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPOutputStream;

import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The GPT example end to end on the CPU (CPU LibTorch, sparse24's CPU backend, FP32), tiny: the repository's
 * README as the corpus (gzip-compressed, as the real corpus is), 30 steps with the dense FFN and 30 with the sparse
 * one after a dense warm-up, then the report over their CSVs.
 */
class GptTrainTest {
    private static final int STEPS = 30;
    private static final int WARMUP = 10;

    @TempDir
    static Path dir;
    private static Path corpus;
    private static GptTrain.Result dense;
    private static GptTrain.Result sparse;

    @BeforeAll
    static void corpus() throws IOException {
        torch.set_num_threads(1); // tiny tensors: more threads only contend
        byte[] text = Files.readAllBytes(Path.of("..", "README.md"));
        assertTrue(text.length > 10_000, "README.md: " + text.length + " bytes");
        corpus = dir.resolve("readme.bin.gz");
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(corpus))) {
            out.write(text);
        }
        dense = train("dense.csv", "--ffn", "dense");
        sparse = train("sparse-warmup.csv", "--ffn", "sparse", "--dense-warmup", "" + WARMUP);
    }

    private static GptTrain.Result train(String csv, String... extra) throws IOException {
        List<String> args = new ArrayList<>(List.of("--device", "cpu", "--steps", "" + STEPS, "--lr", "3e-3",
                "--lr-warmup", "5", "--eval-every", "10", "--eval-batches", "2", "--stats-every", "5",
                "--log-every", "10", "--corpus", corpus.toString(), "--csv", dir.resolve(csv).toString()));
        args.addAll(List.of(extra));
        return GptTrain.train(TrainConfig.parse(args.toArray(new String[0])));
    }

    @Test
    void sparseWithDenseWarmupLearnsAndReportsSparsity() throws Exception {
        GptTrain.Result r = sparse;
        Report.Run run = Report.read(r.csv());
        assertEquals(STEPS, run.rows());
        assertLearns(run);
        double[] sparse = run.col("ffn_sparse");
        double[] measured = run.col("measured");
        for (int i = 0; i < STEPS; i++) {
            assertEquals(i < WARMUP ? 0 : 1, sparse[i], "ffn_sparse at step " + i);
            boolean statsStep = i % 5 == 0 || i == STEPS - 1;
            assertEquals(statsStep ? 1 : 0, measured[i], "measured at step " + i);
            for (int l = 0; l < run.layers(); l++) {
                double act = run.layerCol("act_sparsity", l)[i];
                double fwd = run.layerCol("fwd_drop", l)[i];
                double dw1 = run.layerCol("dw1_drop", l)[i];
                if (!statsStep) {
                    assertTrue(Double.isNaN(act), "no statistics on unmeasured step " + i);
                    continue;
                }
                assertTrue(act > 0.2 && act < 1, "activation sparsity of layer " + l + " at step " + i + ": " + act);
                if (i < WARMUP) {
                    assertEquals(0, fwd, "dense warm-up drops nothing (step " + i + ")");
                    assertEquals(0, dw1, "dense warm-up drops nothing (step " + i + ")");
                } else {
                    assertTrue(fwd > 0 && fwd < 0.5, "forward 2:4 drop of layer " + l + " at step " + i + ": " + fwd);
                    assertTrue(dw1 > 0 && dw1 < 1, "dW1 2:4 drop of layer " + l + " at step " + i + ": " + dw1);
                }
            }
        }
        assertTrue(r.minSparsity() > 0.2, "final minimum sparsity " + r.minSparsity());
    }

    @Test
    void denseLearnsAndReportsSparsity() throws Exception {
        GptTrain.Result r = dense;
        Report.Run run = Report.read(r.csv());
        assertLearns(run);
        double[] fwd = run.layerCol("fwd_drop", 0);
        assertEquals(0, fwd[STEPS - 1], "the dense FFN drops nothing");
        assertTrue(r.minSparsity() > 0.2 && r.minSparsity() < 1, "sparsity " + r.minSparsity());
        for (double s : run.col("ffn_sparse")) {
            assertEquals(0, s);
        }
    }

    @Test
    void reportPlotsAndSummarizesRuns() throws Exception {
        Path out = dir.resolve("report");
        GptTrain.main(new String[] {"--report", out.toString(), dense.csv().toString(), sparse.csv().toString()});
        for (String png : List.of("loss", "heldout", "drop", "time", "sparsity-dense", "sparsity-sparse-warmup")) {
            Path p = out.resolve(png + ".png");
            assertTrue(Files.size(p) > 1000, p + " is " + Files.size(p) + " bytes");
        }
        String md = Files.readString(out.resolve("summary.md"));
        assertTrue(md.contains("| dense | " + STEPS + " |") && md.contains("| sparse-warmup | " + STEPS + " |"), md);
        assertFalse(md.contains("NaN"), md);
        assertTrue(md.matches("(?s).*\\| sparse-warmup \\|.*\\| [0-9.]+x \\| [0-9.]+x \\|.*"), "speed-ups in " + md);
    }

    @Test
    void badOptionsAreNamed() {
        assertThrowsNaming("--ffn", "--corpus", "x", "--ffn", "half");
        assertThrowsNaming("--dense-warmup applies to --ffn sparse", "--corpus", "x", "--dense-warmup", "5");
        assertThrowsNaming("--d-model (30) must be a multiple of --heads (4)", "--corpus", "x", "--d-model", "30",
                "--heads", "4");
        assertThrowsNaming("unknown option(s) [layer]", "--corpus", "x", "--layer", "3");
        assertThrowsNaming("--steps: expected a positive integer, got 0", "--corpus", "x", "--steps", "0");
        assertThrowsNaming("--corpus FILE is required", "--steps", "3");
        assertThrows(IllegalArgumentException.class, () -> Corpus.load(dir.resolve("missing.gz"), 1));
    }

    @Test
    void defaultsAreTheGpuRun() {
        TrainConfig c = TrainConfig.parse(new String[] {"--corpus", "x"});
        assertEquals(List.of("cuda", 1024, 4096, 8, 16, 16, 1024, 1500), List.of(c.device(), c.dModel(), c.dFf(),
                c.layers(), c.heads(), c.batch(), c.seq(), c.steps()));
        // 6 x 16384 tokens x (8 x (4 d^2 + 2 d f) + 256 d) + causal attention 6 x 8 x 16384 x 1024 x 1024
        assertEquals(10.746e12, c.flopsPerStep(), 0.001e12);
        TrainConfig cpu = TrainConfig.parse(new String[] {"--corpus", "x", "--device", "cpu"});
        assertEquals(List.of(32, 128, 2, 2, 4, 32), List.of(cpu.dModel(), cpu.dFf(), cpu.layers(), cpu.heads(),
                cpu.batch(), cpu.seq()));
    }

    @Test
    void learningRateWarmsUpThenFollowsTheCosine() {
        TrainConfig c = TrainConfig.parse(new String[] {"--corpus", "x", "--steps", "110", "--lr", "1e-3",
                "--lr-warmup", "10", "--min-lr-ratio", "0.1"});
        assertEquals(1e-4, c.lrAt(0), 1e-12);
        assertEquals(1e-3, c.lrAt(9), 1e-12);
        assertEquals(1e-3, c.lrAt(10), 1e-12);
        assertEquals(1e-4, c.lrAt(109), 1e-12);
        assertTrue(c.lrAt(60) < c.lrAt(30) && c.lrAt(60) > c.lrAt(100));
    }

    private static void assertThrowsNaming(String expected, String... args) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TrainConfig.parse(args));
        assertTrue(e.getMessage().contains(expected), "'" + e.getMessage() + "' should contain '" + expected + "'");
    }

    /** Held-out loss at the end below the first evaluation's; train loss too (means over 5 steps). */
    private static void assertLearns(Report.Run run) {
        double[] held = run.col("heldout_loss");
        double firstHeld = held[0];
        double lastHeld = held[STEPS - 1 < held.length ? held.length - 1 : 0];
        assertTrue(lastHeld < firstHeld - 0.5, "held-out loss " + firstHeld + " -> " + lastHeld);
        double[] train = run.col("train_loss");
        double first = 0;
        double last = 0;
        for (int i = 0; i < 5; i++) {
            first += train[i] / 5;
            last += train[train.length - 1 - i] / 5;
        }
        assertTrue(last < first - 0.5, "train loss " + first + " -> " + last);
    }
}
