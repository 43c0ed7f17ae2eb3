package org.sparse24;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.WeakHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.bytedeco.javacpp.Pointer;
import org.sparse24.binding.s24_context;
import org.sparse24.binding.s24_context_info;
import org.sparse24.binding.s24_context_memory;
import org.sparse24.binding.global.sparse24;

/**
 * A sparse24 context: one backend (CPU or a CUDA device), its stream, library handles, workspace and plan
 * cache. Every {@link Tensor}, {@link SparseFfn} and {@link Event} belongs to one context; closing the
 * context closes them all first.
 *
 * <p>A context may be used from several threads at once: the native library serializes calls on one context.
 * Closing it (or any of its resources) while other threads use it is safe: calls already running finish first
 * (close waits for them), later calls fail with {@link IllegalStateException}.
 *
 * <pre>{@code
 * try (Sparse24 ctx = Sparse24.create(Backend.AUTO)) {
 *     System.out.println(ctx.info());
 * }
 * }</pre>
 */
public final class Sparse24 implements AutoCloseable {
    /** The high-water mark of a new context's scratch retention ({@link #setScratchRetention}): 256 MiB. */
    public static final long DEFAULT_SCRATCH_MAX_BYTES = 256L << 20;
    /** The window of a new context's scratch retention ({@link #setScratchRetention}): 64 calls. */
    public static final long DEFAULT_SCRATCH_CALLS = 64;

    private static volatile long gcBytes = Long.getLong("sparse24.gcBytes", 256L << 20);

    private volatile s24_context handle;  // null once destroyed
    private final ContextInfo info;
    private final Set<Resource> resources = new LinkedHashSet<>();  // held until closed (FFNs, events)
    private final Map<Resource, Boolean> collectable = new WeakHashMap<>();  // tensors, saved states
    private final AtomicLong countedBytes = new AtomicLong();  // native bytes of open collectable resources
    private long gcMark = gcBytes;  // countedBytes that prompts the next System.gc()
    private boolean closing;  // close() has begun: no new resources
    private boolean accepting = true;  // false once close() has closed the resources: no new calls
    private int users;  // calls in flight (InUse); guarded by this

    private Sparse24(s24_context handle) {
        this.handle = handle;
        try (s24_context_info raw = new s24_context_info()) {
            Native.check(sparse24.s24_context_get_info(handle, raw), "s24_context_get_info");
            info = new ContextInfo(Backend.of(raw.backend()), raw.device(), Native.string(raw.device_name()),
                    raw.compute_capability(), raw.multiprocessors(), raw.direct_layout() != 0,
                    raw.cusparselt_version(), raw.cublaslt_version(), raw.cpu_threads(),
                    Native.string(raw.cusparselt_path()), Native.string(raw.cublaslt_path()),
                    Native.string(raw.fallback_reason()));
        } catch (RuntimeException e) {
            sparse24.s24_context_destroy(handle);
            throw e;
        }
    }

    /**
     * Creates a context on {@code backend}; for CUDA, on device 0.
     *
     * @throws Sparse24Exception {@code S24_ERROR_BACKEND_UNAVAILABLE} when CUDA is asked for and there is no
     *                           device, {@code S24_ERROR_LIBRARY_NOT_FOUND} when cuSPARSELt or cuBLASLt is missing
     */
    public static Sparse24 create(Backend backend) {
        return create(backend, 0);
    }

    /**
     * Creates a context on {@code backend}, using CUDA device {@code device} where CUDA is chosen.
     * {@link Backend#AUTO} falls back to the CPU when no usable device or library is present.
     */
    public static Sparse24 create(Backend backend, int device) {
        if (backend == null) {
            throw new IllegalArgumentException("backend must not be null (AUTO, CPU or CUDA)");
        }
        if (device < 0) {
            throw new IllegalArgumentException("device must be a CUDA device ordinal >= 0, got " + device);
        }
        s24_context handle = new s24_context();
        Native.check(sparse24.s24_context_create(backend.code, device, handle), "s24_context_create");
        return new Sparse24(handle);
    }

    /** A context on CUDA device 0 when it and cuSPARSELt/cuBLASLt are usable, else on the CPU. */
    public static Sparse24 auto() {
        return create(Backend.AUTO);
    }

    /** A context on the CPU reference backend. */
    public static Sparse24 cpu() {
        return create(Backend.CPU);
    }

    /** A context on CUDA device {@code device}. */
    public static Sparse24 cuda(int device) {
        return create(Backend.CUDA, device);
    }

    /**
     * Opens a {@link Scope} on this thread: every tensor, FFN, saved state and event created on this thread until
     * it closes (in any context) is closed with it, except those passed to {@link Scope#keep}.
     */
    public static Scope scope() {
        return Scope.open();
    }

