package org.sparse24;

import java.util.Random;

/**
 * One forward + backward of the FFN for checks against {@link ReferenceFfn}: the inputs (drawn on construction, so
 * that a test can alter them before {@link #run}), their tensors, the results, and the token permutation the
 * reference is to follow.
 */
final class FfnPass extends FfnInputs implements AutoCloseable {
    final Sparse24 ctx;
    Tensor xt;
    Tensor w1t;
    Tensor w2t;
    Tensor dzt;
    SparseFfn ffn;
    ForwardResult result;
    Gradients grads;
    /** The token permutation of step 0, null without one. */
    int[] perm;

    FfnPass(Sparse24 ctx, DType dtype, int tokens, int d, int f, Random random) {
        super(dtype, tokens, d, f, random);
        this.ctx = ctx;
    }

    /** Uploads the inputs and runs the forward and the backward in {@code mode}. */
    void run(FfnChecks.Mode mode, long seed) {
        xt = Tensor.fromFloats(ctx, dtype, x, tokens, d);
        w1t = Tensor.fromFloats(ctx, dtype, w1, f, d);
        w2t = Tensor.fromFloats(ctx, dtype, w2, d, f);
        dzt = Tensor.fromFloats(ctx, dtype, dz, tokens, d);
        ffn = new SparseFfn(ctx, d, f, dtype, mode.options(seed));
        result = ffn.forward(xt, w1t, w2t);
        grads = ffn.backward(result.saved(), xt, w1t, w2t, dzt);
        perm = mode.permute ? Sparse24Ops.tokenPermutation(seed, 0, tokens) : null;
    }

    @Override
    public void close() {
        // in reverse order of creation, skipping what was not created (try-with-resources skips nulls)
        try (Tensor a = xt; Tensor b = w1t; Tensor c = w2t; Tensor e = dzt; SparseFfn s = ffn; ForwardResult r = result;
             Gradients g = grads) {
            // closed on leaving the block
        }
    }
}
