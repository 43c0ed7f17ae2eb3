package org.sparse24;

import org.sparse24.binding.s24_event;
import org.sparse24.binding.global.sparse24;

/**
 * A point in a context's stream, for timing: a CUDA event on CUDA, the host clock on CPU.
 *
 * <pre>{@code
 * start.record(); ffn.infer(x, w1, w2, z); end.record();
 * float ms = Event.elapsedMillis(start, end);
 * }</pre>
 */
public final class Event extends Resource {
    private final s24_event handle;

    private Event(Sparse24 context, s24_event handle) {
        super(context);
        this.handle = handle;
        track(null, 0);
    }

    /** A new event of {@code context}. */
    public static Event create(Sparse24 context) {
        Args.notNull(context, "context");
        s24_event handle = new s24_event();
        try (InUse u = InUse.of(context)) {
            Native.check(sparse24.s24_event_create(context.handle(), handle), "s24_event_create");
        }
        try {
            return new Event(context, handle);
        } catch (RuntimeException e) {  // the context began closing meanwhile
            sparse24.s24_event_destroy(handle);
            throw e;
        }
    }

    /** Records the event on the context's current stream. */
    public void record() {
        try (InUse u = InUse.of(context(), this)) {
            Native.check(sparse24.s24_event_record(handle), "s24_event_record");
        }
    }

    /** Milliseconds between two recorded events of one context; waits for {@code end}. */
    public static float elapsedMillis(Event start, Event end) {
        Args.notNull(start, "start");
        Args.notNull(end, "end");
        float[] ms = new float[1];
        try (InUse u = InUse.of(start.context(), start, end)) {
            Native.check(sparse24.s24_event_elapsed_ms(start.handle, end.handle, ms), "s24_event_elapsed_ms");
        }
        return ms[0];
    }

    @Override
    void release() {
        Native.check(sparse24.s24_event_destroy(handle), "s24_event_destroy");
    }

    @Override
    String describe() {
        return "event";
    }
}
