package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.sparse24.MessageAssertions.assertThrowsNaming;

import java.util.Random;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The ops with index, count and total arrays as tensors in the context's memory give what the host-array
 * overloads give, and their tensor arguments are checked: on the CPU backend here, on CUDA in
 * {@link IndexTensorOpsGpuTest}.
 */
class IndexTensorOpsTest {
    private static Sparse24 ctx;

    @BeforeAll
    static void open() {
        ctx = Sparse24.cpu();
    }

    @AfterAll
    static void close() {
        ctx.close();
    }

    @Test
    void deviceTensorsGiveTheHostArrayResults() {
        check(ctx, DType.FP32, Layout.ROW, 64, 48);
    }

    /** The check on a context: h [tokens, features] random, both overloads of each op, results compared. */
    static void check(Sparse24 ctx, DType dt, Layout layout, int tokens, int features) {
        final int k = 8;
        float[] hv = TestData.normal(new Random(11), tokens * features, 1.0);
        try (Tensor h = Tensor.fromFloats(ctx, dt, hv, tokens, features);
             PackedMatrix y1 = PackedMatrix.allocate(ctx, layout, dt, tokens, features);
             PackedMatrix y2 = PackedMatrix.allocate(ctx, layout, dt, tokens, features);
             Tensor counts = Tensor.allocate(ctx, DType.INT32, features);
             Tensor totals = Tensor.allocate(ctx, DType.INT64, 2);
             Tensor idx = Tensor.allocate(ctx, DType.INT32, k);
             Tensor isDense = Tensor.allocate(ctx, DType.UINT8, features);
             PackedMatrix t1 = PackedMatrix.allocate(ctx, layout, dt, features, tokens);
             PackedMatrix t2 = PackedMatrix.allocate(ctx, layout, dt, features, tokens);
             Tensor cols1 = Tensor.allocate(ctx, dt, tokens, k);
             Tensor cols2 = Tensor.allocate(ctx, dt, tokens, k);
             Tensor g1 = Tensor.allocate(ctx, dt, tokens, features);
             Tensor g2 = Tensor.allocate(ctx, dt, tokens, features);
             Tensor d1 = Tensor.allocate(ctx, dt, features, tokens);
             Tensor d2 = Tensor.allocate(ctx, dt, features, tokens)) {
            int[] countsHost = new int[features];
            long[] totalsHost = Sparse24Ops.sparsify24Rows(h, false, y1, countsHost);
            counts.poison(0xFF);
            totals.poison(0xFF);
            Sparse24Ops.sparsify24Rows(h, false, y2, counts, totals);
            assertArrayEquals(countsHost, counts.toInts());
            assertArrayEquals(totalsHost, totals.toLongs());

            int[] idxHost = Sparse24Ops.selectDenseFeatures(ctx, countsHost, k);
            idx.poison(0xFF);
            isDense.poison(0xFF);
            Sparse24Ops.selectDenseFeatures(counts, idx, isDense);
            assertArrayEquals(idxHost, idx.toInts());
            byte[] flags = new byte[features];
            for (int j : idxHost) {
                flags[j] = 1;
            }
            assertArrayEquals(flags, isDense.toBytes());

            int[] perm = Sparse24Ops.tokenPermutation(5, 2, tokens);
            try (Tensor permT = Tensor.fromInts(ctx, perm, tokens)) {
                long[] splitHost = Sparse24Ops.sparsify24ColsSplit(y1, perm, idxHost, t1, cols1);
                cols2.poison(0xFF);
                Sparse24Ops.sparsify24ColsSplit(y2, permT, isDense, idx, t2, cols2, totals);
                assertArrayEquals(splitHost, totals.toLongs());
                assertArrayEquals(cols1.toFloats(), cols2.toFloats());
                Sparse24Ops.decompress24(t1, d1);
                Sparse24Ops.decompress24(t2, d2);
                assertArrayEquals(d1.toFloats(), d2.toFloats());

                Sparse24Ops.gatherRows(h, perm, g1);
                g2.poison(0xFF);
                Sparse24Ops.gatherRows(h, permT, g2);
                assertArrayEquals(g1.toFloats(), g2.toFloats());
                Sparse24Ops.gatherRows(h, (Tensor) null, g2);
                assertArrayEquals(h.toFloats(), g2.toFloats());
            }

            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.sparsify24Rows(h, false, y2, totals, null), "colCounts", "INT32", "INT64");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.sparsify24Rows(h, false, y2, null, counts), "totals", "[2]");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.selectDenseFeatures(counts, idx, counts), "isDense", "UINT8");
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.sparsify24ColsSplit(y2, idx, isDense, idx, t2, cols2, totals), "perm",
                    "[tokens]", String.valueOf(tokens));
            assertThrowsNaming(IllegalArgumentException.class,
                    () -> Sparse24Ops.gatherRows(h, counts, g2), "perm", "[rows]");
        }
    }
}
