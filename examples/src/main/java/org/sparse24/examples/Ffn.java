package org.sparse24.examples;

import org.bytedeco.pytorch.Tensor;

/**
 * The Squared-ReLU FFN of a decoder block, {@code z = relu(x w1ᵀ)² w2ᵀ}, differentiable in LibTorch's autograd;
 * one instance per layer (it keeps that layer's statistics).
 */
interface Ffn extends AutoCloseable {

    /**
     * @param x  [B, S, d], contiguous, the compute dtype
     * @param w1 [f, d]
     * @param w2 [d, f]
     * @return z [B, S, d]
     */
    Tensor apply(Tensor x, Tensor w1, Tensor w2);

    /** Whether the next training forward's (and its backward's) statistics are measured (costs a sync). */
    void measureNext(boolean on);

    /** The statistics of the last measured step; NaN where this FFN cannot tell. */
    Stats stats();

    /** Whether the next training step runs the FFN with 2:4 sparsity. */
    boolean sparseNext();

    @Override
    void close();

    /**
     * One step's statistics of one layer.
     *
     * @param activationSparsity share of zeros of relu(x w1ᵀ)² (before any 2:4)
     * @param forwardDrop        share of its non-zeros dropped by the forward's 2:4 along features
     * @param dw2Drop            share of the non-zeros on the split's sparse features dropped by the 2:4 along
     *                           tokens for dW2 (the backward's token-wise 2:4)
     * @param dw1Drop            the same for dW1
     */
    record Stats(double activationSparsity, double forwardDrop, double dw2Drop, double dw1Drop) {
        static final Stats NONE = new Stats(Double.NaN, Double.NaN, Double.NaN, Double.NaN);
    }
}
