package org.sparse24;

/**
 * Holds a context and resources in use for the duration of one native call:
 * {@code try (InUse u = InUse.of(ctx, x, w1, z)) { native call }}. While held, closing any of them (on another
 * thread) waits, so the memory a call reads or writes stays alive until it returns. Null resources are skipped.
 */
final class InUse implements AutoCloseable {
    private final Sparse24 context;
    private final Resource[] held;
    private int count;
    private boolean closed;

    private InUse(Sparse24 context, Resource[] resources) {
        this.context = context;
        this.held = new Resource[resources.length];
        try {
            for (Resource r : resources) {  // first, so that a closed one is named
                if (r != null) {
                    r.acquire();
                    held[count++] = r;
                }
            }
            context.acquire();
        } catch (RuntimeException e) {
            while (count > 0) {
                held[--count].releaseUse();
            }
            throw e;
        }
    }

    /** Marks {@code context} and {@code resources} in use; {@link IllegalStateException} if any is closed. */
    static InUse of(Sparse24 context, Resource... resources) {
        return new InUse(context, resources);
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        while (count > 0) {
            held[--count].releaseUse();
        }
        context.releaseUse();
    }

    /**
     * Waits on {@code monitor} (which the caller holds, and which is notified when a use ends) until
     * {@code users} reads 0; an interrupt does not end the wait but is kept in the thread's status.
     */
    static void awaitNoUsers(Object monitor, java.util.function.IntSupplier users) {
        boolean interrupted = false;
        while (users.getAsInt() > 0) {
            try {
                monitor.wait();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
