package org.sparse24;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.SizeTPointer;
import org.sparse24.binding.global.sparse24;

/**
 * The building blocks the FFN is made of, for tests and advanced users (semantics: {@code sparse24.h}).
 * Matrices are row-major rank-2 {@link Tensor}s or {@link PackedMatrix PackedMatrices} of one context and
 * dtype. Index, count and statistics arrays come two ways: as integer {@link Tensor}s in the context's memory
 * (INT32, UINT8, INT64: no allocation, copy or wait per call, as the FFN runs them; their shapes and dtypes are
 * checked, their contents are not, since they live on the device), or as host Java arrays (convenient: copied to
 * and from the context's memory on every call, contents checked). Every shape and context is checked in Java
 * before the native call.
 */
public final class Sparse24Ops {
    private Sparse24Ops() {
    }

    /** Bytes of a packed {@code [rows, cols]} matrix in {@code layout} (values + metadata). */
    public static long packedSize(Layout layout, DType dtype, long rows, long cols) {
        Args.notNull(layout, "layout");
        Args.notNull(dtype, "dtype");
        DType.requireFloating(dtype, "dtype");
        Args.atLeast(rows, 1, "rows");
        Args.atLeast(cols, 1, "cols");
        try (SizeTPointer bytes = new SizeTPointer(1)) {
            Native.check(sparse24.s24_packed_size(layout.code, dtype.code, rows, cols, bytes), "s24_packed_size");
            return bytes.get();
        }
    }

    /**
     * {@code out} = S24_rows(relu(h)^2) of {@code h} [rows, cols]: in each group of 4 columns keep the 2 largest
     * of relu(h) (ties: lower column) and square them; {@code keepAll} skips the 2:4 selection (out must be
     * {@link Layout#DENSE}).
     *
     * @param colCounts null, or an array of {@code cols} that receives the kept non-zeros per column
     * @return {non-zeros of relu(h)^2 before 2:4, non-zeros kept}
     */
    public static long[] sparsify24Rows(Tensor h, boolean keepAll, PackedMatrix out, int[] colCounts) {
        Sparse24 ctx = matrixContext(h, "h");
        long rows = h.dim(0);
        long cols = h.dim(1);
        checkPacked(out, "out", ctx, h.dtype(), rows, cols);
        if (colCounts != null && colCounts.length != cols) {
            throw new IllegalArgumentException("colCounts: expected null or " + cols + " ints, got " + colCounts.length);
        }
        try (ContextArray counts = colCounts == null ? null : ContextArray.allocate(ctx, 4 * cols);
             ContextArray totals = ContextArray.allocate(ctx, 16)) {
            try (InUse u = InUse.of(ctx, h, out)) {
                Args.noAliasing(1, new String[] {"out", "h"}, out, h);
                Native.check(sparse24.s24_sparsify24_rows(ctx.handle(), h.dtype().code, rows, cols, h.data(),
                        keepAll ? 1 : 0, out.layout().code, out.data(), counts == null ? null : counts.ints(),
                        totals.longs()), "s24_sparsify24_rows");
            }
            if (counts != null) {
                System.arraycopy(counts.toInts(colCounts.length), 0, colCounts, 0, colCounts.length);
            }
            return totals.toLongs(2);
        }
    }

    /**
     * As {@link #sparsify24Rows(Tensor, boolean, PackedMatrix, int[])} with the outputs in the context's memory,
     * enqueued without a wait.
     *
     * @param colCounts null, or INT32 [cols]: the kept non-zeros per column
     * @param totals    null, or INT64 [2]: {non-zeros of relu(h)^2 before 2:4, non-zeros kept}
     */
    public static void sparsify24Rows(Tensor h, boolean keepAll, PackedMatrix out, Tensor colCounts, Tensor totals) {
        Sparse24 ctx = matrixContext(h, "h");
        long rows = h.dim(0);
        long cols = h.dim(1);
        checkPacked(out, "out", ctx, h.dtype(), rows, cols);
        optional(colCounts, "colCounts", ctx, DType.INT32, "[cols]", cols);
        optional(totals, "totals", ctx, DType.INT64, "[2]", 2);
        Native.check(sparse24.s24_sparsify24_rows(ctx.handle(), h.dtype().code, rows, cols, h.data(), keepAll ? 1 : 0,
                out.layout().code, out.data(), ints(colCounts), longs(totals)), "s24_sparsify24_rows");
    }

