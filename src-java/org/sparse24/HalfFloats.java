package org.sparse24;

/**
 * Conversions between {@code float} and the 16-bit storage formats, bit-exact with the native library:
 * float to 16 bits rounds to nearest, ties to even; overflow gives infinity; NaN stays a (quiet) NaN.
 * 16 bits to float is exact.
 */
final class HalfFloats {
    private HalfFloats() {
    }

    static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xffff) << 16);
    }

    static short floatToBf16(float value) {
        int u = Float.floatToRawIntBits(value);
        if ((u & 0x7fffffff) > 0x7f800000) {
            return (short) ((u >>> 16) | 0x0040); // NaN: keep it quiet
        }
        // Round to nearest even on the 16 dropped bits; a carry into the exponent (up to infinity) is right.
        int bias = 0x7fff + ((u >>> 16) & 1);
        return (short) ((u + bias) >>> 16);
    }

    static float fp16ToFloat(short bits) {
        int h = bits & 0xffff;
        int sign = (h & 0x8000) << 16;
        int exp = (h >>> 10) & 0x1f;
        int mant = h & 0x3ff;
        if (exp == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13)); // inf / NaN
        }
        if (exp != 0) {
            return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
        }
        float magnitude = mant * 0x1p-24f; // zero or subnormal, exact
        return sign != 0 ? -magnitude : magnitude;
    }

    static short floatToFp16(float value) {
        int u = Float.floatToRawIntBits(value);
        int sign = (u >>> 16) & 0x8000;
        int x = u & 0x7fffffff;
        if (x > 0x7f800000) {
            return (short) (sign | 0x7e00 | ((x >>> 13) & 0x3ff)); // NaN, quiet
        }
        if (x >= 0x477ff000) {
            return (short) (sign | 0x7c00); // >= 65520 (and infinity) rounds to infinity
        }
        if (x >= 0x38800000) {
            // Normal result: rebias the exponent (127 -> 15), round the 13 dropped bits to nearest even.
            int v = x - 0x38000000;
            return (short) (sign | ((v + 0x0fff + ((v >>> 13) & 1)) >>> 13));
        }
        // Subnormal or zero result: round the value to an integer multiple of 2^-24.
        int exp = x >>> 23;
        if (exp < 102) {
            return (short) sign; // below 2^-25 rounds to zero (2^-25 itself is a tie to even zero)
        }
        int mant = (x & 0x7fffff) | 0x800000;
        int shift = 126 - exp; // 14..24
        int q = mant >>> shift;
        int rem = mant & ((1 << shift) - 1);
        int half = 1 << (shift - 1);
        if (rem > half || (rem == half && (q & 1) != 0)) {
            q++; // may carry into the smallest normal: correct
        }
        return (short) (sign | q);
    }
}
