package org.sparse24.torch;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

import org.bytedeco.javacpp.Pointer;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Node;
import org.bytedeco.pytorch.PointerConsumer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.sparse24.DType;
import org.sparse24.SavedState;
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
 * The saved state lives as long as the graph: the sum is multiplied by a 0-dim "anchor" tensor that only that
 * Mul node saves, so autograd frees the anchor exactly when it releases the graph's saved variables (at the end
 * of a {@code backward()} through z without {@code retain_graph}, or when the output and everything computed
 * from it are freed), and the anchor's deleter frees the saved state. A second backward through a retained graph works; one through a released graph throws.
 * {@link #close()} frees whatever is still held (forwards never backpropagated whose output is still
 * referenced). The overhead over sparse24's own forward and backward: one sum over dZ and a zero-filled tensor
 * the size of each argument's gradient (what autograd passes into the carrier hooks).
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

    /**
     * Forwards whose graph may still call back into Java. The native side holds only weak references to hook
     * and deleter objects, so they are kept here until the graph can no longer call them (a GC'd callback would
     * throw inside native code; in a deleter, which runs in a destructor, that would abort the process).
     */
    private static final Set<Call> LIVE = ConcurrentHashMap.newKeySet();

    /** Forwards by the address of their anchor's memory (one float that nothing reads). */
    private static final ConcurrentHashMap<Long, Call> ANCHORS = new ConcurrentHashMap<>();

    /**
     * The deleter of every anchor. One instance for all: the preset maps {@code from_blob}'s deleter to a plain C
     * function pointer, of which JavaCPP can have only a few (10) instances alive at once; the data pointer it
     * receives tells the forwards apart.
     */
    private static final PointerConsumer ANCHOR_FREED = new PointerConsumer() {
        @Override
        public void call(Pointer data) {
            // runs in a destructor: must not throw
            try {
                Call call = ANCHORS.remove(data.address());
                if (call != null) {
                    call.anchorFreed();
                }
            } catch (Throwable t) {
                // nothing can be reported from here; the call stays in LIVE
            } finally {
                Pointer.free(data);
            }
        }
    };

    private static final String[] NAMES = {"x", "w1", "w2"};

    private final SparseFfn ffn;
    private final Sparse24 context;
    private final DType dtype;
    private final ScalarType scalarType;
    private final Set<Call> open = new LinkedHashSet<>();
    private volatile Consumer<Sparsity> sparsityListener;
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
        long tokens = checkInputs(x, w1, w2);
        boolean[] need = {x.requires_grad(), w1.requires_grad(), w2.requires_grad()};
        if (!GradMode.is_enabled() || !(need[0] || need[1] || need[2])) {
            return shapedLike(x, run(x, w1, w2, tokens, null));
        }
        SavedState saved = ffn.newSavedState(tokens);
        Call call = null;
        Tensor z = null;
        try {
            z = run(x, w1, w2, tokens, saved);
            call = new Call(this, saved, tokens, TorchTensors.sizes(x), x, w1, w2, need);
            synchronized (this) {
                ensureOpen();
                open.add(call);
            }
            LIVE.add(call);
            call.splice(z, new Tensor[] {x, w1, w2});
            return shapedLike(x, z);
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
        return shapedLike(x, run(x, w1, w2, checkInputs(x, w1, w2), null));
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
        List<Call> calls;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            calls = new ArrayList<>(open);
            open.clear();
        }
        for (Call call : calls) {
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

    /** The sparse24 forward (training when {@code saved} is given) into a new LibTorch tensor [T, d]. */
    private Tensor run(Tensor x, Tensor w1, Tensor w2, long tokens, SavedState saved) {
        TorchTensors.useCurrentStream(context);
        long d = ffn.dModel();
        Tensor z = TorchTensors.empty(context, dtype, tokens, d);
        List<org.sparse24.Tensor> borrowed = new ArrayList<>(4);
        try {
            borrowed.add(TorchTensors.borrow(context, x, "x", tokens, d));
            borrowed.add(TorchTensors.borrow(context, w1, "w1"));
            borrowed.add(TorchTensors.borrow(context, w2, "w2"));
            borrowed.add(TorchTensors.borrow(context, z, "z"));
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
    private static Tensor shapedLike(Tensor x, Tensor z) {
        if (x.dim() == 2) {
            return z;
        }
        Tensor shaped = z.view(TorchTensors.sizes(x));
        z.close();
        return shaped;
    }

    /** Checks the arguments (before anything runs) and returns T. */
    private long checkInputs(Tensor x, Tensor w1, Tensor w2) {
        synchronized (this) {
            ensureOpen();
        }
        if (ffn.isClosed()) {
            throw new IllegalStateException("ffn: " + ffn + " is closed");
        }
        long d = ffn.dModel();
        long f = ffn.dFf();
        checkTensor(x, "x", "[..., d] = [..., " + d + "]");
        long[] xs = TorchTensors.sizes(x);
        if (xs.length < 1 || xs[xs.length - 1] != d) {
            throw new IllegalArgumentException("x: expected shape [..., d] = [..., " + d + "], got "
                    + Arrays.toString(xs));
        }
        checkTensor(w1, "w1", "[f, d] = [" + f + ", " + d + "]");
        if (!Arrays.equals(TorchTensors.sizes(w1), new long[] {f, d})) {
            throw new IllegalArgumentException("w1: expected shape [f, d] = [" + f + ", " + d + "], got "
                    + Arrays.toString(TorchTensors.sizes(w1)));
        }
        checkTensor(w2, "w2", "[d, f] = [" + d + ", " + f + "]");
        if (!Arrays.equals(TorchTensors.sizes(w2), new long[] {d, f})) {
            throw new IllegalArgumentException("w2: expected shape [d, f] = [" + d + ", " + f + "], got "
                    + Arrays.toString(TorchTensors.sizes(w2)));
        }
        return x.numel() / d;
    }

    private void checkTensor(Tensor t, String name, String shape) {
        DType got = TorchTensors.check(context, t, name);
        if (got != dtype) {
            throw new IllegalArgumentException(name + ": expected a " + scalarType + " tensor (the FFN's dtype "
                    + dtype + ") of shape " + shape + ", got " + t.scalar_type() + "; convert it with " + name
                    + ".to(ScalarType." + scalarType + ")");
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException(this + " is closed");
        }
    }

    private synchronized void forget(Call call) {
        open.remove(call);
    }

    /** Reports an event of one of this function's forwards to {@link #trace} (tests only). */
    void emit(String event) {
        Consumer<String> t = trace;
        if (t != null) {
            t.accept(event);
        }
    }

    /** Number of this function's forwards whose graph may still call back (for tests). */
    int liveForwards() {
        return (int) LIVE.stream().filter(call -> call.owner == this).count();
    }

    /**
     * One training forward spliced into the graph: its saved state, the (detached) inputs the backward reads,
     * the hooks, the anchor that tells when autograd releases the graph, and the gradients stashed between the
     * hook on z and the carriers' hooks.
     */
    private static final class Call {
        private final SparseFfnFunction owner;
        private final long tokens;
        private final long[] xSizes;
        private final boolean[] need;
        private final long[] versions = new long[3];
        private final TensorTensorHook[] carrierHooks = new TensorTensorHook[3];
        private final Node[] carrierNodes = new Node[3];
        private final TensorTensorHook zHook;
        private SavedState saved;
        private Tensor[] inputs; // detached aliases of x, w1, w2 (same memory and version counter)
        private Tensor[] stash = new Tensor[3];
        private String closedReason;
        private boolean anchorFreed;
        private boolean anchored;

        Call(SparseFfnFunction owner, SavedState saved, long tokens, long[] xSizes, Tensor x, Tensor w1, Tensor w2,
             boolean[] need) {
            this.owner = owner;
            this.saved = saved;
            this.tokens = tokens;
            this.xSizes = xSizes;
            this.need = need.clone();
            this.inputs = new Tensor[] {x.detach(), w1.detach(), w2.detach()};
            for (int i = 0; i < 3; i++) {
                versions[i] = inputs[i]._version();
            }
            zHook = new TensorTensorHook() {
                @Override
                public TensorBase call(TensorBase grad) {
                    backward(grad);
                    return grad;
                }
            };
            for (int i = 0; i < 3; i++) {
                final int input = i;
                carrierHooks[i] = new TensorTensorHook() {
                    @Override
                    public TensorBase call(TensorBase zeros) {
                        return take(input);
                    }
                };
            }
        }

        /** Adds the carriers, the anchor and the hooks to the graph; z [T, d] becomes differentiable in place. */
        void splice(Tensor z, Tensor[] args) {
            List<Pointer> temps = new ArrayList<>();
            try (TensorOptions floats = new TensorOptions(ScalarType.Float);
                 DeviceOptional anyDevice = new DeviceOptional()) {
                // The anchor: a 0-dim CPU tensor (it mixes with tensors of any device) that the Mul node below
                // saves, so that it is freed, and ANCHOR_FREED called, exactly when autograd releases this
                // graph's saved variables (after a backward through z without retain_graph, or with the graph).
                Pointer data = Pointer.malloc(Float.BYTES);
                if (data == null || data.isNull()) {
                    throw new OutOfMemoryError("malloc of the anchor's 4 bytes failed");
                }
                ANCHORS.put(data.address(), this);
                Tensor anchor;
                try {
                    anchor = torch.from_blob(data, new long[0], ANCHOR_FREED, floats, anyDevice);
                } catch (RuntimeException e) {
                    ANCHORS.remove(data.address());
                    Pointer.free(data);
                    throw e;
                }
                anchored = true;
                temps.add(anchor);
                Tensor sum = null;
                for (int i = 0; i < 3; i++) {
                    if (!need[i]) {
                        continue;
                    }
                    Tensor carrier = args[i].view_as(args[i]);
                    temps.add(carrier);
                    carrier.register_hook(carrierHooks[i]);
                    carrierNodes[i] = carrier.grad_fn();
                    Tensor empty = carrier.narrow(0, 0, 0);
                    temps.add(empty);
                    Tensor term = empty.sum();
                    temps.add(term);
                    if (sum == null) {
                        sum = term;
                    } else {
                        sum = sum.add(term);
                        temps.add(sum);
                    }
                }
                sum = sum.mul(anchor); // every backward through z runs this node, which then releases the anchor
                temps.add(sum);
                z.add_(sum); // exactly + 0; z now has a grad_fn that reaches the carriers
                z.register_hook(zHook);
            } finally {
                temps.forEach(Pointer::close);
            }
        }

        /** The hook on z: sparse24's backward for dZ = grad, stashing the gradients the carriers need. */
        synchronized void backward(TensorBase grad) {
            if (closedReason != null) {
                throw new IllegalStateException("cannot backpropagate through the sparse FFN (" + owner.ffn
                        + "): its saved state was freed because " + closedReason);
            }
            if (anchorFreed) {
                throw new IllegalStateException("trying to backpropagate through the sparse FFN (" + owner.ffn
                        + ") a second time, but its saved state was freed after the first backward; pass "
                        + "retain_graph=true to the first backward() to backpropagate twice");
            }
            for (int i = 0; i < 3; i++) {
                long now = inputs[i]._version();
                if (now != versions[i]) {
                    throw new IllegalStateException(NAMES[i] + " of the sparse FFN was modified in place after the "
                            + "forward (version " + versions[i] + ", now " + now + "); its backward needs the "
                            + "forward's " + NAMES[i] + ": modify it only after backward(), or pass a clone");
                }
            }
            owner.emit("z-hook");
            Sparse24 context = owner.context;
            long d = owner.ffn.dModel();
            long f = owner.ffn.dFf();
            boolean[] want = new boolean[3];
            for (int i = 0; i < 3; i++) {
                // false for inputs this backward does not reach (e.g. autograd::grad for some inputs only)
                want[i] = need[i] && carrierNodes[i].task_should_compute_output(0);
            }
            List<Tensor> temps = new ArrayList<>();
            List<org.sparse24.Tensor> borrowed = new ArrayList<>();
            Tensor[] grads = new Tensor[3];
            try {
                Tensor dz = new Tensor(grad);
                temps.add(dz);
                if (dz.scalar_type().intern() != owner.scalarType) {
                    dz = dz.to(owner.scalarType);
                    temps.add(dz);
                }
                if (!dz.is_contiguous()) { // e.g. the expanded gradient of a sum()
                    dz = dz.contiguous();
                    temps.add(dz);
                }
                TorchTensors.useCurrentStream(context);
                org.sparse24.Tensor bdz = TorchTensors.borrow(context, dz, "dZ", tokens, d);
                borrowed.add(bdz);
                long[][] shapes = {{tokens, d}, {f, d}, {d, f}};
                org.sparse24.Tensor[] out = new org.sparse24.Tensor[3];
                for (int i = 0; i < 3; i++) {
                    if (want[i]) {
                        grads[i] = TorchTensors.empty(context, owner.dtype, shapes[i]);
                        out[i] = TorchTensors.borrow(context, grads[i], "d" + NAMES[i]);
                        borrowed.add(out[i]);
                    }
                }
                org.sparse24.Tensor bx = TorchTensors.borrow(context, inputs[0], "x", tokens, d);
                borrowed.add(bx);
                org.sparse24.Tensor bw1 = TorchTensors.borrow(context, inputs[1], "w1");
                borrowed.add(bw1);
                org.sparse24.Tensor bw2 = TorchTensors.borrow(context, inputs[2], "w2");
                borrowed.add(bw2);
                owner.ffn.backward(saved, bx, bw1, bw2, bdz, out[0], out[1], out[2]);
            } catch (RuntimeException e) {
                for (Tensor g : grads) {
                    if (g != null) {
                        g.close();
                    }
                }
                throw e;
            } finally {
                borrowed.forEach(org.sparse24.Tensor::close);
                temps.forEach(Pointer::close);
            }
            if (grads[0] != null && xSizes.length != 2) {
                Tensor shaped = grads[0].view(xSizes);
                grads[0].close();
                grads[0] = shaped;
            }
            for (int i = 0; i < 3; i++) {
                if (stash[i] != null) { // a previous backward's gradient its carrier never took
                    stash[i].close();
                }
                stash[i] = grads[i];
            }
            Consumer<Sparsity> listener = owner.sparsityListener;
            if (listener != null) {
                listener.accept(saved.sparsity());
            }
        }

        /** A carrier's hook: the stashed gradient of input i replaces the zeros autograd computed. */
        synchronized TensorBase take(int i) {
            owner.emit(NAMES[i] + "-hook");
            Tensor g = stash[i];
            if (g == null) {
                throw new IllegalStateException("sparse FFN: no gradient of " + NAMES[i] + " was computed for this "
                        + "backward" + (closedReason != null ? " (" + closedReason + ")" : ""));
            }
            stash[i] = null;
            retireIfDone();
            return g;
        }

        /** The anchor's deleter: autograd released the graph's saved variables (or the whole graph). */
        synchronized void anchorFreed() {
            try {
                anchorFreed = true;
                owner.emit("released");
                // No backward can use the saved state any more; the carriers of a backward in progress only need
                // the stash.
                closeState(null);
                retireIfDone();
            } catch (Throwable t) {
                // never let an exception out of a native destructor
            }
        }

        /**
         * Frees the saved state and the inputs; with a reason (closed, failed) also the stashed gradients. The
         * hooks stay: the graph may still call them, and they then throw.
         */
        synchronized void closeState(String reason) {
            if (reason != null && closedReason == null) {
                closedReason = reason;
                for (int i = 0; i < 3; i++) { // nothing will take them: the graph may be dead
                    if (stash[i] != null) {
                        stash[i].close();
                        stash[i] = null;
                    }
                }
                if (anchorFreed) { // only the carriers of an interrupted backward could still call: they may not
                    drop();
                } else {
                    owner.forget(this);
                }
            }
            if (saved != null) {
                saved.close();
                saved = null;
            }
            if (inputs != null) {
                for (Tensor t : inputs) {
                    t.close();
                }
                inputs = null;
            }
        }

        /** Failure while splicing: the graph never existed. */
        synchronized void abandon() {
            closeState("the forward failed");
            if (anchored && !anchorFreed) {
                return; // a partial graph still holds the anchor: ANCHOR_FREED retires this call with it
            }
            LIVE.remove(this);
        }

        /**
         * Drops this call (from LIVE and its function) once the graph cannot call it any more: its variables are
         * released and every stashed gradient was taken. (A backward that fails between z's hook and the
         * carriers' leaves gradients stashed: {@link SparseFfnFunction#close()} frees them.)
         */
        private void retireIfDone() {
            if (anchorFreed && stash[0] == null && stash[1] == null && stash[2] == null) {
                drop();
            }
        }

        private void drop() {
            for (int i = 0; i < 3; i++) {
                if (carrierNodes[i] != null) {
                    carrierNodes[i].close();
                    carrierNodes[i] = null;
                }
            }
            LIVE.remove(this);
            owner.forget(this);
        }
    }
}
