package org.sparse24.torch;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.sparse24.DType;
import org.sparse24.SavedState;
import org.sparse24.Scope;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.Sparsity;

/**
 * A {@link SparseFfn} as a differentiable LibTorch operation:
 * <pre>{@code
 * try (SparseFfnFunction f = new SparseFfnFunction(ffn)) {
 *     Tensor z = f.apply(x, w1, w2);     // x [..., d], w1 [f, d], w2 [d, f]  ->  z [..., d]
 *     loss(z).backward();                // fills w1.grad(), w2.grad() and x's gradient (or flows upstream)
 * }
 * }</pre>
 * The forward and the backward are sparse24's (2:4 forward, split weight-gradient GEMMs, token permutation, as
 * the FFN's {@link org.sparse24.SparseFfnOptions} say); the gradients reach LibTorch's autograd like those of any
 * other operation: accumulated into {@code .grad()} of leaves, propagated to whatever produced {@code x}.
 *
 * <h2>Arguments</h2>
 * LibTorch tensors of the FFN's dtype (Float = FP32 on the CPU backend, BFloat16 = BF16, Half = FP16) on the
 * FFN's context's device (CPU tensors for the CPU backend; CUDA tensors of the context's device for CUDA),
 * contiguous: a non-contiguous argument is rejected with {@link IllegalArgumentException} (call
 * {@code .contiguous()} on it first; autograd flows through that copy). No argument is copied: sparse24 reads
 * their memory and writes the output into a LibTorch tensor. On CUDA every call runs on LibTorch's current
 * CUDA stream ({@link TorchTensors#useCurrentStream}).
 *
 * <h2>How the gradients get into autograd</h2>
 * The preset cannot subclass {@code torch::autograd::Function} or {@code Node}, so {@code apply} splices the
 * FFN into the graph with tensor hooks:
 * <ol>
 *   <li>{@code z} is computed by sparse24 outside autograd; the forward's {@link SavedState} is kept.</li>
 *   <li>For each of x, w1, w2 that requires grad, a <em>carrier</em> alias {@code c = t.view_as(t)} is made and
 *       {@code z += c.narrow(0, 0, 0).sum()} (a sum over an empty slice: exactly 0, never NaN), in place. So
 *       {@code z} now depends on x, w1 and w2 in the graph, with gradient zero.</li>
 *   <li>A hook on {@code z} receives dZ and runs sparse24's backward, which stashes dX, dW1, dW2 (LibTorch
 *       tensors). Hooks on the carriers replace their zero gradient by the stashed one. The carriers are
 *       upstream of {@code z}, so autograd always runs {@code z}'s hook first.</li>
 * </ol>
 * The overhead over sparse24's own forward and backward: one sum over dZ, and a zero-filled tensor the size of
 * each argument's gradient (what autograd passes into the carrier hooks) into which that gradient is copied (so
 * that no Java object holds it until garbage collection).
 *
 * <h2>Lifetimes</h2>
 * What a forward keeps for its backward belongs to its graph, not to a JavaCPP {@code PointerScope} or sparse24
 * {@link org.sparse24.Scope} open around {@code apply} (or around the backward): a forward may run in a scope that
 * closes before its backward. The saved state (and what else the backward reads) is freed when autograd releases
 * the graph's saved variables: at the end of a {@code backward()} through z without {@code retain_graph}, or
 * when the output and everything computed from it are freed (the sum above is multiplied by a 0-dim "release
 * anchor" that only that Mul node saves; its deleter frees the state). The hook callbacks are freed when
 * autograd frees the graph itself (an empty "graph anchor" in the sum is owned by the graph's nodes): until then
 * the graph may still call them — a second backward through a retained graph works, one through a released
 * graph throws. {@link #close()} frees the state still held (forwards never backpropagated whose output is
 * still referenced).
 *
 * <p>Under {@code NoGradGuard}, or when no argument requires grad, {@code apply} is {@link #infer}: no graph,
 * nothing kept. The backward needs x, w1, w2 as they were in the forward: modifying one in place before the
 * backward (e.g. an optimizer step) makes the backward throw, as LibTorch does for its own saved tensors.
 * Exceptions thrown inside the hooks reach the caller of {@code backward()} as a {@link RuntimeException}
 * whose message names them.
 */
public final class SparseFfnFunction implements AutoCloseable {
    /** Test probe: receives "forward", "z-hook", "x-hook", "w1-hook", "w2-hook", "released" as they happen. */
    volatile Consumer<String> trace;

    /** Test probe: receives each backward's saved state (its dense features, statistics) before it can be freed. */
    volatile Consumer<SavedState> savedProbe;

