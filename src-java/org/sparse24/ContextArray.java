package org.sparse24;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Pointer;
import org.sparse24.binding.global.sparse24;

/** A temporary int32 / int64 / uint8 array in a context's memory, for the index and count arguments of the ops. */
final class ContextArray implements AutoCloseable {
    private final Sparse24 context;
    private final Pointer data;

    private ContextArray(Sparse24 context, long bytes) {
        this.context = context;
        this.data = context.malloc(Math.max(bytes, 1));
    }

    /** Uninitialized room for {@code bytes} bytes. */
    static ContextArray allocate(Sparse24 context, long bytes) {
        return new ContextArray(context, bytes);
    }

    /** A copy of {@code values} (null: no array). */
    static ContextArray of(Sparse24 context, int[] values) {
        if (values == null) {
            return null;
        }
        ContextArray a = new ContextArray(context, 4L * values.length);
        try (IntPointer host = new IntPointer(values)) {
            context.copy(a.data, host, 4L * values.length, sparse24.S24_COPY_HOST_TO_CONTEXT);
        }
        return a;
    }

    /** A copy of {@code values}. */
    static ContextArray of(Sparse24 context, byte[] values) {
        ContextArray a = new ContextArray(context, values.length);
        try (BytePointer host = new BytePointer(values)) {
            context.copy(a.data, host, values.length, sparse24.S24_COPY_HOST_TO_CONTEXT);
        }
        return a;
    }

    IntPointer ints() {
        return new IntPointer(data);
    }

    LongPointer longs() {
        return new LongPointer(data);
    }

    BytePointer bytes() {
        return new BytePointer(data);
    }

    /** The first {@code n} int32 values. */
    int[] toInts(int n) {
        int[] out = new int[n];
        try (IntPointer host = new IntPointer(Math.max(n, 1))) {
            context.copy(host, data, 4L * n, sparse24.S24_COPY_CONTEXT_TO_HOST);
            host.get(out);
        }
        return out;
    }

    /** The first {@code n} int64 values. */
    long[] toLongs(int n) {
        long[] out = new long[n];
        try (LongPointer host = new LongPointer(Math.max(n, 1))) {
            context.copy(host, data, 8L * n, sparse24.S24_COPY_CONTEXT_TO_HOST);
            host.get(out);
        }
        return out;
    }

    @Override
    public void close() {
        context.free(data);
    }
}