    /** {@code out} = the 2:4 of {@code dense}, keeping the 2 largest |values| per group of 4 (lossless if already 2:4). */
    public static void compress24(Tensor dense, PackedMatrix out) {
        Sparse24 ctx = matrixContext(dense, "dense");
        checkPacked(out, "out", ctx, dense.dtype(), dense.dim(0), dense.dim(1));
        try (InUse u = InUse.of(ctx, dense, out)) {
            Args.noAliasing(1, new String[] {"out", "dense"}, out, dense);
            Native.check(sparse24.s24_compress24(ctx.handle(), dense.dtype().code, dense.dim(0), dense.dim(1),
                    dense.data(), out.layout().code, out.data()), "s24_compress24");
        }
    }

    /** {@code dense} [rows, cols] = {@code packed} with zeros at the dropped positions. */
    public static void decompress24(PackedMatrix packed, Tensor dense) {
        Sparse24 ctx = matrixContext(dense, "dense");
        checkPacked(packed, "packed", ctx, dense.dtype(), dense.dim(0), dense.dim(1));
        try (InUse u = InUse.of(ctx, packed, dense)) {
            Args.noAliasing(1, new String[] {"dense", "packed"}, dense, packed);
            Native.check(sparse24.s24_decompress24(ctx.handle(), dense.dtype().code, dense.dim(0), dense.dim(1),
                    packed.data(), packed.layout().code, dense.data()), "s24_decompress24");
        }
    }

    /**
     * The {@code k} features with the most non-zeros in {@code counts} (ties: lower index first), in ascending
     * index order.
     */
    public static int[] selectDenseFeatures(Sparse24 context, int[] counts, int k) {
        Args.notNull(context, "context");
        Args.notNull(counts, "counts");
        Args.atLeast(counts.length, 1, "counts.length");
        if (k < 0 || k > counts.length) {
            throw new IllegalArgumentException("k must be in [0, " + counts.length + "], got " + k);
        }
        try (ContextArray c = ContextArray.of(context, counts);
             ContextArray idx = ContextArray.allocate(context, 4L * k)) {
            try (InUse u = InUse.of(context)) {
                Native.check(sparse24.s24_select_dense_features(context.handle(), counts.length, c.ints(), k,
                        idx.ints(), (BytePointer) null), "s24_select_dense_features");
            }
            return idx.toInts(k);
        }
    }

    /**
     * As {@link #selectDenseFeatures(Sparse24, int[], int)} on the context's memory, enqueued without a wait.
     *
     * @param counts   INT32 [features]
     * @param denseIdx INT32 [k] (k >= 1): receives the chosen features, ascending
     * @param isDense  null, or UINT8 [features]: receives 1 for chosen features, else 0
     */
    public static void selectDenseFeatures(Tensor counts, Tensor denseIdx, Tensor isDense) {
        Args.notNull(counts, "counts");
        Sparse24 ctx = counts.context();
        Args.tensor(counts, "counts", ctx, DType.INT32, "[features]", Args.ANY);
        long features = counts.dim(0);
        Args.tensor(denseIdx, "denseIdx", ctx, DType.INT32, "[k]", Args.ANY);
        long k = denseIdx.dim(0);
        if (k > features) {
            throw new IllegalArgumentException("denseIdx: k = " + k + " must be <= features = " + features);
        }
        optional(isDense, "isDense", ctx, DType.UINT8, "[features]", features);
        Native.check(sparse24.s24_select_dense_features(ctx.handle(), features, ints(counts), k, ints(denseIdx),
                bytes(isDense)), "s24_select_dense_features");
    }