    private static final String[] NAMES = {"x", "w1", "w2"};

    final SparseFfn ffn;
    final Sparse24 context;
    final DType dtype;
    final ScalarType scalarType;
    private final Set<SparseFfnCall> open = new LinkedHashSet<>();
    /** Hook callbacks of this function's forwards not yet freed (they are freed with their graph). */
    final AtomicInteger callbacks = new AtomicInteger();
    volatile Consumer<Sparsity> sparsityListener;
    private boolean closed;

    /**
     * @param ffn the layer to run; it (and its context) stays the caller's to close, after this function
     */
    public SparseFfnFunction(SparseFfn ffn) {
        if (ffn == null) {
            throw new IllegalArgumentException("ffn must not be null");
        }
        if (ffn.isClosed()) {
            throw new IllegalStateException("ffn: " + ffn + " is closed");
        }
        this.ffn = ffn;
        this.context = ffn.context();
        this.dtype = ffn.dtype();
        this.scalarType = TorchTensors.scalarType(dtype);
    }

    /** The layer. */
    public SparseFfn ffn() {
        return ffn;
    }

    /**
     * Calls {@code listener} after every backward with that step's statistics (activation sparsity, values
     * dropped by the 2:4 forward and by the split backward). Reading them synchronizes the context's stream, so
     * on CUDA set it only for the steps you log; {@code null} removes it.
     */
    public void setSparsityListener(Consumer<Sparsity> listener) {
        this.sparsityListener = listener;
    }

    /**
     * Z = FFN(x) as a node of LibTorch's autograd graph (see the class comment).
     *
     * @param x  [..., d] (e.g. [T, d] or [B, S, d]; the leading dimensions are the tokens)
     * @param w1 [f, d]
     * @param w2 [d, f]
     * @return z, x's shape, a new LibTorch tensor; it requires grad when any argument does (and grad mode is on)
     */
    public Tensor apply(Tensor x, Tensor w1, Tensor w2) {
        long[] xSizes = checkInputs(x, w1, w2);
        long tokens = x.numel() / ffn.dModel();
        boolean[] need = {x.requires_grad(), w1.requires_grad(), w2.requires_grad()};
        if (!GradMode.is_enabled() || !(need[0] || need[1] || need[2])) {
            return shapedLike(xSizes, run(x, w1, w2, tokens, null));
        }
        SavedState saved;
        try (Scope own = Sparse24.scope()) { // the graph owns it (see SparseFfnCall), not a Scope open around us
            saved = own.keep(ffn.newSavedState(tokens));
        }
        SparseFfnCall call = null;
        Tensor z = null;
        try {
            z = run(x, w1, w2, tokens, saved);
            call = new SparseFfnCall(this, saved, tokens, xSizes, x, w1, w2, need);
            synchronized (this) {
                ensureOpen();
                open.add(call);
            }
            SparseFfnCall.LIVE.add(call);
            call.splice(z, new Tensor[] {x, w1, w2});
            return shapedLike(xSizes, z);
        } catch (RuntimeException | Error e) {
            if (call != null) {
                call.abandon();
            } else {
                saved.close();
            }
            if (z != null) {
                z.close();
            }
            throw e;
        }
    }

    /**
     * Z = FFN(x) outside autograd: no graph, nothing kept for a backward (the inference forward).
     *
     * @param x  [..., d]
     * @param w1 [f, d]
     * @param w2 [d, f]
     * @return z, x's shape, a new LibTorch tensor that does not require grad
     */
    public Tensor infer(Tensor x, Tensor w1, Tensor w2) {
        long[] xSizes = checkInputs(x, w1, w2);
        return shapedLike(xSizes, run(x, w1, w2, x.numel() / ffn.dModel(), null));
    }

    /**
     * Forwards still holding memory: their graph may still be backpropagated (saved state held), or a backward
     * through it has not yet handed all its gradients to autograd. 0 after every forward has been backpropagated
     * (without {@code retain_graph}) or its output dropped.
     */
    public synchronized int pendingForwards() {
        return open.size();
    }

