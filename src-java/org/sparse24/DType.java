package org.sparse24;

import org.sparse24.binding.global.sparse24;

/** Storage type of tensor elements. Arithmetic always accumulates in fp32. */
public enum DType {
    /** IEEE binary32; CPU backend only. */
    FP32(sparse24.S24_FP32, 4),
    /** bfloat16: 8 exponent bits, 7 mantissa bits. */
    BF16(sparse24.S24_BF16, 2),
    /** IEEE binary16: 5 exponent bits, 10 mantissa bits. */
    FP16(sparse24.S24_FP16, 2);

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

    /** The value this dtype stores for {@code value} (round to nearest, ties to even; overflow gives infinity). */
    public float round(float value) {
        switch (this) {
            case BF16:
                return HalfFloats.bf16ToFloat(HalfFloats.floatToBf16(value));
            case FP16:
                return HalfFloats.fp16ToFloat(HalfFloats.floatToFp16(value));
            default:
                return value;
        }
    }
}