    /** The native library version, "MAJOR.MINOR.PATCH". */
    public static String version() {
        return Native.string(sparse24.s24_version());
    }

    /** What this context runs on. */
    public ContextInfo info() {
        return info;
    }

    /** The backend in use: {@link Backend#CPU} or {@link Backend#CUDA}, never AUTO. */
    public Backend backend() {
        return info.backend();
    }

    /**
     * Sets the {@code cudaStream_t} that work is enqueued on ({@code null}: the legacy default stream). Waits for
     * work on the previous stream first. The CPU backend accepts only {@code null}.
     */
    public void setStream(Pointer stream) {
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_context_set_stream(handle(), stream), "s24_context_set_stream");
        }
    }

    /** The current {@code cudaStream_t} ({@code null} pointer value for the default stream and on CPU). */
    public Pointer stream() {
        Pointer stream = new Pointer();
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_context_get_stream(handle(), stream), "s24_context_get_stream");
        }
        return stream;
    }

    /** Blocks until all work enqueued through this context has finished. */
    public void synchronize() {
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_context_synchronize(handle()), "s24_context_synchronize");
        }
    }

    /**
     * Whether {@link Sparse24Ops#spmm} runs tuned plans (every cuSPARSELt algorithm timed and checked against a dense
     * product once per shape, the fastest kept in memory and in the plan cache on disk) instead of cuSPARSELt's
     * default algorithm. FFN plans follow their own {@link SparseFfnOptions#algorithmSearch()}. No effect on the CPU
     * backend.
     */
    public void setAlgorithmSearch(boolean on) {
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_context_set_algorithm_search(handle(), on ? 1 : 0),
                    "s24_context_set_algorithm_search");
        }
    }

    /**
     * Sets how much scratch this context keeps between calls. A context keeps the temporaries its calls grow on
     * demand: the FFN's scratch buffer ({@link PlanInfo#workspaceBytes()}; one per context, shared by its
     * {@link SparseFfn}s) and, on CUDA, the cuBLASLt workspaces (32 MiB per stream) and the sparse GEMM's
     * temporaries. A call counts when it uses any of them (FFN forwards and backwards; on CUDA also
     * {@link SparseFfn#tune}, {@link Sparse24Ops#spmm} and {@link Sparse24Ops#gemm}). After every counted call, and
     * now:
     * <blockquote>if together they hold more than {@code maxBytes}, each one larger than the most the last
     * {@code calls} counted calls (this one included; 0: none) asked of it is released.</blockquote>
     * So after a call the context holds at most max({@code maxBytes}, what its last {@code calls} calls needed): a
     * one-off large call (e.g. T = 65536 once) stops holding memory {@code calls} counted calls later, and the next
     * call that needs a released buffer allocates it again. The defaults, {@link #DEFAULT_SCRATCH_MAX_BYTES} and
     * {@link #DEFAULT_SCRATCH_CALLS}, release nothing a steady loop keeps using: a training step of L layers on one
     * context makes 2L counted calls, and {@code calls >= L + 1} keeps the backward's scratch across the forwards.
     * {@code (0, 0)} releases everything after every call; {@code maxBytes = Long.MAX_VALUE} never releases.
     * On CUDA a release waits for the context's stream first; nothing is released while the stream is being
     * captured into a CUDA graph. {@link #scratchMemory()} shows the effect.
     *
     * @param maxBytes the high-water mark in bytes, >= 0
     * @param calls    the window in counted calls, >= 0
     */
    public void setScratchRetention(long maxBytes, long calls) {
        Args.atLeast(maxBytes, 0, "maxBytes");
        Args.atLeast(calls, 0, "calls");
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_context_set_scratch_retention(handle(), maxBytes, calls),
                    "s24_context_set_scratch_retention");
        }
    }

    /**
     * Releases every buffer {@link #setScratchRetention} describes now, after the work enqueued on this context has
     * finished; the next call allocates what it needs again. On CUDA it also gives back the memory of closed saved
     * states that the context's pool keeps for later forwards (at most the peak of the saved states alive at once).
     *
     * @throws Sparse24Exception {@code S24_ERROR_NOT_SUPPORTED} while a stream of the context is being captured
     *                           into a CUDA graph
     */
    public void releaseScratch() {
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_context_trim(handle()), "s24_context_trim");
        }
    }

    /** What this context holds between calls and its retention rule ({@link #setScratchRetention}). */
    public ScratchMemory scratchMemory() {
        try (s24_context_memory raw = new s24_context_memory(); InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_context_get_memory(handle(), raw), "s24_context_get_memory");
            long max = raw.retain_max_bytes() < 0 ? Long.MAX_VALUE : raw.retain_max_bytes();  // SIZE_MAX
            return new ScratchMemory(raw.retained_bytes(), raw.ffn_scratch_bytes(), raw.workspace_bytes(), max,
                    raw.retain_calls(), raw.releases());
        }
    }

    /** Bytes this context holds between calls for its calls' temporaries: {@link ScratchMemory#retainedBytes()}. */
    public long retainedScratchBytes() {
        return scratchMemory().retainedBytes();
    }

    /**
     * Drops this context's sparse GEMM plans and deletes the plan cache file (the tuned choices of every GPU;
     * {@code $SPARSE24_CACHE_DIR/plans/}, default {@code ~/.cache/sparse24/plans/}): later calls tune again.
     */
    public void clearPlanCache() {
        Native.check(sparse24.s24_plan_cache_clear(handle()), "s24_plan_cache_clear");
    }

    /** Whether {@link #close()} has run. */
    public boolean isClosed() {
        return handle == null;
    }

    /**
     * Closes every open resource of this context (newest first), waits for the calls still running on other
     * threads, then frees the context. Idempotent.
     *
     * @throws Sparse24Exception if the native side fails to free something (everything is still released)
     */
    @Override
    public void close() {
        List<Resource> open;
        synchronized (this) {
            if (handle == null || closing) {
                return;
            }
            closing = true;
            open = new ArrayList<>(resources);
            open.addAll(0, collectable.keySet());
        }
        Collections.reverse(open);
        RuntimeException failure = null;
        for (Resource r : open) {
            try {
                r.close();
            } catch (RuntimeException e) {
                failure = failure == null ? e : failure;
            }
        }
        s24_context h;
        synchronized (this) {
            accepting = false;
            InUse.awaitNoUsers(this, () -> users);
            h = handle;
            handle = null;
        }
        int status = sparse24.s24_context_destroy(h);
        if (failure != null) {
            throw failure;
        }
        Native.check(status, "s24_context_destroy");
    }

    @Override
    public String toString() {
        return "Sparse24[" + info + (isClosed() ? ", closed]" : "]");
    }

    /** The native handle; {@link IllegalStateException} if closed. */
    s24_context handle() {
        s24_context h = handle;
        if (h == null) {
            throw new IllegalStateException("the sparse24 context (" + info.backend() + ") is closed");
        }
        return h;
    }

    /** Marks one more call in flight; {@link IllegalStateException} once the context is closing. */
    synchronized void acquire() {
        if (!accepting || handle == null) {
            throw new IllegalStateException("the sparse24 context (" + info.backend() + ") is closed");
        }
        users++;
    }

    /** Ends a call begun by {@link #acquire()}. */
    synchronized void releaseUse() {
        if (--users == 0) {
            notifyAll();
        }
    }

    /** Tracks an open resource so that {@link #close()} closes it. */
    synchronized void track(Resource r, boolean strongly) {
        if (closing) {
            throw new IllegalStateException("the sparse24 context (" + info.backend() + ") is closed");
        }
        if (strongly) {
            resources.add(r);
        } else {
            collectable.put(r, Boolean.TRUE);
        }
    }

    /** Stops tracking a resource that was closed. */
    synchronized void forget(Resource r) {
        resources.remove(r);
        collectable.remove(r);
    }

    /**
     * Counts native bytes held by open resources. Unreachable tensors are freed by a {@link java.lang.ref.Cleaner}
     * only after a garbage collection, which native memory alone does not trigger: once the count grows by
     * {@code sparse24.gcBytes} (default 256 MiB) since the last prompt, this asks for one.
     */
    void countBytes(long delta) {
        long now = countedBytes.addAndGet(delta);
        long step = gcBytes;
        boolean collect = false;
        synchronized (this) {
            if (now > gcMark) {
                gcMark = now + step;
                collect = true;
            } else if (now + step < gcMark) {
                gcMark = Math.max(step, now + step);
            }
        }
        if (collect) {
            System.gc();
        }
    }

    /** Sets the growth of counted bytes that prompts a garbage collection (the system property's value). */
    static void gcBytes(long bytes) {
        gcBytes = bytes;
    }

    /** Native bytes held by this context's open tensors. */
    long countedBytes() {
        return countedBytes.get();
    }

    /** Allocates {@code bytes} in this context's memory (host on CPU, device on CUDA). */
    Pointer malloc(long bytes) {
        Pointer p = new Pointer();
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_malloc(handle(), bytes, p), "s24_malloc");
        }
        return p;
    }

    /** Frees memory from {@link #malloc} once the work enqueued on it has finished. */
    void free(Pointer p) {
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_free(handle(), p), "s24_free");
        }
    }

    /** Copies in stream order; host-involving copies return once the host buffer may be reused or read. */
    void copy(Pointer dst, Pointer src, long bytes, int kind) {
        try (InUse u = InUse.of(this)) {
            Native.check(sparse24.s24_memcpy(handle(), dst, src, bytes, kind), "s24_memcpy");
        }
    }
}
