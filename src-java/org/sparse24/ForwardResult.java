package org.sparse24;

/** What {@link SparseFfn#forward(Tensor, Tensor, Tensor)} returns: the output and the state for the backward. */
public final class ForwardResult implements AutoCloseable {
    private final Tensor output;
    private final SavedState saved;

    ForwardResult(Tensor output, SavedState saved) {
        this.output = output;
        this.saved = saved;
    }

    /** Z [T, d]. */
    public Tensor output() {
        return output;
    }

    /** What the backward needs; also gives the forward's {@link Sparsity}. */
    public SavedState saved() {
        return saved;
    }

    /** Closes the output and the saved state. */
    @Override
    public void close() {
        output.close();
        saved.close();
    }
}
