package org.sparse24;

import java.util.Arrays;
import java.util.function.BiConsumer;
import java.util.function.IntFunction;
import java.util.function.LongFunction;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.ShortPointer;
import org.sparse24.binding.global.sparse24;
import org.sparse24.internal.Shapes;

/**
 * A dense row-major array in a context's memory (host memory for the CPU backend, device memory for CUDA),
 * with a shape and a {@link DType}. An owned tensor frees its buffer on {@link #close()}; a borrowed one
 * ({@link #borrow}) only wraps memory that someone else frees. Using a closed tensor throws
 * {@link IllegalStateException} naming it; {@code close()} is idempotent.
 */
public final class Tensor extends Resource {
    private final DType dtype;
    private final long[] shape;
    private final long elements;
    private final Pointer data;
    private final boolean owned;
    private volatile String name;

    private Tensor(Sparse24 context, Pointer data, boolean owned, DType dtype, long[] shape, long elements) {
        super(context);
        this.dtype = dtype;
        this.shape = shape;
        this.elements = elements;
        this.data = data;
        this.owned = owned;
        track(owned ? freeing(context, data) : NOTHING, owned ? elements * dtype.byteSize() : 0);
    }

    /** A new tensor of {@code shape} (every extent >= 1); its contents are undefined. */
    public static Tensor allocate(Sparse24 context, DType dtype, long... shape) {
        requireContext(context);
        requireDType(dtype);
        long[] s = Shapes.checked(shape);
        long elements = elementCount(s);
        long bytes = byteCount(elements, dtype, s);
        Pointer data = context.malloc(bytes);
        try {
            return new Tensor(context, data, true, dtype, s, elements);
        } catch (RuntimeException e) {  // the context began closing meanwhile
            context.free(data);
            throw e;
        }
    }

