package org.sparse24;

import java.util.Arrays;

/** Argument checks shared by the API classes; messages name the argument, the expectation and what was given. */
final class Args {
    /** Marks an extent that any value >= 1 satisfies. */
    static final long ANY = -1;

    private Args() {
    }

    /**
     * Checks that {@code t} is an open tensor of {@code context} with {@code dtype} and {@code shape}
     * ({@link #ANY} matches any extent); {@code dims} names the extents, e.g. {@code "[T, d]"}.
     */
    static void tensor(Tensor t, String arg, Sparse24 context, DType dtype, String dims, long... shape) {
        if (t == null) {
            throw new IllegalArgumentException(arg + " must not be null: expected a " + expected(dtype, dims, shape));
        }
        if (t.isClosed()) {
            throw new IllegalStateException(arg + ": " + t.describe() + " is closed");
        }
        if (t.context() != context) {
            throw new IllegalArgumentException(arg + ": " + t.describe() + " belongs to another context ("
                    + t.context().backend() + "), expected one of this " + context.backend() + " context");
        }
        if (t.dtype() != dtype) {
            throw new IllegalArgumentException(arg + ": expected a " + expected(dtype, dims, shape) + ", got dtype "
                    + t.dtype());
        }
        boolean ok = t.rank() == shape.length;
        for (int i = 0; ok && i < shape.length; i++) {
            ok = shape[i] == ANY || shape[i] == t.dim(i);
        }
        if (!ok) {
            throw new IllegalArgumentException(arg + ": expected a " + expected(dtype, dims, shape) + ", got shape "
                    + Arrays.toString(t.shape()));
        }
    }

    /**
     * Checks that no two of {@code tensors} (tensors or packed matrices, nulls skipped) share memory; {@code names} names them in the same
     * order. The first {@code outputs} are written by the call: each must be disjoint from every other tensor
     * (inputs may share memory with each other).
     */
    static void noAliasing(int outputs, String[] names, Resource... tensors) {
        for (int i = 0; i < outputs; i++) {
            for (int j = 0; j < tensors.length; j++) {
                if (i != j && tensors[i] != null && tensors[j] != null && overlap(tensors[i], tensors[j])) {
                    throw new IllegalArgumentException(names[i] + ": " + tensors[i].describe() + " overlaps "
                            + names[j] + " (" + tensors[j].describe() + ") in memory; an output must not share "
                            + "memory with an input or another output");
                }
            }
        }
    }

    private static boolean overlap(Resource a, Resource b) {
        long a0 = a.memoryAddress(), b0 = b.memoryAddress();
        return a.memoryBytes() > 0 && b.memoryBytes() > 0 && a0 < b0 + b.memoryBytes() && b0 < a0 + a.memoryBytes();
    }

    /** Checks that {@code value >= min}. */
    static void atLeast(long value, long min, String arg) {
        if (value < min) {
            throw new IllegalArgumentException(arg + " must be >= " + min + ", got " + value);
        }
    }

    static void notNull(Object value, String arg) {
        if (value == null) {
            throw new IllegalArgumentException(arg + " must not be null");
        }
    }

    /** What {@link #tensor} expects, for messages (built only when one is thrown). */
    private static String expected(DType dtype, String dims, long[] shape) {
        return dtype + " tensor of shape " + dims + " = " + render(shape);
    }

    private static String render(long[] shape) {
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; i < shape.length; i++) {
            s.append(i == 0 ? "" : ", ").append(shape[i] == ANY ? "*" : Long.toString(shape[i]));
        }
        return s.append(']').toString();
    }
}
