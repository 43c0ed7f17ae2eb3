package org.sparse24;

import java.util.Random;

/** One FFN's inputs x, w1, w2, dz: random (never zero), drawn in that order, as stored in the dtype. */
class FfnInputs {
    final int tokens;
    final int d;
    final int f;
    final DType dtype;
    final float[] x;
    final float[] w1;
    final float[] w2;
    final float[] dz;

    FfnInputs(DType dtype, int tokens, int d, int f, Random random) {
        this.tokens = tokens;
        this.d = d;
        this.f = f;
        this.dtype = dtype;
        x = TestData.stored(dtype, TestData.normal(random, tokens * d, 1));
        w1 = TestData.stored(dtype, TestData.normal(random, f * d, 1 / Math.sqrt(d)));
        w2 = TestData.stored(dtype, TestData.normal(random, d * f, 1 / Math.sqrt(f)));
        dz = TestData.stored(dtype, TestData.normal(random, tokens * d, 1));
    }
}