    /**
     * The backward's feature-wise split of {@code src} [tokens, features]: {@code out} [features, tokens] gets the
     * transpose with tokens in permuted order (column i is token perm[i]), 2:4 along tokens (2 largest |values|
     * per 4, ties: lower position), rows of dense features all zero; {@code denseCols} [tokens, k] gets feature
     * {@code denseIdx[j]} in column j, rows in permuted order. A {@link Layout#ROW} {@code out} has tokens rounded
     * up to a multiple of 4 columns (zero padding); other layouts need tokens % 4 == 0.
     *
     * @param perm      null (identity) or a permutation of [0, tokens)
     * @param denseIdx  the dense features, ascending, distinct, in [0, features)
     * @param denseCols [tokens, denseIdx.length]; null when denseIdx is empty
     * @return {non-zeros on sparse features before the 2:4, non-zeros kept}
     */
    public static long[] sparsify24ColsSplit(PackedMatrix src, int[] perm, int[] denseIdx, PackedMatrix out,
                                             Tensor denseCols) {
        Args.notNull(src, "src");
        src.ensureOpen();
        Sparse24 ctx = src.context();
        long tokens = src.rows();
        long features = src.cols();
        checkPermutation(perm, tokens, "perm");
        Args.notNull(denseIdx, "denseIdx");
        byte[] isDense = new byte[Math.toIntExact(features)];
        for (int j = 0; j < denseIdx.length; j++) {
            if (denseIdx[j] < 0 || denseIdx[j] >= features || (j > 0 && denseIdx[j] <= denseIdx[j - 1])) {
                throw new IllegalArgumentException("denseIdx must be ascending distinct features in [0, " + features
                        + "), got " + denseIdx[j] + " at " + j);
            }
            isDense[denseIdx[j]] = 1;
        }
        long outCols = out != null ? out.layout().splitOutCols(tokens) : tokens;
        checkPacked(out, "out", ctx, src.dtype(), features, outCols);
        if (denseIdx.length > 0 || denseCols != null) {
            Args.tensor(denseCols, "denseCols", ctx, src.dtype(), "[tokens, k]", tokens, denseIdx.length);
        }
        try (ContextArray p = ContextArray.of(ctx, perm);
             ContextArray dense = ContextArray.of(ctx, isDense);
             ContextArray idx = ContextArray.of(ctx, denseIdx);
             ContextArray totals = ContextArray.allocate(ctx, 16)) {
            try (InUse u = InUse.of(ctx, src, out, denseCols)) {
                Args.noAliasing(2, new String[] {"out", "denseCols", "src"}, out, denseCols, src);
                Native.check(sparse24.s24_sparsify24_cols_split(ctx.handle(), src.dtype().code, tokens, features,
                        src.data(), src.layout().code, p == null ? null : p.ints(), dense.bytes(), idx.ints(),
                        denseIdx.length, out.layout().code, out.data(), denseCols == null ? null : denseCols.data(),
                        totals.longs()), "s24_sparsify24_cols_split");
            }
            return totals.toLongs(2);
        }
    }

    /**
     * As {@link #sparsify24ColsSplit(PackedMatrix, int[], int[], PackedMatrix, Tensor)} with the index arrays and
     * the totals in the context's memory, enqueued without a wait. Their contents are not checked: {@code perm}
     * must be a permutation of [0, tokens), {@code denseIdx} ascending distinct features, {@code isDense} 1 exactly
     * at them (as {@link #selectDenseFeatures(Tensor, Tensor, Tensor)} writes them).
     *
     * @param perm     null (identity) or INT32 [tokens]
     * @param isDense  UINT8 [features]
     * @param denseIdx null (no dense features) or INT32 [k]
     * @param totals   null, or INT64 [2]: {non-zeros on sparse features before the 2:4, non-zeros kept}
     */
    public static void sparsify24ColsSplit(PackedMatrix src, Tensor perm, Tensor isDense, Tensor denseIdx,
                                           PackedMatrix out, Tensor denseCols, Tensor totals) {
        Args.notNull(src, "src");
        src.ensureOpen();
        Sparse24 ctx = src.context();
        long tokens = src.rows();
        long features = src.cols();
        optional(perm, "perm", ctx, DType.INT32, "[tokens]", tokens);
        Args.tensor(isDense, "isDense", ctx, DType.UINT8, "[features]", features);
        optional(denseIdx, "denseIdx", ctx, DType.INT32, "[k]", Args.ANY);
        long k = denseIdx == null ? 0 : denseIdx.dim(0);
        if (k > features) {
            throw new IllegalArgumentException("denseIdx: k = " + k + " must be <= features = " + features);
        }
        long outCols = out != null && out.layout() == Layout.ROW ? (tokens + 3) / 4 * 4 : tokens;
        checkPacked(out, "out", ctx, src.dtype(), features, outCols);
        if (k > 0 || denseCols != null) {
            Args.tensor(denseCols, "denseCols", ctx, src.dtype(), "[tokens, k]", tokens, k);
        }
        optional(totals, "totals", ctx, DType.INT64, "[2]", 2);
        Native.check(sparse24.s24_sparsify24_cols_split(ctx.handle(), src.dtype().code, tokens, features, src.data(),
                src.layout().code, ints(perm), bytes(isDense), ints(denseIdx), k, out.layout().code, out.data(),
                denseCols == null ? null : denseCols.data(), longs(totals)), "s24_sparsify24_cols_split");
    }

