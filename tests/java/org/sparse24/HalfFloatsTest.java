package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;

import org.junit.jupiter.api.Test;

/**
 * The Java float <-> bf16 / fp16 conversions against independent definitions: decoding by the formula of each
 * format, encoding as "the nearest representable value, ties to the even bit pattern" found by search.
 */
class HalfFloatsTest {
    /** Every finite non-negative fp16 value, ascending (bit patterns 0x0000..0x7bff are ordered). */
    private static final double[] FP16 = new double[0x7c00];
    /** Every finite non-negative bf16 value, ascending. */
    private static final double[] BF16 = new double[0x7f80];

    static {
        for (int h = 0; h < FP16.length; h++) {
            int exp = h >> 10;
            int mant = h & 0x3ff;
            FP16[h] = exp == 0 ? Math.scalb((double) mant, -24) : Math.scalb(1 + mant / 1024.0, exp - 15);
        }
        for (int h = 0; h < BF16.length; h++) {
            int exp = h >> 7;
            int mant = h & 0x7f;
            BF16[h] = exp == 0 ? Math.scalb((double) mant, -133) : Math.scalb(1 + mant / 128.0, exp - 127);
        }
    }

    @Test
    void decodingFollowsTheFormats() {
        for (int h = 0; h < FP16.length; h++) {
            assertEquals(FP16[h], HalfFloats.fp16ToFloat((short) h), "fp16 " + h);
            assertEquals(-FP16[h], HalfFloats.fp16ToFloat((short) (h | 0x8000)), "fp16 -" + h);
        }
        for (int h = 0; h < BF16.length; h++) {
            assertEquals(BF16[h], HalfFloats.bf16ToFloat((short) h), "bf16 " + h);
        }
        assertEquals(Float.POSITIVE_INFINITY, HalfFloats.fp16ToFloat((short) 0x7c00));
        assertTrue(Float.isNaN(HalfFloats.fp16ToFloat((short) 0x7e00)));
        assertEquals(Float.NEGATIVE_INFINITY, HalfFloats.bf16ToFloat((short) 0xff80));
    }

    @Test
    void encodingRoundsToNearestEven() {
        Random random = new Random(9);
        for (int i = 0; i < 200_000; i++) {
            // Values over the whole fp16 range incl. subnormals, and exact midpoints between neighbours.
            float v = (float) Math.scalb(random.nextDouble(), random.nextInt(44) - 28);
            if (i % 4 == 0) {
                int h = random.nextInt(FP16.length - 1);
                v = (float) ((FP16[h] + FP16[h + 1]) / 2);
            }
            assertEquals(nearest(FP16, v, 0x7c00), HalfFloats.floatToFp16(v), "fp16 of " + v);
            assertEquals((short) (nearest(FP16, v, 0x7c00) | 0x8000), HalfFloats.floatToFp16(-v), "fp16 of -" + v);
            float b = i % 4 == 0 ? (float) ((BF16[i % 30000] + BF16[i % 30000 + 1]) / 2) : v * 1e20f;
            assertEquals(nearest(BF16, b, 0x7f80), HalfFloats.floatToBf16(b), "bf16 of " + b);
        }
    }

    @Test
    void overflowGivesInfinityAndNanStaysNan() {
        assertEquals((short) 0x7bff, HalfFloats.floatToFp16(65519.99f), "just below the rounding boundary");
        assertEquals((short) 0x7c00, HalfFloats.floatToFp16(65520f));
        assertEquals((short) 0xfc00, HalfFloats.floatToFp16(Float.NEGATIVE_INFINITY));
        assertEquals((short) 0x7f80, HalfFloats.floatToBf16(Float.MAX_VALUE));
        assertTrue(Float.isNaN(HalfFloats.fp16ToFloat(HalfFloats.floatToFp16(Float.NaN))));
        assertTrue(Float.isNaN(HalfFloats.bf16ToFloat(HalfFloats.floatToBf16(Float.NaN))));
        assertEquals(0.1f, DType.FP32.round(0.1f));
        assertEquals(HalfFloats.bf16ToFloat(HalfFloats.floatToBf16(0.1f)), DType.BF16.round(0.1f));
    }

    /** The bit pattern of the nearest value of {@code table} to v >= 0 (ties: even pattern; beyond: infinity). */
    private static short nearest(double[] table, float v, int infinity) {
        int i = Arrays.binarySearch(table, v);
        if (i >= 0) {
            return (short) i;
        }
        int hi = -i - 1;
        if (hi == table.length) {
            // Above the largest finite value: rounds to it below the midpoint to the next (virtual) step.
            double step = table[table.length - 1] - table[table.length - 2];
            return (short) (v < table[table.length - 1] + step / 2 ? table.length - 1 : infinity);
        }
        int lo = hi - 1;
        double dLo = v - table[lo];
        double dHi = table[hi] - v;
        if (dLo != dHi) {
            return (short) (dLo < dHi ? lo : hi);
        }
        return (short) (lo % 2 == 0 ? lo : hi);
    }
}
