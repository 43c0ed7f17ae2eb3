package org.sparse24.examples;

import org.bytedeco.pytorch.Backend;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.TensorVector;

/**
 * One rank's part of a tensor-parallel Squared-ReLU FFN over {@code world} ranks: rank r holds the features
 * [r·f/w, (r+1)·f/w), that is rows of W1 ({@link #shardW1}) and columns of W2 ({@link #shardW2}), and runs its
 * local FFN (sparse24's, or dense) on them: {@code Z_r = relu(X W1_rᵀ)² W2_rᵀ}. Z = Σ_r Z_r is all-reduced in the
 * forward; in the backward each rank's dW1_r, dW2_r are its shard's own (no communication) and dX = Σ_r dX_r is
 * all-reduced (X is replicated on every rank).
 *
 * <p>Both reductions are spliced into LibTorch's autograd without a custom Function (the preset cannot subclass
 * one): the forward's sum enters as {@code Z + (Z_r - Z_r.detach())} (exactly the value Z; the gradient dZ passes
 * to Z_r unchanged); dX's sum is a hook on a view of X that returns the all-reduced gradient.
 *
 * <p>With a sparse24 FFN the 2:4 along features stays local (a shard's f/w is a multiple of 4, so the groups of four
 * features are those of the whole FFN: the forward is the one-GPU forward). The split backward is not: each shard
 * picks its own dense features (its share of the fraction, ceil(fraction·f/w) rounded as sparse24 rounds it, by
 * non-zero counts within the shard), so the set differs from the one-GPU top features; the token-wise 2:4 of the
 * remaining features is per feature, hence the same. With the split off (exact gradients of the 2:4 forward) the
 * results equal the one-GPU FFN up to summation order.
 */
final class TensorParallelFfn implements Ffn {
    private final Backend group;
    private final Ffn local;
    private final TensorTensorHook sumInputGradient;

    /**
     * @param group the tensor-parallel group (every rank calls {@link #apply} in the same order)
     * @param local this rank's FFN over f/world features (closed with this)
     */
    TensorParallelFfn(Backend group, Ffn local) {
        this.group = group;
        this.local = local;
        this.sumInputGradient = new TensorTensorHook() {
            @Override
            public TensorBase call(TensorBase grad) {
                return allReduced(new Tensor(grad));
            }
        };
    }

    /** Rows [rank·f/world, (rank+1)·f/world) of W1 [f, d] (a view: contiguous, as rows are). */
    static Tensor shardW1(Tensor w1, int rank, int world) {
        long fs = shardSize(w1.size(0), world);
        return w1.narrow(0, rank * fs, fs);
    }

    /** Columns [rank·f/world, (rank+1)·f/world) of W2 [d, f], as a contiguous copy. */
    static Tensor shardW2(Tensor w2, int rank, int world) {
        long fs = shardSize(w2.size(1), world);
        return w2.narrow(1, rank * fs, fs).contiguous();
    }

    /** f / world; f must split into shards of a multiple of 8 features (sparse24's feature granularity). */
    static long shardSize(long f, int world) {
        if (world <= 0 || f % world != 0 || (f / world) % 8 != 0) {
            throw new IllegalArgumentException("d_ff (" + f + ") must split into " + world
                    + " shards of a multiple of 8 features");
        }
        return f / world;
    }

    /**
     * @param x  [B, S, d] or [T, d], the same on every rank
     * @param w1 this rank's W1 shard [f/world, d]
     * @param w2 this rank's W2 shard [d, f/world]
     * @return Z = Σ_r Z_r, the same on every rank
     */
    @Override
    public Tensor apply(Tensor x, Tensor w1, Tensor w2) {
        Tensor input = x;
        if (x.requires_grad()) {
            input = x.view_as(x);
            input.register_hook(sumInputGradient);
        }
        Tensor partial = local.apply(input, w1, w2);
        Tensor sum;
        try (NoGradGuard noGrad = new NoGradGuard()) {
            sum = allReduced(partial.detach());
        }
        // the value is exactly sum (partial - partial.detach() is 0); dZ flows to partial unchanged
        return partial.requires_grad() ? sum.add(partial.sub(partial.detach())) : sum;
    }

    /** A copy of {@code t} summed over the ranks (on the GPU: the current stream waits for it). */
    private Tensor allReduced(Tensor t) {
        Tensor copy = t.clone();
        group.allreduce(new TensorVector(copy))._wait();
        return copy;
    }

    @Override
    public void measureNext(boolean on) {
        local.measureNext(on);
    }

    /** The local shard's statistics. */
    @Override
    public Stats stats() {
        return local.stats();
    }

    @Override
    public boolean sparseNext() {
        return local.sparseNext();
    }

    @Override
    public void close() {
        local.close();
    }
}
