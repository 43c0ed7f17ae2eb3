package org.sparse24.examples;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.zip.GZIPInputStream;

/**
 * A byte corpus (one byte = one token, vocabulary 256): the first 99% for training, the last 1% held out. Training
 * batches are windows at random offsets drawn from a seeded generator, so runs with the same seed see the same
 * data in the same order; held-out batches are fixed windows spread evenly over the held-out part.
 */
final class Corpus {
    static final int VOCAB = 256;

    private final byte[] bytes;
    private final int heldOutStart;
    private final SplittableRandom random;

    Corpus(byte[] bytes, long seed) {
        this.bytes = bytes;
        this.heldOutStart = bytes.length - bytes.length / 100;
        this.random = new SplittableRandom(seed);
    }

    /** Reads {@code file}, gunzipping it when its name ends with ".gz". */
    static Corpus load(Path file, long seed) throws IOException {
        if (!Files.isRegularFile(file)) {
            throw new IllegalArgumentException("--corpus: no file " + file
                    + " (examples/prepare-corpus.sh makes one)");
        }
        try (InputStream in = file.toString().endsWith(".gz")
                ? new GZIPInputStream(Files.newInputStream(file), 1 << 20) : Files.newInputStream(file)) {
            return new Corpus(in.readAllBytes(), seed);
        }
    }

    long size() {
        return bytes.length;
    }

    long trainSize() {
        return heldOutStart;
    }

    /**
     * The next training batch: {@code batch} windows of {@code seq + 1} tokens, row-major [batch, seq + 1] (inputs
     * are the first seq tokens of a row, targets the last seq).
     */
    long[] nextTrainBatch(int batch, int seq) {
        int window = seq + 1;
        requireRoom("training", heldOutStart, window);
        long[] tokens = new long[batch * window];
        for (int b = 0; b < batch; b++) {
            copy(random.nextInt(heldOutStart - window + 1), tokens, b * window, window);
        }
        return tokens;
    }

    /** Held-out batch {@code index} of {@code count}: fixed windows, the same in every run. */
    long[] heldOutBatch(int index, int count, int batch, int seq) {
        int window = seq + 1;
        int room = bytes.length - heldOutStart;
        requireRoom("held-out", room, window);
        int windows = count * batch;
        long[] tokens = new long[batch * window];
        for (int b = 0; b < batch; b++) {
            int w = index * batch + b;
            int start = heldOutStart + (windows == 1 ? 0 : (int) ((long) w * (room - window) / (windows - 1)));
            copy(start, tokens, b * window, window);
        }
        return tokens;
    }

    private void copy(int from, long[] to, int at, int n) {
        for (int i = 0; i < n; i++) {
            to[at + i] = bytes[from + i] & 0xff;
        }
    }

    private void requireRoom(String part, int room, int window) {
        if (room < window) {
            throw new IllegalArgumentException("the corpus' " + part + " part (" + room + " bytes) is shorter than "
                    + "one window of --seq + 1 = " + window + " tokens");
        }
    }
}
