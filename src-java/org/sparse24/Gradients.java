package org.sparse24;

/** What {@link SparseFfn#backward(SavedState, Tensor, Tensor, Tensor, Tensor)} returns. */
public final class Gradients implements AutoCloseable {
    private final Tensor dx;
    private final Tensor dw1;
    private final Tensor dw2;

    Gradients(Tensor dx, Tensor dw1, Tensor dw2) {
        this.dx = dx;
        this.dw1 = dw1;
        this.dw2 = dw2;
    }

    /** dX [T, d]. */
    public Tensor dx() {
        return dx;
    }

    /** dW1 [f, d]. */
    public Tensor dw1() {
        return dw1;
    }

    /** dW2 [d, f]. */
    public Tensor dw2() {
        return dw2;
    }

    /** Closes the three tensors. */
    @Override
    public void close() {
        dx.close();
        dw1.close();
        dw2.close();
    }
}
