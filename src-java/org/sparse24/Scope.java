package org.sparse24;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;

/**
 * Closes, when it closes, every resource (tensor, FFN, saved state, event) created on its thread while it was the
 * innermost open scope, newest first, except those passed to {@link #keep}. A training loop that forgets to close
 * its per-step outputs stays flat in memory with one scope per step:
 * <pre>{@code
 * for (int step = 0; step < steps; step++) {
 *     try (Scope scope = Sparse24.scope()) {
 *         ForwardResult r = ffn.forward(x, w1, w2);
 *         Gradients g = ffn.backward(r.saved(), x, w1, w2, dz);
 *         ...                                      // everything above is closed here
 *     }
 * }
 * }</pre>
 * Scopes nest; a scope belongs to the thread that opened it.
 */
public final class Scope implements AutoCloseable {
    private static final ThreadLocal<Deque<Scope>> OPEN = ThreadLocal.withInitial(ArrayDeque::new);

    private final List<Resource> owned = new ArrayList<>();
    private final Thread thread = Thread.currentThread();
    private boolean closed;

    private Scope() {
    }

    static Scope open() {
        Scope s = new Scope();
        OPEN.get().push(s);
        return s;
    }

    /** Adds {@code r} to this thread's innermost open scope, if any. */
    static void adopt(Resource r) {
        Scope s = OPEN.get().peek();
        if (s != null) {
            s.owned.add(r);
        }
    }

    /** Takes {@code resource} out of this scope (it stays open after the scope closes) and returns it. */
    public <T extends AutoCloseable> T keep(T resource) {
        owned.remove(resource);
        return resource;
    }

    /**
     * Closes what the scope holds, newest first. Idempotent.
     *
     * @throws IllegalStateException if called on another thread than the one that opened the scope
     */
    @Override
    public void close() {
        if (Thread.currentThread() != thread) {
            throw new IllegalStateException("a Scope must be closed on the thread that opened it (" + thread.getName()
                    + ")");
        }
        if (closed) {
            return;
        }
        closed = true;
        OPEN.get().remove(this);
        RuntimeException failure = null;
        for (int i = owned.size() - 1; i >= 0; i--) {
            try {
                owned.get(i).close();
            } catch (RuntimeException e) {
                failure = failure == null ? e : failure;
            }
        }
        owned.clear();
        if (failure != null) {
            throw failure;
        }
    }
}
