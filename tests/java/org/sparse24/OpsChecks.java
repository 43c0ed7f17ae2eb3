package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The building blocks of {@link Sparse24Ops} on one backend, against float64 references; every packed output is
 * decompressed and checked for the 2:4 property (at most 2 non-zeros per group of 4 along the packed dimension).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class OpsChecks {
    Sparse24 ctx;

    abstract Backend backend();

    abstract List<DType> dtypes();

    /** {rows, cols} with cols % 4 == 0. */
    abstract List<int[]> shapes();

    @BeforeAll
    void openContext() {
        ctx = Sparse24.create(backend());
    }

    @AfterAll
    void closeContext() {
        ctx.close();
    }

    /** (rows, cols, dtype, layout) for every layout the shape and dtype allow. */
    Stream<Arguments> packedCases() {
        List<Arguments> cases = new ArrayList<>();
        for (int[] s : shapes()) {
            for (DType dtype : dtypes()) {
                for (Layout layout : Layout.values()) {
                    if (layout.holds(dtype, s[0], s[1])) {
                        cases.add(Arguments.of(s[0], s[1], dtype, layout));
                    }
                }
            }
        }
        return cases.stream();
    }

    Stream<DType> dtypeCases() {
        return dtypes().stream();
    }

    @ParameterizedTest(name = "{0}x{1} {2} {3}")
    @MethodSource("packedCases")
    void sparsify24RowsKeepsTwoLargestSquared(int rows, int cols, DType dtype, Layout layout) {
        float[] h = TestData.stored(dtype, TestData.normal(new Random(rows * 31L + cols), rows * cols, 1));
        int[] counts = new int[cols];
        try (Tensor ht = Tensor.fromFloats(ctx, dtype, h, rows, cols);
             PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, rows, cols);
             Tensor dense = Tensor.allocate(ctx, dtype, rows, cols)) {
            long[] totals = Sparse24Ops.sparsify24Rows(ht, false, packed, counts);
            dense.poison(0xFF);
            Sparse24Ops.decompress24(packed, dense);
            float[] y = dense.toFloats();
            assertTwoFour(y, rows, cols);
            long nonzeros = 0;
            long kept = 0;
            int[] expectedCounts = new int[cols];
            for (int r = 0; r < rows; r++) {
                for (int g = 0; g < cols / 4; g++) {
                    double[] score = new double[4];
                    for (int j = 0; j < 4; j++) {
                        score[j] = Math.max(h[r * cols + 4 * g + j], 0);
                    }
                    boolean[] keep = ReferenceFfn.keepTwoLargest(score);
                    for (int j = 0; j < 4; j++) {
                        int i = r * cols + 4 * g + j;
                        float square = dtype.round((float) (score[j] * score[j]));
                        nonzeros += square != 0 ? 1 : 0;
                        float expected = keep[j] ? square : 0;
                        assertEquals(expected, y[i], "row " + r + " col " + (4 * g + j));
                        kept += expected != 0 ? 1 : 0;
                        expectedCounts[4 * g + j] += expected != 0 ? 1 : 0;
                    }
                }
            }
            assertArrayEquals(new long[] {nonzeros, kept}, totals, "totals");
            assertArrayEquals(expectedCounts, counts, "column counts");
        }
    }

    @ParameterizedTest
    @MethodSource("dtypeCases")
    void sparsify24RowsKeepAllIsReluSquared(DType dtype) {
        float[] h = TestData.stored(dtype, TestData.normal(new Random(5), 6 * 8, 1));
        try (Tensor ht = Tensor.fromFloats(ctx, dtype, h, 6, 8);
             PackedMatrix packed = PackedMatrix.allocate(ctx, Layout.DENSE, dtype, 6, 8);
             Tensor dense = Tensor.allocate(ctx, dtype, 6, 8)) {
            long[] totals = Sparse24Ops.sparsify24Rows(ht, true, packed, null);
            dense.poison(0xFF);
            Sparse24Ops.decompress24(packed, dense);
            float[] y = dense.toFloats();
            long positive = 0;
            for (int i = 0; i < h.length; i++) {
                assertEquals(dtype.round(h[i] > 0 ? h[i] * h[i] : 0), y[i], "element " + i);
                positive += h[i] > 0 ? 1 : 0;
            }
            assertArrayEquals(new long[] {positive, positive}, totals);
        }
    }

    @ParameterizedTest(name = "{0}x{1} {2} {3}")
    @MethodSource("packedCases")
    void compressKeepsTwoLargestMagnitudesAndIsLosslessOnTwoFour(int rows, int cols, DType dtype, Layout layout) {
        float[] v = TestData.stored(dtype, TestData.normal(new Random(rows + 7L * cols), rows * cols, 1));
        try (Tensor dense = Tensor.fromFloats(ctx, dtype, v, rows, cols);
             PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, rows, cols);
             PackedMatrix again = PackedMatrix.allocate(ctx, layout, dtype, rows, cols);
             Tensor out = Tensor.allocate(ctx, dtype, rows, cols);
             Tensor out2 = Tensor.allocate(ctx, dtype, rows, cols)) {
            Sparse24Ops.compress24(dense, packed);
            out.poison(0xFF);
            Sparse24Ops.decompress24(packed, out);
            float[] pruned = out.toFloats();
            assertTwoFour(pruned, rows, cols);
            for (int r = 0; r < rows; r++) {
                for (int g = 0; g < cols / 4; g++) {
                    double[] score = new double[4];
                    for (int j = 0; j < 4; j++) {
                        score[j] = Math.abs(v[r * cols + 4 * g + j]);
                    }
                    boolean[] keep = ReferenceFfn.keepTwoLargest(score);
                    for (int j = 0; j < 4; j++) {
                        int i = r * cols + 4 * g + j;
                        assertEquals(keep[j] ? v[i] : 0f, pruned[i], "row " + r + " col " + (4 * g + j));
                    }
                }
            }
            Sparse24Ops.compress24(out, again);
            out2.poison(0xFF);
            Sparse24Ops.decompress24(again, out2);
            assertArrayEquals(FfnChecks.bits(pruned), FfnChecks.bits(out2.toFloats()), "lossless on a 2:4 matrix");
        }
    }

    /** The backward's split: transpose, permuted tokens, 2:4 along tokens, dense features aside. */
    @ParameterizedTest(name = "{0}x{1} {2} {3}")
    @MethodSource("packedCases")
    void colsSplitSparsifiesAlongPermutedTokens(int tokens, int features, DType dtype, Layout srcLayout) {
        Random random = new Random(tokens * 13L + features);
        float[] h = TestData.stored(dtype, TestData.normal(random, tokens * features, 1));
        int[] perm = Sparse24Ops.tokenPermutation(77, 3, tokens);
        int k = Math.max(1, features / 16);
        Layout outLayout = outLayout(srcLayout, dtype, features, tokens);
        int paddedTokens = outLayout == Layout.ROW ? (tokens + 3) / 4 * 4 : tokens;
        int[] counts = new int[features];
        try (Tensor ht = Tensor.fromFloats(ctx, dtype, h, tokens, features);
             PackedMatrix src = PackedMatrix.allocate(ctx, srcLayout, dtype, tokens, features);
             Tensor srcDense = Tensor.allocate(ctx, dtype, tokens, features);
             PackedMatrix t = PackedMatrix.allocate(ctx, outLayout, dtype, features, paddedTokens);
             Tensor tDense = Tensor.allocate(ctx, dtype, features, paddedTokens);
             Tensor denseCols = Tensor.allocate(ctx, dtype, tokens, k)) {
            Sparse24Ops.sparsify24Rows(ht, false, src, counts);
            Sparse24Ops.decompress24(src, srcDense);
            float[] y = srcDense.toFloats();
            int[] denseIdx = Sparse24Ops.selectDenseFeatures(ctx, counts, k);
            tDense.poison(0xFF);
            denseCols.poison(0xFF);
            long[] totals = Sparse24Ops.sparsify24ColsSplit(src, perm, denseIdx, t, denseCols);
            Sparse24Ops.decompress24(t, tDense);
            float[] tv = tDense.toFloats();
            assertTwoFour(tv, features, paddedTokens);
            boolean[] dense = new boolean[features];
            Arrays.stream(denseIdx).forEach(j -> dense[j] = true);
            long nonzeros = 0;
            long kept = 0;
            for (int f = 0; f < features; f++) {
                for (int g = 0; 4 * g < tokens; g++) {
                    double[] score = new double[4];
                    for (int j = 0; j < 4; j++) {
                        int p = 4 * g + j;
                        score[j] = dense[f] || p >= tokens ? 0 : Math.abs(y[perm[p] * features + f]);
                        nonzeros += score[j] != 0 ? 1 : 0;
                    }
                    boolean[] keep = ReferenceFfn.keepTwoLargest(score);
                    for (int j = 0; j < 4 && 4 * g + j < tokens; j++) {
                        int p = 4 * g + j;
                        float expected = keep[j] && !dense[f] ? y[perm[p] * features + f] : 0;
                        assertEquals(expected, tv[f * paddedTokens + p], "feature " + f + " position " + p);
                        kept += expected != 0 ? 1 : 0;
                    }
                }
            }
            assertArrayEquals(new long[] {nonzeros, kept}, totals, "totals");
            float[] cols = denseCols.toFloats();
            for (int p = 0; p < tokens; p++) {
                for (int j = 0; j < k; j++) {
                    assertEquals(y[perm[p] * features + denseIdx[j]], cols[p * k + j], "dense column " + j);
                }
            }
        }
    }

    /** The transposed operand's layout: the same as the source where [features, tokens] allows it. */
    private static Layout outLayout(Layout srcLayout, DType dtype, int features, int tokens) {
        if (srcLayout == Layout.CUSPARSELT && Layout.CUSPARSELT.holds(dtype, features, tokens)) {
            return Layout.CUSPARSELT;
        }
        return Layout.ROW;
    }

    @ParameterizedTest
    @MethodSource("dtypeCases")
    void gatherRowsPermutesRows(DType dtype) {
        int rows = 9;
        int cols = 5;
        float[] v = TestData.normal(new Random(2), rows * cols, 1);
        int[] perm = Sparse24Ops.tokenPermutation(3, 0, rows);
        try (Tensor in = Tensor.fromFloats(ctx, dtype, v, rows, cols);
             Tensor out = Tensor.allocate(ctx, dtype, rows, cols)) {
            out.poison(0xFF);
            Sparse24Ops.gatherRows(in, perm, out);
            float[] stored = in.toFloats();
            float[] g = out.toFloats();
            for (int i = 0; i < rows; i++) {
                for (int c = 0; c < cols; c++) {
                    assertEquals(stored[perm[i] * cols + c], g[i * cols + c]);
                }
            }
            out.poison(0xFF);
            Sparse24Ops.gatherRows(in, (int[]) null, out);
            assertArrayEquals(FfnChecks.bits(stored), FfnChecks.bits(out.toFloats()), "null perm copies");
        }
    }

    Stream<Arguments> gemmCases() {
        List<Arguments> cases = new ArrayList<>();
        for (DType dtype : dtypes()) {
            for (boolean aT : new boolean[] {false, true}) {
                for (boolean bT : new boolean[] {false, true}) {
                    cases.add(Arguments.of(dtype, aT, bT));
                }
            }
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "{0} aT={1} bT={2}")
    @MethodSource("gemmCases")
    void gemmMatchesReference(DType dtype, boolean aT, boolean bT) {
        int m = 13;
        int n = 11;
        int k = 37;
        Random random = new Random(4);
        float[] a = TestData.stored(dtype, TestData.normal(random, m * k, 1));
        float[] b = TestData.stored(dtype, TestData.normal(random, k * n, 1));
        try (Tensor at = Tensor.fromFloats(ctx, dtype, a, aT ? k : m, aT ? m : k);
             Tensor bt = Tensor.fromFloats(ctx, dtype, b, bT ? n : k, bT ? k : n);
             Tensor c = Tensor.allocate(ctx, dtype, m, n)) {
            c.poison(0xFF);
            Sparse24Ops.gemm(at, aT, bt, bT, c);
            double[] expected = ReferenceFfn.matmul(ReferenceFfn.widen(a), ReferenceFfn.widen(b), m, k, n, aT, bT);
            TestData.assertClose("gemm", c.toFloats(), expected, TestData.tolerance(dtype));
        }
    }

    @ParameterizedTest(name = "{0}x{1} {2} {3}")
    @MethodSource("packedCases")
    void spmmMatchesReference(int m, int k, DType dtype, Layout layout) {
        Random random = new Random(m + 3L * k);
        float[] a = TestData.stored(dtype, TestData.normal(random, m * k, 1));
        int n = 24;
        for (boolean bT : new boolean[] {false, true}) {
            float[] b = TestData.stored(dtype, TestData.normal(random, k * n, 1 / Math.sqrt(k)));
            try (Tensor dense = Tensor.fromFloats(ctx, dtype, a, m, k);
                 PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, m, k);
                 Tensor pruned = Tensor.allocate(ctx, dtype, m, k);
                 Tensor bt = Tensor.fromFloats(ctx, dtype, b, bT ? n : k, bT ? k : n);
                 Tensor c = Tensor.allocate(ctx, dtype, m, n)) {
                Sparse24Ops.compress24(dense, packed);
                Sparse24Ops.decompress24(packed, pruned);
                c.poison(0xFF);
                Sparse24Ops.spmm(packed, bt, bT, c);
                double[] expected = ReferenceFfn.matmul(ReferenceFfn.widen(pruned.toFloats()), ReferenceFfn.widen(b),
                        m, k, n, false, bT);
                TestData.assertClose("spmm bT=" + bT, c.toFloats(), expected, TestData.tolerance(dtype));
            }
        }
    }

    @Test
    void selectDenseFeaturesTakesTheMostNonzerosLowerIndexOnTies() {
        int[] counts = new Random(8).ints(200, 0, 20).toArray();
        for (int k : new int[] {0, 1, 10, 199, 200}) {
            int[] expected = IntStream.range(0, counts.length).boxed()
                    .sorted((a, b) -> counts[a] != counts[b] ? counts[b] - counts[a] : a - b).limit(k)
                    .mapToInt(Integer::intValue).sorted().toArray();
            assertArrayEquals(expected, Sparse24Ops.selectDenseFeatures(ctx, counts, k), "k=" + k);
        }
    }

    @Test
    void tokenPermutationIsADeterministicBijectionPerStep() {
        for (int tokens : new int[] {1, 2, 5, 64, 1000, 4099}) {
            int[] perm = Sparse24Ops.tokenPermutation(12345, 0, tokens);
            assertArrayEquals(IntStream.range(0, tokens).toArray(), IntStream.of(perm).sorted().toArray(),
                    "bijection on " + tokens);
            assertArrayEquals(perm, Sparse24Ops.tokenPermutation(12345, 0, tokens), "deterministic");
        }
        assertFalse(Arrays.equals(Sparse24Ops.tokenPermutation(12345, 0, 64),
                Sparse24Ops.tokenPermutation(12345, 1, 64)), "steps differ");
        assertFalse(Arrays.equals(Sparse24Ops.tokenPermutation(12345, 0, 64), IntStream.range(0, 64).toArray()),
                "not the identity");
    }

    @Test
    void packedSizesFollowTheLayouts() {
        for (DType dtype : dtypes()) {
            long e = dtype.byteSize();
            assertEquals(6 * 12 * e, Sparse24Ops.packedSize(Layout.DENSE, dtype, 6, 12));
            assertEquals(6 * 6 * e + 6 * 2, Sparse24Ops.packedSize(Layout.ROW, dtype, 6, 12), "3 groups: 2 bytes/row");
            assertEquals(5 * 4 * e + 5 * 1, Sparse24Ops.packedSize(Layout.ROW, dtype, 5, 8));
            if (dtype != DType.FP32) {
                assertEquals(64 * 64 * e + 64 * 128 / 8, Sparse24Ops.packedSize(Layout.CUSPARSELT, dtype, 64, 128));
            }
        }
    }

    /** At most 2 non-zeros in each group of 4 consecutive columns of every row (and no NaN). */
    static void assertTwoFour(float[] m, int rows, int cols) {
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < cols / 4; g++) {
                int nonzeros = 0;
                for (int j = 0; j < 4; j++) {
                    float v = m[r * cols + 4 * g + j];
                    assertFalse(Float.isNaN(v), "NaN (unwritten) at row " + r + " col " + (4 * g + j));
                    nonzeros += v != 0 ? 1 : 0;
                }
                assertTrue(nonzeros <= 2, "row " + r + " group " + g + " has " + nonzeros + " non-zeros");
            }
        }
    }
}