    /**
     * {@code out}[i, :] = {@code in}[perm[i], :] with {@code perm} null (a plain copy) or an INT32 [rows] permutation
     * in the context's memory (its contents are not checked), enqueued without a wait.
     */
    public static void gatherRows(Tensor in, Tensor perm, Tensor out) {
        Sparse24 ctx = matrixContext(in, "in");
        Args.tensor(out, "out", ctx, in.dtype(), "[rows, cols]", in.dim(0), in.dim(1));
        optional(perm, "perm", ctx, DType.INT32, "[rows]", in.dim(0));
        Native.check(sparse24.s24_gather_rows(ctx.handle(), in.dtype().code, in.dim(0), in.dim(1), in.data(),
                ints(perm), out.data()), "s24_gather_rows");
    }

    /** {@code out}[i, :] = {@code in}[perm[i], :] ({@code perm} null: a plain copy). */
    public static void gatherRows(Tensor in, int[] perm, Tensor out) {
        Sparse24 ctx = matrixContext(in, "in");
        Args.tensor(out, "out", ctx, in.dtype(), "[rows, cols]", in.dim(0), in.dim(1));
        checkPermutation(perm, in.dim(0), "perm");
        try (ContextArray p = ContextArray.of(ctx, perm)) {
            try (InUse u = InUse.of(ctx, in, out)) {
                Args.noAliasing(1, new String[] {"out", "in"}, out, in);
                Native.check(sparse24.s24_gather_rows(ctx.handle(), in.dtype().code, in.dim(0), in.dim(1),
                        in.data(), p == null ? null : p.ints(), out.data()), "s24_gather_rows");
            }
        }
    }

    /**
     * {@code c} [m, n] = {@code a} [m, k] (2:4 along k) times {@code b}: b is [n, k] with {@code bTransposed}
     * (c = a b^T), else [k, n]. fp32 accumulation; sparse tensor cores for a {@link Layout#CUSPARSELT} a on CUDA.
     */
    public static void spmm(PackedMatrix a, Tensor b, boolean bTransposed, Tensor c) {
        spmm(a, b, bTransposed, false, c);
    }

    /**
     * As {@link #spmm(PackedMatrix, Tensor, boolean, Tensor)}; with {@code cTransposed} the product is stored
     * transposed: c is [n, m].
     */
    public static void spmm(PackedMatrix a, Tensor b, boolean bTransposed, boolean cTransposed, Tensor c) {
        Args.notNull(a, "a");
        a.ensureOpen();
        Sparse24 ctx = a.context();
        long m = a.rows();
        long k = a.cols();
        Args.tensor(b, "b", ctx, a.dtype(), bTransposed ? "[n, k]" : "[k, n]", bTransposed ? Args.ANY : k,
                bTransposed ? k : Args.ANY);
        long n = b.dim(bTransposed ? 0 : 1);
        if (cTransposed) {
            Args.tensor(c, "c", ctx, a.dtype(), "[n, m]", n, m);
        } else {
            Args.tensor(c, "c", ctx, a.dtype(), "[m, n]", m, n);
        }
        try (InUse u = InUse.of(ctx, a, b, c)) {
            Args.noAliasing(1, new String[] {"c", "a", "b"}, c, a, b);
            Native.check(sparse24.s24_spmm(ctx.handle(), a.dtype().code, m, n, k, a.data(), a.layout().code,
                    b.data(), bTransposed ? 1 : 0, cTransposed ? 1 : 0, c.data()), "s24_spmm");
        }
    }

