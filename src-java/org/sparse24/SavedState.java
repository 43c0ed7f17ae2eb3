package org.sparse24;

import org.sparse24.binding.s24_saved;
import org.sparse24.binding.s24_sparsity;
import org.sparse24.binding.global.sparse24;

/**
 * What a {@link SparseFfn} forward keeps for its backward (the packed 2:4 activations, per-feature counts,
 * the dense-feature set, the permutation step) and the statistics of that step. Belongs to one FFN and one
 * token count; closing the FFN closes it.
 */
public final class SavedState extends Resource {
    private final SparseFfn ffn;
    private final long tokens;
    private final s24_saved handle;
    private final boolean denseWarmup;
    private volatile boolean filled;
    private volatile long[] inputs;  // data addresses of the forward's x, w1, w2

    SavedState(SparseFfn ffn, long tokens, s24_saved handle, boolean denseWarmup) {
        super(ffn.context());
        this.ffn = ffn;
        this.tokens = tokens;
        this.handle = handle;
        this.denseWarmup = denseWarmup;
        track(destroying(handle), 0);
    }

    /** The FFN this state belongs to. */
    public SparseFfn ffn() {
        return ffn;
    }

    /** The token count T of the forward it serves. */
    public long tokens() {
        return tokens;
    }

    /** Whether it serves the FFN's dense warm-up steps (the exact dense FFN) rather than its options' 2:4. */
    public boolean denseWarmup() {
        return denseWarmup;
    }

    /** Whether a forward has filled this state (a backward needs one). */
    public boolean isFilled() {
        return filled;
    }

    /** Statistics of the forward (and backward, if run) that used this state; synchronizes the stream. */
    public Sparsity sparsity() {
        try (s24_sparsity s = new s24_sparsity(); InUse u = InUse.of(context(), this)) {
            Native.check(sparse24.s24_saved_sparsity(handle(), s), "s24_saved_sparsity");
            return new Sparsity(s.tokens(), s.features(), s.step(), s.activation_nonzeros(), s.forward_kept(),
                    s.dense_features(), s.dw2_sparse_nonzeros(), s.dw2_sparse_kept(), s.dw1_sparse_nonzeros(),
                    s.dw1_sparse_kept(), s.forward_sparse() != 0, s.backward_sparse() != 0,
                    s.backward_done() != 0);
        }
    }

    /** The features the split backward computes densely for this step, ascending; synchronizes the stream. */
    public int[] denseFeatures() {
        long[] count = new long[1];
        try (InUse u = InUse.of(context(), this)) {
            Native.check(sparse24.s24_saved_dense_features(handle(), (int[]) null, 0, count),
                    "s24_saved_dense_features");
            int[] idx = new int[Math.toIntExact(count[0])];
            Native.check(sparse24.s24_saved_dense_features(handle(), idx, idx.length, count),
                    "s24_saved_dense_features");
            return idx;
        }
    }

    /** The permutation step the forward used (forward number s of this plan uses step s); -1 before a forward. */
    public long step() {
        return sparsity().step();
    }

    s24_saved handle() {
        ensureOpen();
        return handle;
    }

    /** Records that a forward on {@code x}, {@code w1}, {@code w2} filled this state. */
    void markFilled(Tensor x, Tensor w1, Tensor w2) {
        inputs = new long[] {x.memoryAddress(), w1.memoryAddress(), w2.memoryAddress()};
        filled = true;
    }

    /**
     * Throws {@link IllegalArgumentException} if {@code x}, {@code w1}, {@code w2} are not the memory the forward
     * read (a backward for another forward's inputs would give wrong gradients without an error). Cheap: it
     * compares addresses; changed contents at the same address are not detected (that would cost a pass over the
     * inputs per step).
     */
    void checkForwardInputs(Tensor x, Tensor w1, Tensor w2) {
        long[] expected = inputs;
        Tensor[] given = {x, w1, w2};
        String[] names = {"x", "w1", "w2"};
        for (int i = 0; i < 3; i++) {
            if (given[i].memoryAddress() != expected[i]) {
                throw new IllegalArgumentException(names[i] + ": " + given[i].describe() + " is not the memory the "
                        + "forward that filled this " + describe() + " read; pass the forward's " + names[i]);
            }
        }
    }

    /** Frees a saved state that was never closed (it must not reference the SavedState). */
    private static Runnable destroying(s24_saved handle) {
        return () -> sparse24.s24_saved_destroy(handle);
    }

    @Override
    void release() {
        ffn.forget(this);
        Native.check(sparse24.s24_saved_destroy(handle), "s24_saved_destroy");
    }

    @Override
    String describe() {
        return "saved state (T=" + tokens + (denseWarmup ? ", dense warm-up" : "") + ") of " + ffn.describe();
    }

    @Override
    public String toString() {
        return describe() + (isClosed() ? " (closed)" : "");
    }
}
