package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Random;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Long forward/backward loops stay flat in memory: outputs closed by a {@link Scope} each step, or never closed
 * at all (the Cleaner frees unreachable tensors and saved states). {@code sparse24.soakSteps} steps (default
 * 10 000; a fifth of them scoped); the native bytes the context counts and the process's resident memory are compared between the end of
 * the warm-up (a fifth of the steps) and the end. The counted bytes are the exact measure; the resident set,
 * which the Java heap of the other tests in the JVM also grows, only catches gross leaks.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class SoakChecks {
    abstract Backend backend();

    /** The element type of every case: bf16. */
    DType dtype() {
        return DType.BF16;
    }

    /** {T, d, f}. */
    abstract int[] shape();

    /** Allowed growth of the resident set after the warm-up, in bytes. */
    abstract long rssAllowance();

    @BeforeAll
    void smallGcStep() {
        Sparse24.gcBytes(16L << 20);
    }

    @AfterAll
    void defaultGcStep() {
        Sparse24.gcBytes(256L << 20);
    }

    static int steps() {
        return Integer.getInteger("sparse24.soakSteps", 10_000);
    }

    @Test
    void scopedStepsStayFlat() throws IOException {
        soak(true);
    }

    @Test
    void forgottenOutputsStayFlat() throws IOException {
        soak(false);
    }

    private void soak(boolean scoped) throws IOException {
        int[] s = shape();
        Random random = new Random(8);
        try (Sparse24 ctx = Sparse24.create(backend());
             Tensor x = Tensor.fromFloats(ctx, dtype(), TestData.normal(random, s[0] * s[1], 1), s[0], s[1]);
             Tensor w1 = Tensor.fromFloats(ctx, dtype(), TestData.normal(random, s[2] * s[1], 0.2), s[2], s[1]);
             Tensor w2 = Tensor.fromFloats(ctx, dtype(), TestData.normal(random, s[1] * s[2], 0.2), s[1], s[2]);
             Tensor dz = Tensor.fromFloats(ctx, dtype(), TestData.normal(random, s[0] * s[1], 1), s[0], s[1]);
             SparseFfn ffn = new SparseFfn(ctx, s[1], s[2], dtype(), SparseFfnOptions.defaults())) {
            int steps = scoped ? steps() / 5 : steps();  // the scope is deterministic: fewer steps show it
            long warmRss = 0;
            long warmBytes = 0;
            long maxBytes = 0;
            for (int step = 0; step < steps; step++) {
                if (scoped) {
                    try (Scope scope = Sparse24.scope()) {
                        ForwardResult r = ffn.forward(x, w1, w2);
                        ffn.backward(r.saved(), x, w1, w2, dz);
                    }
                } else {
                    ForwardResult r = ffn.forward(x, w1, w2);
                    ffn.backward(r.saved(), x, w1, w2, dz);  // neither closed
                }
                if (step == steps / 5) {
                    ctx.synchronize();
                    warmRss = residentBytes();
                    warmBytes = ctx.countedBytes();
                }
                maxBytes = Math.max(maxBytes, ctx.countedBytes());
            }
            ctx.synchronize();
            long rss = residentBytes();
            System.out.println(getClass().getSimpleName() + (scoped ? " scoped" : " forgotten") + ": " + steps
                    + " steps; counted native bytes " + warmBytes + " -> " + ctx.countedBytes() + " (max " + maxBytes
                    + "); resident " + (warmRss >> 20) + " -> " + (rss >> 20) + " MiB");
            // bounded: the unclosed outputs of all the steps would hold GBs; on a GPU the steps outpace the
            // Cleaner's thread between the collections that gcBytes (16 MiB) asks for (H200: 72 MB at most)
            assertTrue(maxBytes < (128L << 20), "counted native bytes reached " + maxBytes);
            assertTrue(rss - warmRss < rssAllowance(), "resident memory grew from " + (warmRss >> 20) + " to "
                    + (rss >> 20) + " MiB after the warm-up");
        }
    }

    /** VmRSS of this process (Linux). */
    static long residentBytes() throws IOException {
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
        }
        throw new IOException("no VmRSS in /proc/self/status");
    }
}
