package org.sparse24;

import java.lang.ref.Cleaner;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Something that lives in a {@link Sparse24} context's native memory: tensors, FFNs, saved states, events.
 * The context keeps track of its open resources and closes them when it is closed, so nothing is ever freed
 * through a destroyed context. {@link #close()} is idempotent; using a closed resource throws
 * {@link IllegalStateException}.
 *
 * <p>Lifetime rule: a call holds every resource it reads or writes {@link InUse in use} for its duration;
 * {@code close()} on another thread marks the resource closed at once (new calls fail) and frees it only when
 * the calls using it have returned. Their enqueued GPU work finishes before the memory is freed (the native
 * free is stream-ordered).
 */
abstract class Resource implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /** A {@code leakFree} for {@link #track} of what needs no freeing (e.g. borrowed memory): no Cleaner. */
    static final Runnable NOTHING = () -> { };

    private final Sparse24 context;
    private final AtomicBoolean released = new AtomicBoolean();  // shared with the Cleaner's action
    private long bytes;      // native bytes counted by the context while this is open
    private boolean closed;  // guarded by this
    private int users;       // calls holding this resource in use; guarded by this

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

    /**
     * Registers this resource (call once, at the end of the subclass constructor): with the {@link Scope} open on
     * this thread, if any, and with the context, which closes it when closed. With {@code leakFree} non-null the
     * context holds it weakly, and if it becomes unreachable without {@link #close()}, a {@link Cleaner} runs
     * {@code leakFree} (which must not reference this object; none runs for {@link #NOTHING}) to free the native
     * side; {@code bytes} of native memory are counted meanwhile (many unreachable ones prompt a garbage
     * collection).
     *
     * @throws IllegalStateException if the context is closing
     */
    final void track(Runnable leakFree, long bytes) {
        Sparse24 ctx = context;
        ctx.track(this, leakFree == null);
        this.bytes = bytes;
        if (bytes != 0) {
            ctx.countBytes(bytes);
        }
        if (leakFree != null && leakFree != NOTHING) {
            AtomicBoolean done = released;
            CLEANER.register(this, () -> {
                if (done.compareAndSet(false, true)) {
                    ctx.countBytes(-bytes);
                    if (!ctx.isClosed()) {
                        try {
                            leakFree.run();
                        } catch (RuntimeException e) {
                            // the context is closing: it frees everything itself
                        }
                    }
                }
            });
        }
        Scope.adopt(this);
    }

    /**
     * Frees the native resources (after the calls using them on other threads have returned); later calls do
     * nothing.
     */
    @Override
    public final void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            awaitNoUsers();
        }
        context.forget(this);
        if (released.compareAndSet(false, true)) {
            if (bytes != 0) {
                context.countBytes(-bytes);
            }
            if (!context.isClosed()) {
                release();
            }
        }
    }

    /** A {@code leakFree} action for {@link #track}: frees {@code data} through {@code context}. */
    static Runnable freeing(Sparse24 context, org.bytedeco.javacpp.Pointer data) {
        return () -> context.free(data);
    }

    /** Frees the native side; runs at most once, and only while the context is open. */
    abstract void release();

    /** Names this resource in messages, e.g. {@code "tensor 'x' BF16 [4, 8]"}. */
    abstract String describe();

    /** Start address of the memory this resource holds in the context's space (0: none); for overlap checks. */
    long memoryAddress() {
        return 0;
    }

    /** Bytes of that memory (0: none). */
    long memoryBytes() {
        return 0;
    }

    /** Throws {@link IllegalStateException} naming this resource if it is closed. */
    final void ensureOpen() {
        if (isClosed()) {
            throw new IllegalStateException(describe() + " is closed");
        }
    }

    /** Marks one more call using this resource; {@link IllegalStateException} if it is closed. */
    final synchronized void acquire() {
        if (closed) {
            throw new IllegalStateException(describe() + " is closed");
        }
        users++;
    }

    /** Ends a use begun by {@link #acquire()}. */
    final synchronized void releaseUse() {
        if (--users == 0) {
            notifyAll();
        }
    }

    /** Waits (holding this monitor) until no call uses this resource; keeps the thread's interrupt status. */
    private void awaitNoUsers() {
        InUse.awaitNoUsers(this, () -> users);
    }
}
