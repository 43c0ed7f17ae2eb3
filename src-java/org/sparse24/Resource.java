package org.sparse24;

/**
 * Something that lives in a {@link Sparse24} context's native memory: tensors, FFNs, saved states, events.
 * The context keeps track of its open resources and closes them when it is closed, so nothing is ever freed
 * through a destroyed context. {@link #close()} is idempotent; using a closed resource throws
 * {@link IllegalStateException}.
 */
abstract class Resource implements AutoCloseable {
    private final Sparse24 context;
    private boolean closed;

    Resource(Sparse24 context) {
        this.context = context;
    }

    /** The context this belongs to. */
    public Sparse24 context() {
        return context;
    }

    /** Whether {@link #close()} has run (directly or through the context's close). */
    public final synchronized boolean isClosed() {
        return closed;
    }

    /** Frees the native resources; later calls do nothing. */
    @Override
    public final void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        context.forget(this);
        if (!context.isClosed()) {
            release();
        }
    }

    /** Frees the native side; runs at most once, and only while the context is open. */
    abstract void release();

    /** Names this resource in messages, e.g. {@code "tensor 'x' BF16 [4, 8]"}. */
    abstract String describe();

    /** Throws {@link IllegalStateException} naming this resource if it is closed. */
    final void ensureOpen() {
        if (isClosed()) {
            throw new IllegalStateException(describe() + " is closed");
        }
    }
}
