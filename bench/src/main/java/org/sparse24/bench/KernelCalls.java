package org.sparse24.bench;

import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Pointer;
import org.sparse24.DType;
import org.sparse24.Layout;
import org.sparse24.PackedMatrix;
import org.sparse24.Sparse24;
import org.sparse24.Sparse24Exception;
import org.sparse24.Tensor;
import org.sparse24.binding.s24_context;
import org.sparse24.binding.global.sparse24;

/**
 * The two sparsify kernels called through the raw JavaCPP binding, with their count, permutation and index
 * buffers allocated and filled once, so that events time the kernel alone. ({@code Sparse24Ops} allocates these
 * buffers, copies them in and reads the totals back on every call: host work and synchronizations that the
 * events around it time too.) The context handle is package-private in {@code org.sparse24}; it is read by
 * reflection, which works on the class path.
 */
final class KernelCalls implements AutoCloseable {
    private final Sparse24 ctx;
    private final s24_context handle;
    private final List<Tensor> buffers = new ArrayList<>();
    private final Tensor counts;
    private final Tensor totals;
    private final Tensor perm;
    private final Tensor isDense;
    private final Tensor denseIdx;
    private final int k;

    /**
     * @param features f, the columns of the row-wise sparsified matrix
     * @param perm     the token permutation for the split kernel
     * @param denseIdx its dense features, ascending
     */
    KernelCalls(Sparse24 ctx, long features, int[] perm, int[] denseIdx) {
        this.ctx = ctx;
        this.handle = handleOf(ctx);
        this.k = denseIdx.length;
        try {
            counts = words(features);
            totals = words(4);
            this.perm = words(perm.length);
            copyIn(this.perm, new IntPointer(perm), 4L * perm.length);
            byte[] dense = new byte[Math.toIntExact(features)];
            for (int j : denseIdx) {
                dense[j] = 1;
            }
            isDense = words((features + 3) / 4);
            copyIn(isDense, new BytePointer(dense), dense.length);
            this.denseIdx = words(Math.max(k, 1));
            if (k > 0) {
                copyIn(this.denseIdx, new IntPointer(denseIdx), 4L * k);
            }
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** {@code s24_sparsify24_rows} of h into out, with per-column counts and totals (as the FFN runs it). */
    void sparsifyRows(Tensor h, PackedMatrix out) {
        check(sparse24.s24_sparsify24_rows(handle, code(h.dtype()), h.dim(0), h.dim(1), h.data(), 0,
                code(out.layout()), out.data(), new IntPointer(counts.data()), new LongPointer(totals.data())),
                "s24_sparsify24_rows");
    }

    /** {@code s24_sparsify24_cols_split} of src [T, f] into out [f, T] and denseCols [T, k], with the permutation. */
    void colsSplit(PackedMatrix src, PackedMatrix out, Tensor denseCols) {
        check(sparse24.s24_sparsify24_cols_split(handle, code(src.dtype()), src.rows(), src.cols(), src.data(),
                code(src.layout()), new IntPointer(perm.data()), new BytePointer(isDense.data()),
                new IntPointer(denseIdx.data()), k, code(out.layout()), out.data(),
                denseCols == null ? null : denseCols.data(), new LongPointer(totals.data())),
                "s24_sparsify24_cols_split");
    }

    @Override
    public void close() {
        for (Tensor t : buffers) {
            t.close();
        }
        buffers.clear();
    }

    /** Uninitialized room for {@code n} 32-bit words in the context's memory (a tensor frees it). */
    private Tensor words(long n) {
        Tensor t = Tensor.allocate(ctx, DType.FP32, n);
        buffers.add(t);
        return t;
    }

    private void copyIn(Tensor dst, Pointer host, long bytes) {
        try (host) {
            check(sparse24.s24_memcpy(handle, dst.data(), host, bytes, sparse24.S24_COPY_HOST_TO_CONTEXT),
                    "s24_memcpy");
        }
    }

    private static s24_context handleOf(Sparse24 ctx) {
        try {
            Method m = Sparse24.class.getDeclaredMethod("handle");
            m.setAccessible(true);
            return (s24_context) m.invoke(ctx);
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new IllegalStateException("cannot reach the native context handle for kernel-only timing: " + e, e);
        }
    }

    private static int code(DType dtype) {
        return switch (dtype) {
            case FP32 -> sparse24.S24_FP32;
            case BF16 -> sparse24.S24_BF16;
            case FP16 -> sparse24.S24_FP16;
        };
    }

    private static int code(Layout layout) {
        return switch (layout) {
            case DENSE -> sparse24.S24_LAYOUT_DENSE;
            case ROW -> sparse24.S24_LAYOUT_ROW;
            case CUSPARSELT -> sparse24.S24_LAYOUT_CUSPARSELT;
        };
    }

    private static void check(int status, String call) {
        if (status != sparse24.S24_OK) {
            BytePointer error = sparse24.s24_last_error();
            throw new Sparse24Exception(status, sparse24.s24_status_name(status).getString(),
                    error == null || error.isNull() || error.getString().isEmpty() ? call + " failed" : error.getString());
        }
    }
}
