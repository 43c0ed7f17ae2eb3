package org.sparse24;

import org.bytedeco.javacpp.Pointer;

/**
 * A 2:4-sparse {@code [rows, cols]} matrix in a packed {@link Layout} (values, then metadata, in one buffer of
 * the context's memory), as the building blocks of {@link Sparse24Ops} read and write it.
 */
public final class PackedMatrix extends Resource {
    private final Layout layout;
    private final DType dtype;
    private final long rows;
    private final long cols;
    private final long bytes;
    private final Pointer data;

    private PackedMatrix(Sparse24 context, Layout layout, DType dtype, long rows, long cols, long bytes,
                         Pointer data) {
        super(context);
        this.layout = layout;
        this.dtype = dtype;
        this.rows = rows;
        this.cols = cols;
        this.bytes = bytes;
        this.data = data;
        track(freeing(context, data), bytes);
    }

    /** A new packed matrix; contents undefined. Size: {@link Sparse24Ops#packedSize}. */
    public static PackedMatrix allocate(Sparse24 context, Layout layout, DType dtype, long rows, long cols) {
        Args.notNull(context, "context");
        Args.notNull(layout, "layout");
        Args.notNull(dtype, "dtype");
        DType.requireFloating(dtype, "dtype");
        long bytes = Sparse24Ops.packedSize(layout, dtype, rows, cols);
        return new PackedMatrix(context, layout, dtype, rows, cols, bytes, context.malloc(bytes));
    }

    /** How the matrix is stored. */
    public Layout layout() {
        return layout;
    }

    /** The type of the stored values. */
    public DType dtype() {
        return dtype;
    }

    /** Rows of the logical [rows, cols] matrix. */
    public long rows() {
        return rows;
    }

    /** Columns of the logical matrix (the 2:4 dimension). */
    public long cols() {
        return cols;
    }

    /** Bytes of values plus metadata. */
    public long byteSize() {
        return bytes;
    }

    /** The buffer, in the context's memory space. */
    public Pointer data() {
        ensureOpen();
        return data;
    }

    @Override
    long memoryAddress() {
        return data.address();
    }

    @Override
    long memoryBytes() {
        return bytes;
    }

    @Override
    void release() {
        context().free(data);
    }

    @Override
    String describe() {
        return "packed " + layout + " " + dtype + " [" + rows + ", " + cols + "]";
    }

    @Override
    public String toString() {
        return describe() + (isClosed() ? " (closed)" : "");
    }
}
