package org.sparse24;

import org.sparse24.binding.global.sparse24;

/**
 * Storage type of tensor elements. The floating types hold matrices (arithmetic always accumulates in fp32); the
 * integer types hold the index, count and statistics arrays of {@link Sparse24Ops} in the context's memory.
 */
public enum DType {
    /** IEEE binary32; CPU backend only. */
    FP32(sparse24.S24_FP32, 4),
    /** bfloat16: 8 exponent bits, 7 mantissa bits. */
    BF16(sparse24.S24_BF16, 2),
    /** IEEE binary16: 5 exponent bits, 10 mantissa bits. */
    FP16(sparse24.S24_FP16, 2),
    /** 32-bit signed integers (indices, permutations, counts). */
    INT32(-1, 4),
    /** 64-bit signed integers (totals). */
    INT64(-1, 8),
    /** Unsigned bytes (flags). */
    UINT8(-1, 1);

    /** The native {@code s24_dtype}; -1 for the integer types, which no native matrix op takes. */
    final int code;
    private final int byteSize;

    DType(int code, int byteSize) {
        this.code = code;
        this.byteSize = byteSize;
    }

    /** Bytes per element. */
    public int byteSize() {
        return byteSize;
    }

    /** Whether this is a floating type (FP32, BF16, FP16): the types of matrices. */
    public boolean isFloating() {
        return code >= 0;
    }

    /** The value this dtype stores for {@code value} (round to nearest, ties to even; overflow gives infinity). */
    public float round(float value) {
        switch (this) {
            case BF16:
                return HalfFloats.bf16ToFloat(HalfFloats.floatToBf16(value));
            case FP16:
                return HalfFloats.fp16ToFloat(HalfFloats.floatToFp16(value));
            case FP32:
                return value;
            default:
                throw new IllegalArgumentException(this + " is not a floating type");
        }
    }

    /** Throws {@link IllegalArgumentException} naming {@code arg} unless {@code dtype} is a floating type. */
    static void requireFloating(DType dtype, String arg) {
        if (dtype == null || !dtype.isFloating()) {
            throw new IllegalArgumentException(arg + ": expected a floating dtype (BF16, FP16 or FP32), got " + dtype);
        }
    }
}
