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

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The building blocks of {@link Sparse24Ops} on one backend, against float64 references; every packed output is
 * decompressed and checked for the 2:4 property (at most 2 non-zeros per group of 4 along the packed dimension).
 */
abstract class OpsChecks extends ContextChecks {
    /** {rows, cols} with cols % 4 == 0. */
    abstract List<int[]> shapes();

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

    // ---- fixed groups with ties, zeros and infinities (and NaN), every dtype and layout ------------------------

    private static final float INF = Float.POSITIVE_INFINITY;
    private static final float NAN = Float.NaN;

    /** {input h, what sparsify24Rows keeps}: relu(h)^2, the 2 largest per group, ties to the lower index. */
    static final float[][][] ROW_TIES = {
        {{1, 1, 1, 1}, {1, 1, 0, 0}},
        {{0, 2, 2, 0}, {0, 4, 4, 0}},
        {{-3, 3, 1, 3}, {0, 9, 0, 9}},
        {{0, 0, 0, 0}, {0, 0, 0, 0}},
        {{-1, -2, 0, -4}, {0, 0, 0, 0}},
        {{0, 0, 0, 5}, {0, 0, 0, 25}},
        {{0.5f, 0.5f, 2, 0.5f}, {0.25f, 0, 4, 0}},
        {{INF, 1, INF, 1}, {INF, 0, INF, 0}},
        {{1, INF, 1, 1}, {1, INF, 0, 0}},
        {{-INF, 2, -INF, 2}, {0, 4, 0, 4}},
    };

    /** NaN ranks above everything and propagates; among NaNs the lower index wins. */
    static final float[][][] ROW_NAN_TIES = {
        {{NAN, 1, 1, 0}, {NAN, 1, 0, 0}},
        {{1, NAN, NAN, 2}, {0, NAN, NAN, 0}},
        {{NAN, NAN, NAN, NAN}, {NAN, NAN, 0, 0}},
        {{-1, 3, NAN, INF}, {0, 0, NAN, INF}},
        {{-1, -1, -1, NAN}, {0, 0, 0, NAN}},
    };

    /** {input v, what compress24 keeps}: the 2 largest |v| per group, ties to the lower index. */
    static final float[][][] MAGNITUDE_TIES = {
        {{1, 1, 1, 1}, {1, 1, 0, 0}},
        {{0, 2, 2, 0}, {0, 2, 2, 0}},
        {{-3, 3, 1, 3}, {-3, 3, 0, 0}},
        {{0, 0, 0, 0}, {0, 0, 0, 0}},
        {{0, 0, 0, -5}, {0, 0, 0, -5}},
        {{-2, 1, 2, -1}, {-2, 0, 2, 0}},
        {{-INF, INF, 1, 0}, {-INF, INF, 0, 0}},
        {{1, -INF, 5, INF}, {0, -INF, 0, INF}},
        {{0.5f, -0.5f, 0.5f, -0.5f}, {0.5f, -0.5f, 0, 0}},
    };

    static final float[][][] MAGNITUDE_NAN_TIES = {
        {{NAN, 1, 1, 0}, {NAN, 1, 0, 0}},
        {{-1, NAN, 3, NAN}, {0, NAN, 0, NAN}},
        {{NAN, NAN, NAN, -INF}, {NAN, NAN, 0, 0}},
        {{-INF, 2, 1, NAN}, {-INF, 0, 0, NAN}},
    };

    /** (dtype, layout) for a 64 x 64 matrix: every layout the dtype allows. */
    Stream<Arguments> tieCases() {
        return dtypes().stream().flatMap(dtype -> Stream.of(Layout.values())
                .filter(layout -> layout != Layout.CUSPARSELT || dtype != DType.FP32)
                .map(layout -> Arguments.of(dtype, layout)));
    }

    /** A 64 x 64 matrix whose group g of row r is pattern (r + g) % n, and what the op should keep of it. */
    private static float[][] tiled(float[][][] patterns) {
        float[] in = new float[64 * 64];
        float[] kept = new float[64 * 64];
        for (int r = 0; r < 64; r++) {
            for (int g = 0; g < 16; g++) {
                float[][] pattern = patterns[(r + g) % patterns.length];
                System.arraycopy(pattern[0], 0, in, r * 64 + 4 * g, 4);
                System.arraycopy(pattern[1], 0, kept, r * 64 + 4 * g, 4);
            }
        }
        return new float[][] {in, kept};
    }

    private static void assertGroups(float[][][] patterns, float[] expected, float[] actual) {
        for (int i = 0; i < expected.length; i++) {
            int r = i / 64;
            int g = (i % 64) / 4;
            assertEquals(expected[i], actual[i], "row " + r + " group " + g + " "
                    + Arrays.toString(patterns[(r + g) % patterns.length][0]) + " position " + i % 4);
        }
    }