    /**
     * Frees what every pending forward holds (see {@link #pendingForwards()}); a later backward through one of
     * them throws {@link IllegalStateException}. Does not close the FFN. Idempotent.
     */
    @Override
    public void close() {
        List<SparseFfnCall> calls;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            calls = new ArrayList<>(open);
            open.clear();
        }
        for (SparseFfnCall call : calls) {
            call.closeState("the SparseFfnFunction was closed");
        }
    }

    /** Whether {@link #close()} has run. */
    public synchronized boolean isClosed() {
        return closed;
    }

    @Override
    public String toString() {
        return "SparseFfnFunction[" + ffn + (isClosed() ? ", closed]" : "]");
    }

    /**
     * The sparse24 forward (training when {@code saved} is given) into a new LibTorch tensor [T, d]; the
     * arguments passed {@link #checkInputs}.
     */
    private Tensor run(Tensor x, Tensor w1, Tensor w2, long tokens, SavedState saved) {
        TorchTensors.useCurrentStream(context);
        long d = ffn.dModel();
        Tensor z = TorchTensors.empty(context, dtype, tokens, d);
        List<org.sparse24.Tensor> borrowed = new ArrayList<>(4);
        try {
            borrowed.add(TorchTensors.borrowChecked(context, x, dtype, "x", tokens, d));
            borrowed.add(TorchTensors.borrowChecked(context, w1, dtype, "w1", ffn.dFf(), d));
            borrowed.add(TorchTensors.borrowChecked(context, w2, dtype, "w2", d, ffn.dFf()));
            borrowed.add(TorchTensors.borrowChecked(context, z, dtype, "z", tokens, d));
            if (saved == null) {
                ffn.infer(borrowed.get(0), borrowed.get(1), borrowed.get(2), borrowed.get(3));
            } else {
                ffn.forward(borrowed.get(0), borrowed.get(1), borrowed.get(2), borrowed.get(3), saved);
                emit("forward");
            }
        } catch (RuntimeException e) {
            z.close();
            throw e;
        } finally {
            borrowed.forEach(org.sparse24.Tensor::close);
        }
        return z;
    }

    /** z [T, d] viewed with x's shape [..., d] (z itself when x is 2-D). */
    private static Tensor shapedLike(long[] xSizes, Tensor z) {
        if (xSizes.length == 2) {
            return z;
        }
        Tensor shaped = z.view(xSizes);
        z.close();
        return shaped;
    }

    /** Checks the arguments (before anything runs) and returns x's sizes. */
    private long[] checkInputs(Tensor x, Tensor w1, Tensor w2) {
        synchronized (this) {
            ensureOpen();
        }
        if (ffn.isClosed()) {
            throw new IllegalStateException("ffn: " + ffn + " is closed");
        }
        long d = ffn.dModel();
        long f = ffn.dFf();
        checkTensor(x, 0);
        long[] xs = TorchTensors.sizes(x);
        if (xs.length < 1 || xs[xs.length - 1] != d) {
            throw new IllegalArgumentException("x: expected shape " + shapeText(0) + ", got " + Arrays.toString(xs));
        }
        checkTensor(w1, 1);
        if (w1.dim() != 2 || w1.size(0) != f || w1.size(1) != d) {
            throw new IllegalArgumentException("w1: expected shape " + shapeText(1) + ", got "
                    + Arrays.toString(TorchTensors.sizes(w1)));
        }
        checkTensor(w2, 2);
        if (w2.dim() != 2 || w2.size(0) != d || w2.size(1) != f) {
            throw new IllegalArgumentException("w2: expected shape " + shapeText(2) + ", got "
                    + Arrays.toString(TorchTensors.sizes(w2)));
        }
        return xs;
    }

    /** Argument i's expected shape in messages. */
    private String shapeText(int i) {
        long d = ffn.dModel();
        long f = ffn.dFf();
        return i == 0 ? "[..., d] = [..., " + d + "]"
                : i == 1 ? "[f, d] = [" + f + ", " + d + "]" : "[d, f] = [" + d + ", " + f + "]";
    }

    private void checkTensor(Tensor t, int i) {
        String name = NAMES[i];
        DType got = TorchTensors.check(context, t, name);
        if (got != dtype) {
            throw new IllegalArgumentException(name + ": expected a " + scalarType + " tensor (the FFN's dtype "
                    + dtype + ") of shape " + shapeText(i) + ", got " + t.scalar_type() + "; convert it with "
                    + name + ".to(ScalarType." + scalarType + ")");
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException(this + " is closed");
        }
    }

    synchronized void forget(SparseFfnCall call) {
        open.remove(call);
    }

    /** Reports an event of one of this function's forwards to {@link #trace} (tests only). */
    void emit(String event) {
        Consumer<String> t = trace;
        if (t != null) {
            t.accept(event);
        }
    }

    /** Number of this function's forwards whose graph may still call back: not yet freed (for tests). */
    int liveForwards() {
        return (int) SparseFfnCall.LIVE.stream().filter(call -> call.owner == this).count();
    }

    /** Number of hook callbacks of this function's forwards not yet freed (for tests). */
    int liveCallbacks() {
        return callbacks.get();
    }
}
