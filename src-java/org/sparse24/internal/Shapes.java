package org.sparse24.internal;

import java.util.Arrays;

/** Internal: the tensor shape check shared by {@code org.sparse24.Tensor} and {@code org.sparse24.torch}. Not API. */
public final class Shapes {
    private Shapes() {
    }

    /**
     * A copy of {@code shape} after checking it has at least one dimension and every size is >= 1
     * ({@link IllegalArgumentException} otherwise).
     */
    public static long[] checked(long... shape) {
        if (shape == null || shape.length == 0) {
            throw new IllegalArgumentException("shape must have at least one dimension");
        }
        for (int i = 0; i < shape.length; i++) {
            if (shape[i] < 1) {
                throw new IllegalArgumentException("shape[" + i + "] must be >= 1, got " + shape[i] + " in "
                        + Arrays.toString(shape));
            }
        }
        return shape.clone();
    }
}