    private float[] sparsify24RowsOf(float[] h, DType dtype, Layout layout, long[] totals, int[] counts) {
        try (Tensor ht = Tensor.fromFloats(ctx, dtype, h, 64, 64);
             PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, 64, 64);
             Tensor dense = Tensor.allocate(ctx, dtype, 64, 64)) {
            long[] t = Sparse24Ops.sparsify24Rows(ht, false, packed, counts);
            System.arraycopy(t, 0, totals, 0, 2);
            dense.poison(0xFF);
            Sparse24Ops.decompress24(packed, dense);
            return dense.toFloats();
        }
    }

    private float[] compress24Of(float[] v, DType dtype, Layout layout) {
        try (Tensor in = Tensor.fromFloats(ctx, dtype, v, 64, 64);
             PackedMatrix packed = PackedMatrix.allocate(ctx, layout, dtype, 64, 64);
             Tensor out = Tensor.allocate(ctx, dtype, 64, 64)) {
            Sparse24Ops.compress24(in, packed);
            out.poison(0xFF);
            Sparse24Ops.decompress24(packed, out);
            return out.toFloats();
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("tieCases")
    void sparsify24RowsTieRows(DType dtype, Layout layout) {
        float[][] m = tiled(ROW_TIES);
        long[] totals = new long[2];
        int[] counts = new int[64];
        float[] y = sparsify24RowsOf(m[0], dtype, layout, totals, counts);
        assertGroups(ROW_TIES, m[1], y);
        long positive = IntStream.range(0, m[0].length).filter(i -> m[0][i] > 0).count();
        long kept = IntStream.range(0, m[1].length).filter(i -> m[1][i] != 0).count();
        assertArrayEquals(new long[] {positive, kept}, totals, "totals {non-zeros, kept}");
        int[] expectedCounts = new int[64];
        IntStream.range(0, m[1].length).filter(i -> m[1][i] != 0).forEach(i -> expectedCounts[i % 64]++);
        assertArrayEquals(expectedCounts, counts, "column counts");
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("tieCases")
    void compress24TieRows(DType dtype, Layout layout) {
        float[][] m = tiled(MAGNITUDE_TIES);
        assertGroups(MAGNITUDE_TIES, m[1], compress24Of(m[0], dtype, layout));
    }

    /** The backward's 2:4 along tokens on fixed columns: ties, zeros, infinities; two dense features aside. */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("tieCases")
    void colsSplitTieColumns(DType dtype, Layout srcLayout) {
        // h along tokens 4p..4p+3 of feature c (c % 4 < 2), and what the split keeps of relu(h)^2 there
        float[][][] columns = {
            {{1, 1, 1, 1}, {1, 1, 0, 0}},
            {{0, 2, 2, 0}, {0, 4, 4, 0}},
            {{3, 3, 1, 3}, {9, 9, 0, 0}},
            {{0, 0, 0, 0}, {0, 0, 0, 0}},
            {{0, 0, 0, 1}, {0, 0, 0, 1}},
            {{INF, 1, INF, 1}, {INF, 0, INF, 0}},
            {{1, 2, 1, 2}, {0, 4, 0, 4}},
        };
        int tokens = 64;
        int features = 64;
        int[] denseIdx = {1, 8};
        float[] h = new float[tokens * features];
        float[] y = new float[tokens * features];
        float[] expected = new float[features * tokens];
        for (int c = 0; c < features; c++) {
            for (int t = 0; t < tokens; t++) {
                float[][] pattern = columns[(c / 4 * 2 + c % 4 + t / 4) % columns.length];
                h[t * features + c] = c % 4 < 2 ? pattern[0][t % 4] : -1;
                y[t * features + c] = c % 4 < 2 ? pattern[0][t % 4] * pattern[0][t % 4] : 0;
                boolean dense = Arrays.binarySearch(denseIdx, c) >= 0;
                expected[c * tokens + t] = c % 4 < 2 && !dense ? pattern[1][t % 4] : 0;
            }
        }
        Layout outLayout = outLayout(srcLayout, dtype, features, tokens);
        try (Tensor ht = Tensor.fromFloats(ctx, dtype, h, tokens, features);
             PackedMatrix src = PackedMatrix.allocate(ctx, srcLayout, dtype, tokens, features);
             PackedMatrix t = PackedMatrix.allocate(ctx, outLayout, dtype, features, tokens);
             Tensor tDense = Tensor.allocate(ctx, dtype, features, tokens);
             Tensor denseCols = Tensor.allocate(ctx, dtype, tokens, denseIdx.length)) {
            Sparse24Ops.sparsify24Rows(ht, srcLayout == Layout.DENSE, src, null);
            denseCols.poison(0xFF);
            tDense.poison(0xFF);
            long[] totals = Sparse24Ops.sparsify24ColsSplit(src, null, denseIdx, t, denseCols);
            Sparse24Ops.decompress24(t, tDense);
            float[] tv = tDense.toFloats();
            for (int c = 0; c < features; c++) {
                for (int p = 0; p < tokens; p++) {
                    assertEquals(expected[c * tokens + p], tv[c * tokens + p], "feature " + c + " token " + p);
                }
            }
            float[] cols = denseCols.toFloats();
            for (int p = 0; p < tokens; p++) {
                for (int j = 0; j < denseIdx.length; j++) {
                    assertEquals(y[p * features + denseIdx[j]], cols[p * denseIdx.length + j], "dense column " + j);
                }
            }
            long nonzeros = IntStream.range(0, y.length)
                    .filter(i -> y[i] != 0 && Arrays.binarySearch(denseIdx, i % features) < 0).count();
            long kept = IntStream.range(0, expected.length).filter(i -> expected[i] != 0).count();
            assertArrayEquals(new long[] {nonzeros, kept}, totals, "totals {non-zeros, kept}");
        }
    }

    /** NaN in a group is kept and propagates (it ranks above every value; among NaNs the lower index wins). */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("tieCases")
    void sparsify24RowsNanRanksHighest(DType dtype, Layout layout) {
        float[][] m = tiled(ROW_NAN_TIES);
        assertGroups(ROW_NAN_TIES, m[1], sparsify24RowsOf(m[0], dtype, layout, new long[2], null));
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("tieCases")
    void compress24NanRanksHighest(DType dtype, Layout layout) {
        float[][] m = tiled(MAGNITUDE_NAN_TIES);
        assertGroups(MAGNITUDE_NAN_TIES, m[1], compress24Of(m[0], dtype, layout));
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
