package org.sparse24;

/**
 * Statistics of one forward (and its backward, once run) of a {@link SparseFfn}, from a {@link SavedState}.
 * The counts are exact; the rates are derived from them (0 where nothing was counted).
 *
 * @param tokens             T
 * @param features           f
 * @param step               the permutation step the forward used (-1: no forward yet)
 * @param activationNonzeros non-zeros of relu(H)^2 before 2:4, over T*f
 * @param forwardKept        non-zeros kept by the forward's 2:4 along features
 * @param denseFeatures      features computed densely in the split backward
 * @param dw2SparseNonzeros  non-zeros of the activations on the sparse features, before the 2:4 along tokens
 * @param dw2SparseKept      ... kept by it
 * @param dw1SparseNonzeros  the same for dH
 * @param dw1SparseKept      ... kept by it
 * @param forwardSparse      whether the forward applied 2:4
 * @param backwardSparse     whether a backward ran with the split (2:4 along tokens)
 * @param backwardDone       whether a backward has used this saved state
 */
public record Sparsity(long tokens, long features, long step, long activationNonzeros, long forwardKept,
                       long denseFeatures, long dw2SparseNonzeros, long dw2SparseKept, long dw1SparseNonzeros,
                       long dw1SparseKept, boolean forwardSparse, boolean backwardSparse, boolean backwardDone) {

    /** Share of zeros of relu(H)^2 before 2:4 (the paper's activation sparsity). */
    public double activationSparsity() {
        long all = tokens * features;
        return all == 0 ? 0 : 1.0 - (double) activationNonzeros / all;
    }

    /** Share of the non-zeros of relu(H)^2 that the forward's 2:4 dropped. */
    public double forwardDropRate() {
        return dropRate(activationNonzeros, forwardKept);
    }

    /** Share of the non-zeros on sparse features that the 2:4 along tokens dropped for dW2. */
    public double dw2DropRate() {
        return dropRate(dw2SparseNonzeros, dw2SparseKept);
    }

    /** Share of the non-zeros of dH on sparse features that the 2:4 along tokens dropped for dW1. */
    public double dw1DropRate() {
        return dropRate(dw1SparseNonzeros, dw1SparseKept);
    }

    private static double dropRate(long nonzeros, long kept) {
        return nonzeros == 0 ? 0 : 1.0 - (double) kept / nonzeros;
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder();
        s.append(String.format("step %d, T=%d f=%d: activation sparsity %.2f%%, forward 2:4 %s", step, tokens,
                features, 100 * activationSparsity(),
                forwardSparse ? String.format("dropped %.2f%% of non-zeros", 100 * forwardDropRate()) : "off"));
        if (!backwardDone) {
            s.append(", no backward yet");
        } else if (backwardSparse) {
            s.append(String.format(", backward split: %d dense features, 2:4 along tokens dropped %.2f%% (dW2) "
                    + "and %.2f%% (dW1) of non-zeros", denseFeatures, 100 * dw2DropRate(), 100 * dw1DropRate()));
        } else {
            s.append(", backward exact (no split)");
        }
        return s.toString();
    }
}
