package org.sparse24;

import org.sparse24.binding.s24_ffn_options;
import org.sparse24.binding.global.sparse24;

/**
 * How a {@link SparseFfn} applies 2:4 sparsity. Build with {@link #builder()} (which starts from the native
 * defaults: everything on, 5% dense features, algorithm search on) or take {@link #dense()} for the exact
 * Squared-ReLU FFN.
 *
 * @param sparseForward   2:4 along features in the forward (Z = S24(relu(H)^2) W2^T on sparse tensor cores)
 * @param sparseBackward  split weight-gradient GEMMs: dense features exact, the rest 2:4 along tokens
 *                        (needs {@code sparseForward}); off: exact weight gradients of the masked forward
 * @param denseFraction   share of features, in [0, 1], computed densely in the split backward
 * @param permuteTokens   a fresh token permutation each step before the 2:4 along tokens
 * @param seed            permutation seed; forward number s of a plan uses permutation (seed, s)
 * @param algorithmSearch tuned sparse GEMM plans: every cuSPARSELt algorithm timed and validated once per shape,
 *                        the choice kept in the plan cache on disk ({@link SparseFfn#tune},
 *                        {@link Sparse24#clearPlanCache})
 * @param denseWarmupSteps the first this many training forwards of each {@link SparseFfn} (and their backwards)
 *                        run the exact dense FFN ({@link #dense()}), the later ones these options; 0: none
 */
public record SparseFfnOptions(boolean sparseForward, boolean sparseBackward, double denseFraction,
                               boolean permuteTokens, long seed, boolean algorithmSearch, int denseWarmupSteps) {

    /** Checks the ranges; {@link IllegalArgumentException} names the option. */
    public SparseFfnOptions {
        if (!(denseFraction >= 0 && denseFraction <= 1)) {
            throw new IllegalArgumentException("denseFraction must be in [0, 1], got " + denseFraction);
        }
        if (sparseBackward && !sparseForward) {
            throw new IllegalArgumentException(
                    "sparseBackward needs sparseForward (the split backward sparsifies the forward's 2:4 activations)");
        }
        if (denseWarmupSteps < 0) {
            throw new IllegalArgumentException("denseWarmupSteps must be >= 0, got " + denseWarmupSteps);
        }
    }

    /** A builder starting from the native defaults. */
    public static Builder builder() {
        return new Builder();
    }

    /** The native defaults. */
    public static SparseFfnOptions defaults() {
        return builder().build();
    }

    /** No 2:4 anywhere: the exact Squared-ReLU FFN, the reference the sparse one approximates. */
    public static SparseFfnOptions dense() {
        return builder().sparseForward(false).sparseBackward(false).build();
    }

    /** A builder holding these options. */
    public Builder toBuilder() {
        return new Builder().sparseForward(sparseForward).sparseBackward(sparseBackward)
                .denseFraction(denseFraction).permuteTokens(permuteTokens).seed(seed)
                .algorithmSearch(algorithmSearch).denseWarmupSteps(denseWarmupSteps);
    }

    /** These options with every sparsity off: what a dense warm-up step runs. */
    SparseFfnOptions warmupOptions() {
        return toBuilder().sparseForward(false).sparseBackward(false).denseWarmupSteps(0).build();
    }

    /** The native struct (caller closes it). */
    s24_ffn_options toNative() {
        s24_ffn_options o = new s24_ffn_options();
        o.sparse_forward(sparseForward ? 1 : 0);
        o.sparse_backward(sparseBackward ? 1 : 0);
        o.dense_fraction((float) denseFraction);
        o.permute_tokens(permuteTokens ? 1 : 0);
        o.seed(seed);
        o.algorithm_search(algorithmSearch ? 1 : 0);
        return o;
    }

    /** Mutable builder; {@link #build()} validates. */
    public static final class Builder {
        private boolean sparseForward;
        private boolean sparseBackward;
        private double denseFraction;
        private boolean permuteTokens;
        private long seed;
        private boolean algorithmSearch;
        private int denseWarmupSteps;

        private Builder() {
            try (s24_ffn_options o = new s24_ffn_options()) {
                sparse24.s24_ffn_options_default(o);
                sparseForward = o.sparse_forward() != 0;
                sparseBackward = o.sparse_backward() != 0;
                denseFraction = Double.parseDouble(Float.toString(o.dense_fraction())); // 0.05f -> 0.05
                permuteTokens = o.permute_tokens() != 0;
                seed = o.seed();
                algorithmSearch = o.algorithm_search() != 0;
            }
        }

        /** Sets {@link SparseFfnOptions#sparseForward()}. */
        public Builder sparseForward(boolean on) {
            sparseForward = on;
            return this;
        }

        /** Sets {@link SparseFfnOptions#sparseBackward()}. */
        public Builder sparseBackward(boolean on) {
            sparseBackward = on;
            return this;
        }

        /** Sets {@link SparseFfnOptions#denseFraction()}. */
        public Builder denseFraction(double fraction) {
            denseFraction = fraction;
            return this;
        }

        /** Sets {@link SparseFfnOptions#permuteTokens()}. */
        public Builder permuteTokens(boolean on) {
            permuteTokens = on;
            return this;
        }

        /** Sets {@link SparseFfnOptions#seed()}. */
        public Builder seed(long seed) {
            this.seed = seed;
            return this;
        }

        /** Sets {@link SparseFfnOptions#algorithmSearch()}. */
        public Builder algorithmSearch(boolean on) {
            algorithmSearch = on;
            return this;
        }

        /** Sets {@link SparseFfnOptions#denseWarmupSteps()} (>= 0; default 0). */
        public Builder denseWarmupSteps(int steps) {
            denseWarmupSteps = steps;
            return this;
        }

        /** @throws IllegalArgumentException if an option is out of range or the combination is invalid */
        public SparseFfnOptions build() {
            return new SparseFfnOptions(sparseForward, sparseBackward, denseFraction, permuteTokens, seed,
                    algorithmSearch, denseWarmupSteps);
        }
    }
}