    /**
     * A new tensor holding {@code values} (row-major, {@code values.length} = product of {@code shape}),
     * converted on the host to {@code dtype} with round-to-nearest-even.
     */
    public static Tensor fromFloats(Sparse24 context, DType dtype, float[] values, long... shape) {
        if (values == null) {
            throw new IllegalArgumentException("values must not be null");
        }
        Tensor t = allocate(context, dtype, shape);
        try {
            t.copyFrom(values);
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        return t;
    }

    /**
     * Wraps memory owned by someone else (e.g. a LibTorch tensor's data pointer): it must hold at least
     * product(shape) elements of {@code dtype} in the context's memory space and outlive this tensor.
     * {@link #close()} only marks the wrapper closed.
     */
    public static Tensor borrow(Sparse24 context, Pointer data, DType dtype, long... shape) {
        requireContext(context);
        requireDType(dtype);
        if (data == null || data.isNull()) {
            throw new IllegalArgumentException("data must be a non-null pointer into the context's memory");
        }
        long[] s = Shapes.checked(shape);
        long elements = elementCount(s);
        byteCount(elements, dtype, s);
        return new Tensor(context, new Pointer(data), false, dtype, s, elements);
    }

    /** Sets the name used in messages (e.g. the argument or variable it holds) and returns this tensor. */
    public Tensor named(String name) {
        this.name = name;
        return this;
    }

    /** The name given by {@link #named}, or {@code null}. */
    public String name() {
        return name;
    }

    /** The element type. */
    public DType dtype() {
        return dtype;
    }

    /** A copy of the shape. */
    public long[] shape() {
        return shape.clone();
    }

    /** Extent of dimension {@code dim}. */
    public long dim(int dim) {
        return shape[dim];
    }

    /** The number of dimensions. */
    public int rank() {
        return shape.length;
    }

    /** The product of the shape. */
    public long elementCount() {
        return elements;
    }

    /** Bytes of the buffer: elements times the dtype size. */
    public long byteSize() {
        return elements * dtype.byteSize();
    }

    /** Whether {@link #close()} frees the memory (false for {@link #borrow borrowed} tensors). */
    public boolean isOwned() {
        return owned;
    }

    /** The data pointer, in the context's memory space. */
    public Pointer data() {
        ensureOpen();
        return data;
    }

    /** Overwrites the tensor with {@code values} converted to the dtype (round to nearest even). */
    public void copyFrom(float[] values) {
        ensureOpen();
        DType.requireFloating(dtype, describe());
        if (values == null || values.length != elements) {
            throw new IllegalArgumentException("values: expected " + elements + " floats for " + describe()
                    + ", got " + (values == null ? "null" : values.length));
        }
        if (dtype == DType.FP32) {
            try (FloatPointer host = new FloatPointer(values); InUse u = InUse.of(context(), this)) {
                context().copy(data, host, byteSize(), sparse24.S24_COPY_HOST_TO_CONTEXT);
            }
            return;
        }
        short[] bits = new short[values.length];
        if (dtype == DType.BF16) {
            for (int i = 0; i < bits.length; i++) {
                bits[i] = HalfFloats.floatToBf16(values[i]);
            }
        } else {
            for (int i = 0; i < bits.length; i++) {
                bits[i] = HalfFloats.floatToFp16(values[i]);
            }
        }
        try (ShortPointer host = new ShortPointer(bits); InUse u = InUse.of(context(), this)) {
            context().copy(data, host, byteSize(), sparse24.S24_COPY_HOST_TO_CONTEXT);
        }
    }

    /** The values as floats (exact for every dtype); waits for pending work on the context's stream. */
    public float[] toFloats() {
        ensureOpen();
        DType.requireFloating(dtype, describe());
        if (elements > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException(describe() + " has too many elements for a float[]");
        }
        float[] values = new float[(int) elements];
        if (dtype == DType.FP32) {
            try (FloatPointer host = new FloatPointer(elements); InUse u = InUse.of(context(), this)) {
                context().copy(host, data, byteSize(), sparse24.S24_COPY_CONTEXT_TO_HOST);
                host.get(values);
            }
            return values;
        }
        short[] bits = new short[values.length];
        try (ShortPointer host = new ShortPointer(elements); InUse u = InUse.of(context(), this)) {
            context().copy(host, data, byteSize(), sparse24.S24_COPY_CONTEXT_TO_HOST);
            host.get(bits);
        }
        for (int i = 0; i < bits.length; i++) {
            values[i] = dtype == DType.BF16 ? HalfFloats.bf16ToFloat(bits[i]) : HalfFloats.fp16ToFloat(bits[i]);
        }
        return values;
    }

    // ---- integer tensors (INT32, INT64, UINT8): index, count and statistics arrays of Sparse24Ops ----

    /** A new INT32 tensor holding {@code values} ({@code values.length} = product of {@code shape}). */
    public static Tensor fromInts(Sparse24 context, int[] values, long... shape) {
        if (values == null) {
            throw new IllegalArgumentException("values must not be null");
        }
        Tensor t = allocate(context, DType.INT32, shape);
        try {
            t.copyFrom(values);
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        return t;
    }

    /** Overwrites an INT32 tensor with {@code values}. */
    public void copyFrom(int[] values) {
        checkIntegers(DType.INT32, values == null ? -1 : values.length);
        try (IntPointer host = new IntPointer(values)) {
            context().copy(data, host, byteSize(), sparse24.S24_COPY_HOST_TO_CONTEXT);
        }
    }

    /** Overwrites a UINT8 tensor with {@code values}. */
    public void copyFrom(byte[] values) {
        checkIntegers(DType.UINT8, values == null ? -1 : values.length);
        try (BytePointer host = new BytePointer(values)) {
            context().copy(data, host, byteSize(), sparse24.S24_COPY_HOST_TO_CONTEXT);
        }
    }

    /** The values of an INT32 tensor; waits for pending work on the context's stream. */
    public int[] toInts() {
        return toArray(DType.INT32, IntPointer::new, int[]::new, IntPointer::get);
    }

    /** The values of an INT64 tensor; waits for pending work on the context's stream. */
    public long[] toLongs() {
        return toArray(DType.INT64, LongPointer::new, long[]::new, LongPointer::get);
    }

    /** The values of a UINT8 tensor (as Java's signed bytes); waits for pending work on the context's stream. */
    public byte[] toBytes() {
        return toArray(DType.UINT8, BytePointer::new, byte[]::new, BytePointer::get);
    }

    /** The values of an integer tensor of {@code want}, through a host pointer of the array's element type. */
    private <P extends Pointer, A> A toArray(DType want, LongFunction<P> newHost, IntFunction<A> newArray,
                                             BiConsumer<P, A> get) {
        checkIntegers(want, elements);
        A out = newArray.apply((int) elements);
        try (P host = newHost.apply(elements)) {
            context().copy(host, data, byteSize(), sparse24.S24_COPY_CONTEXT_TO_HOST);
            get.accept(host, out);
        }
        return out;
    }

    /** Checks the tensor is open, of {@code want}, and has {@code length} elements (the host array's length). */
    private void checkIntegers(DType want, long length) {
        ensureOpen();
        if (dtype != want) {
            throw new IllegalArgumentException(describe() + ": expected dtype " + want + ", got " + dtype);
        }
        if (length != elements || elements > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("values: expected " + elements + " elements for " + describe()
                    + ", got " + (length < 0 ? "null" : Long.toString(length)));
        }
    }

    /**
     * Sets every byte to {@code byteValue} (e.g. 0xFF makes every 16-bit or 32-bit element a NaN), so that
     * elements an operation should have written but did not stand out.
     */
    public void poison(int byteValue) {
        try (InUse u = InUse.of(context(), this)) {
            Native.check(sparse24.s24_memset(context().handle(), data, byteValue, byteSize()), "s24_memset");
        }
    }

    @Override
    long memoryAddress() {
        return data.address();
    }

    @Override
    long memoryBytes() {
        return byteSize();
    }

    @Override
    void release() {
        if (owned) {
            context().free(data);
        }
    }

    @Override
    String describe() {
        return "tensor " + (name == null ? "" : "'" + name + "' ") + dtype + " " + Arrays.toString(shape);
    }

    @Override
    public String toString() {
        return describe() + " on " + context().backend() + (isClosed() ? " (closed)" : "");
    }

    private static void requireContext(Sparse24 context) {
        if (context == null) {
            throw new IllegalArgumentException("context must not be null");
        }
        context.handle();
    }

    private static void requireDType(DType dtype) {
        if (dtype == null) {
            throw new IllegalArgumentException("dtype must not be null (BF16, FP16 or FP32)");
        }
    }

    /** The product of {@code shape}; {@link IllegalArgumentException} naming the shape if it overflows a long. */
    static long elementCount(long[] shape) {
        long n = 1;
        for (long extent : shape) {
            if (n > Long.MAX_VALUE / extent) {
                throw new IllegalArgumentException("shape " + Arrays.toString(shape)
                        + ": the element count exceeds " + Long.MAX_VALUE);
            }
            n *= extent;
        }
        return n;
    }

    /** Bytes of {@code elements} of {@code dtype}; {@link IllegalArgumentException} naming the shape if it overflows. */
    private static long byteCount(long elements, DType dtype, long[] shape) {
        if (elements > Long.MAX_VALUE / dtype.byteSize()) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " of " + dtype + ": " + elements
                    + " elements * " + dtype.byteSize() + " bytes exceeds " + Long.MAX_VALUE + " bytes");
        }
        return elements * dtype.byteSize();
    }
}