    /**
     * {@code c} [m, n] = op(a) op(b): a is [m, k] or, with {@code aTransposed}, [k, m]; b is [k, n] or, with
     * {@code bTransposed}, [n, k]. fp32 accumulation.
     */
    public static void gemm(Tensor a, boolean aTransposed, Tensor b, boolean bTransposed, Tensor c) {
        Sparse24 ctx = matrixContext(a, "a");
        long m = a.dim(aTransposed ? 1 : 0);
        long k = a.dim(aTransposed ? 0 : 1);
        Args.tensor(b, "b", ctx, a.dtype(), bTransposed ? "[n, k]" : "[k, n]", bTransposed ? Args.ANY : k,
                bTransposed ? k : Args.ANY);
        long n = b.dim(bTransposed ? 0 : 1);
        Args.tensor(c, "c", ctx, a.dtype(), "[m, n]", m, n);
        try (InUse u = InUse.of(ctx, a, b, c)) {
            Args.noAliasing(1, new String[] {"c", "a", "b"}, c, a, b);
            Native.check(sparse24.s24_gemm(ctx.handle(), a.dtype().code, m, n, k, a.data(), aTransposed ? 1 : 0,
                    b.data(), bTransposed ? 1 : 0, c.data()), "s24_gemm");
        }
    }

    /**
     * The token permutation the FFN uses at {@code step} for {@code seed}: perm[i] is the original token at
     * permuted position i (the same on every backend).
     */
    public static int[] tokenPermutation(long seed, long step, int tokens) {
        Args.atLeast(step, 0, "step");
        Args.atLeast(tokens, 1, "tokens");
        long bytes = 4L * tokens;
        long room = Runtime.getRuntime().maxMemory() - (Runtime.getRuntime().totalMemory()
                - Runtime.getRuntime().freeMemory());
        if (bytes > room) {
            throw new IllegalArgumentException("tokens = " + tokens + ": the permutation needs " + bytes
                    + " bytes of Java heap, " + room + " are available");
        }
        int[] perm = new int[tokens];
        Native.check(sparse24.s24_token_permutation(seed, step, tokens, perm), "s24_token_permutation");
        return perm;
    }

    /** Checks a tensor argument that may be null: if present, of {@code dtype} and {@code shape} in {@code ctx}. */
    private static void optional(Tensor t, String arg, Sparse24 ctx, DType dtype, String dims, long... shape) {
        if (t != null) {
            Args.tensor(t, arg, ctx, dtype, dims, shape);
        }
    }

    private static IntPointer ints(Tensor t) {
        return t == null ? null : new IntPointer(t.data());
    }

    private static LongPointer longs(Tensor t) {
        return t == null ? null : new LongPointer(t.data());
    }

    private static BytePointer bytes(Tensor t) {
        return t == null ? null : new BytePointer(t.data());
    }

    /** Checks that {@code t} is an open rank-2 tensor and returns its context. */
    private static Sparse24 matrixContext(Tensor t, String arg) {
        Args.notNull(t, arg);
        Args.tensor(t, arg, t.context(), t.dtype(), "[rows, cols]", Args.ANY, Args.ANY);
        t.context().handle();
        return t.context();
    }

    private static void checkPacked(PackedMatrix p, String arg, Sparse24 ctx, DType dtype, long rows, long cols) {
        Args.notNull(p, arg);
        if (p.isClosed()) {
            throw new IllegalStateException(arg + ": " + p.describe() + " is closed");
        }
        if (p.context() != ctx || p.dtype() != dtype || p.rows() != rows || p.cols() != cols) {
            throw new IllegalArgumentException(arg + ": expected a packed " + dtype + " [" + rows + ", " + cols
                    + "] of the same context, got " + p.describe() + (p.context() != ctx ? " of another context" : ""));
        }
    }

    private static void checkPermutation(int[] perm, long n, String arg) {
        if (perm == null) {
            return;
        }
        if (perm.length != n) {
            throw new IllegalArgumentException(arg + ": expected null or a permutation of " + n + " indices, got "
                    + perm.length);
        }
        boolean[] seen = new boolean[perm.length];
        for (int i = 0; i < perm.length; i++) {
            if (perm[i] < 0 || perm[i] >= n || seen[perm[i]]) {
                throw new IllegalArgumentException(arg + ": not a permutation of [0, " + n + "): " + perm[i]
                        + " at position " + i);
            }
            seen[perm[i]] = true;
        }
    }
}
