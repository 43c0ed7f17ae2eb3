package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;

/** Random inputs and comparisons shared by the tests. */
final class TestData {
    private TestData() {
    }

    /** n normal values with standard deviation {@code std}, never zero. */
    static float[] normal(Random random, int n, double std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            do {
                v[i] = (float) (random.nextGaussian() * std);
            } while (v[i] == 0);
        }
        return v;
    }

    /** The values a tensor of {@code dtype} holds for {@code values}. */
    static float[] stored(DType dtype, float[] values) {
        float[] out = new float[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = dtype.round(values[i]);
        }
        return out;
    }

    /** ||actual - expected|| / ||expected|| (NaN if actual holds a NaN). */
    static double relativeError(float[] actual, double[] expected) {
        assertEquals(expected.length, actual.length, "length");
        double diff = 0;
        double norm = 0;
        for (int i = 0; i < actual.length; i++) {
            double e = actual[i] - expected[i];
            diff += e * e;
            norm += expected[i] * expected[i];
        }
        return Math.sqrt(diff / norm);
    }

    static void assertClose(String what, float[] actual, double[] expected, double tolerance) {
        double error = relativeError(actual, expected);
        assertTrue(error < tolerance, what + ": relative error " + error + " >= " + tolerance);
    }

    /**
     * Every element within twice its own error bound (see {@link ReferenceFfn}): one wrong element, or one wrong
     * column among thousands, fails here where a whole-matrix relative error could pass it.
     */
    static void assertWithinBounds(String what, float[] actual, double[] expected, double[] bound) {
        assertEquals(expected.length, actual.length, what + ": length");
        int outside = 0;
        int worst = -1;
        double worstRatio = 0;
        for (int i = 0; i < actual.length; i++) {
            double ratio = Math.abs(actual[i] - expected[i]) / (2 * bound[i]);
            if (!(ratio <= 1)) { // NaN counts as outside
                outside++;
                if (worst < 0 || !(ratio <= worstRatio)) {
                    worst = i;
                    worstRatio = ratio;
                }
            }
        }
        if (outside > 0) {
            throw new AssertionError(what + ": " + outside + " of " + actual.length + " elements outside twice their"
                    + " error bound; worst at " + worst + ": got " + actual[worst] + ", expected " + expected[worst]
                    + " +- " + 2 * bound[worst]);
        }
    }

    /** Relative tolerance of a comparison with the float64 reference for outputs stored in {@code dtype}. */
    static double tolerance(DType dtype) {
        switch (dtype) {
            case FP32:
                return 1e-4;
            case FP16:
                return 5e-3;
            default:
                return 2e-2;
        }
    }
}
