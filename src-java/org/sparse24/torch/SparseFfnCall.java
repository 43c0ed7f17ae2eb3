package org.sparse24.torch;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

import org.bytedeco.javacpp.Pointer;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.Node;
import org.bytedeco.pytorch.PointerConsumer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.VoidTensorHook;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.sparse24.SavedState;
import org.sparse24.Sparse24;
import org.sparse24.Sparsity;

/**
 * One training forward of a {@link SparseFfnFunction} spliced into the graph: its saved state, the (detached)
 * inputs the backward reads, the hooks, the anchors that tell when autograd releases the graph's saved variables
 * and when it frees the graph, and the gradients stashed between the hook on z and the carriers' hooks.
 *
 * <p>Lifetimes. The state (saved state, inputs) is needed until the graph's saved variables are released (after
 * a backward without retain_graph, or with the graph); the hooks until the graph itself is freed: a second
 * backward through a released graph still calls the hook on z (which then throws), and autograd may free the
 * graph long after the PointerScope, sparse24 Scope or backward the forward ran in. So nothing this call keeps
 * past {@code apply()} belongs to the caller's scopes: every wrapper here holds a reference of its own (a scope
 * closing around apply() does not free it) and is closed by this call; the release anchor and the graph anchor
 * (see {@link #splice}) say when. The callbacks are per forward, not a fixed set of static ones dispatching by an
 * id: a hook receives only a gradient, nothing that tells the forwards apart. Nothing scarce is used up: LibTorch
 * keeps a hook as a std::function holding a copy of JavaCPP's callback object, which calls back through its JNI
 * weak reference, not through one of the few (10) function-pointer slots of a FunctionPointer class; only
 * {@code from_blob}'s deleter is a plain function pointer, and {@link #ANCHOR_FREED} is one for all forwards.
 */
final class SparseFfnCall {
    /**
     * Forwards whose graph may still call back into Java: from the forward until autograd frees its graph. The
     * native side holds only weak references to the callback objects, so they are kept here until then (a
     * collected callback throws NullPointerException inside the backward; in a deleter, which runs in a
     * destructor, that would abort the process).
     */
    static final Set<SparseFfnCall> LIVE = ConcurrentHashMap.newKeySet();

    /**
     * Per thread, the carrier hooks' arguments and results of calls that have returned (autograd copied them):
     * closed at the thread's next hook. At most one backward's worth stays open per autograd thread.
     */
    private static final ThreadLocal<List<Pointer>> RETURNED = ThreadLocal.withInitial(ArrayList::new);

    private static void closeReturnedArguments() {
        List<Pointer> returned = RETURNED.get();
        returned.forEach(Pointer::close);
        returned.clear();
    }

    /** What each anchor's deleter does, by the address of the anchor's memory (one float, zero). */
    private static final ConcurrentHashMap<Long, Runnable> ANCHORS = new ConcurrentHashMap<>();

    /**
     * The deleter of every anchor. One instance for all: the preset maps {@code from_blob}'s deleter to a plain C
     * function pointer, of which JavaCPP can have only a few (10) instances alive at once; the data pointer it
     * receives tells the anchors apart.
     */
    private static final PointerConsumer ANCHOR_FREED = new PointerConsumer() {
        @Override
        public void call(Pointer data) {
            // runs in a destructor: must not throw
            try {
                Runnable freed = ANCHORS.remove(data.address());
                if (freed != null) {
                    freed.run();
                }
            } catch (Throwable t) {
                // nothing can be reported from here; the call stays in LIVE
            } finally {
                Pointer.free(data);
            }
        }
    };

    static {
        // This class is first used inside apply(), often inside the caller's PointerScope, which would free the
        // deleter when it closes: every later anchor would then never call back (no forward retired, their
        // saved states kept: device memory ran out in training). One reference of our own keeps it for good.
        ANCHOR_FREED.retainReference();
    }

    private static final String[] NAMES = {"x", "w1", "w2"};
    private static final String[] GRAD_NAMES = {"dx", "dw1", "dw2"};

    /** The release anchor's options (a float on any device); kept for good like {@link #ANCHOR_FREED}. */
    private static final TensorOptions FLOATS = new TensorOptions(ScalarType.Float).retainReference();
    private static final DeviceOptional ANY_DEVICE = new DeviceOptional().retainReference();

    final SparseFfnFunction owner;
    private final long tokens;
    private final long[] xSizes;
    private final boolean[] need;
    private final long[] versions = new long[3];
    private final TensorTensorHook[] carrierHooks = new TensorTensorHook[3]; // of the inputs that need grad
    private final Node[] carrierNodes = new Node[3];
    private final VoidTensorHook zHook;
    private SavedState saved;
    private Tensor[] inputs; // detached aliases of x, w1, w2 (same memory and version counter)
    private Tensor[] stash = new Tensor[3];
    private String closedReason;
    private boolean released;      // the release anchor was freed: no backward can run any more
    private boolean graphAnchored; // the graph anchor exists: its deleter frees the callbacks
    private boolean callbacksFreed;

    SparseFfnCall(SparseFfnFunction owner, SavedState saved, long tokens, long[] xSizes, Tensor x, Tensor w1,
                  Tensor w2, boolean[] need) {
        this.owner = owner;
        this.saved = saved;
        this.tokens = tokens;
        this.xSizes = xSizes;
        this.need = need.clone();
        this.inputs = new Tensor[] {x.detach().retainReference(), w1.detach().retainReference(),
                w2.detach().retainReference()};
        for (int i = 0; i < 3; i++) {
            versions[i] = inputs[i]._version();
        }
        // A hook's argument is a copy (@ByVal) that its Java wrapper owns: it holds the gradient's memory until
        // closed (the garbage collector would free it much later: device memory grew by every step's gradients
        // on the H200). zHook only observes dZ, so it closes its argument; a carrier returns its argument (by
        // reference, copied by autograd after the hook returns), so that one is closed by the thread's next hook.
        zHook = new VoidTensorHook() {
            @Override
            public void call(TensorBase grad) {
                closeReturnedArguments();
                try {
                    backward(grad);
                } finally {
                    grad.close();
                }
            }
        }.retainReference();
        owner.callbacks.incrementAndGet();
        for (int i = 0; i < 3; i++) {
            if (!need[i]) {
                continue;
            }
            final int input = i;
            carrierHooks[i] = new TensorTensorHook() {
                @Override
                public TensorBase call(TensorBase zeros) {
                    closeReturnedArguments();
                    RETURNED.get().add(zeros);
                    TensorBase out = take(input, zeros);
                    if (out != zeros) {
                        RETURNED.get().add(out);
                    }
                    return out;
                }
            }.retainReference();
            owner.callbacks.incrementAndGet();
        }
    }

    /**
     * Adds the carriers, the anchors and the hooks to the graph; z [T, d] becomes differentiable in place:
     * {@code z += (graphAnchor.sum() + carrier_x[0:0].sum() + ...) * releaseAnchor}, exactly + 0.
     */
    void splice(Tensor z, Tensor[] args) {
        List<Pointer> temps = new ArrayList<>();
        try {
            // The release anchor: a 0-dim CPU tensor (it mixes with tensors of any device) that only the Mul node
            // below saves, so that it is freed, and released() called, exactly when autograd releases this
            // graph's saved variables (after a backward through z without retain_graph, or with the graph).
            Tensor releaseAnchor = anchor(this::released, new long[0], FLOATS, ANY_DEVICE);
            temps.add(releaseAnchor);
            // The graph anchor: an empty leaf that requires grad, on z's device (its empty gradient stays there;
            // its data is never read). The AccumulateGrad node that owns it is reachable only through the
            // nodes below, so it is freed, and graphFreed() called, when autograd frees those nodes, the hooks'
            // nodes with them: from then on nothing can call this forward's callbacks.
            Tensor graphAnchor = anchor(this::graphFreed, new long[] {0},
                    TorchTensors.options(owner.context, owner.dtype), TorchTensors.deviceOptional(owner.context));
            graphAnchored = true;
            temps.add(graphAnchor);
            graphAnchor.set_requires_grad(true);
            Tensor sum = graphAnchor.sum();
            temps.add(sum);
            for (int i = 0; i < 3; i++) {
                if (!need[i]) {
                    continue;
                }
                Tensor carrier = args[i].view_as(args[i]);
                temps.add(carrier);
                carrier.register_hook(carrierHooks[i]);
                carrierNodes[i] = carrier.grad_fn().retainReference();
                Tensor empty = carrier.narrow(0, 0, 0);
                temps.add(empty);
                Tensor term = empty.sum();
                temps.add(term);
                sum = sum.add(term);
                temps.add(sum);
            }
            sum = sum.mul(releaseAnchor); // every backward through z runs this node, which then releases the anchor
            temps.add(sum);
            z.add_(sum); // exactly + 0; z now has a grad_fn that reaches the carriers and the graph anchor
            z.register_hook(zHook);
        } finally {
            temps.forEach(Pointer::close);
        }
    }

    /** A zero tensor of {@code sizes} over a malloc'ed float whose deleter runs {@code freed}. */
    private static Tensor anchor(Runnable freed, long[] sizes, TensorOptions options, DeviceOptional device) {
        Pointer data = Pointer.malloc(Float.BYTES);
        if (data == null || data.isNull()) {
            throw new OutOfMemoryError("malloc of an anchor's 4 bytes failed");
        }
        Pointer.memset(data, 0, Float.BYTES); // the Mul reads the release anchor: uninitialized, it could be a NaN
        ANCHORS.put(data.address(), freed);
        try {
            return torch.from_blob(data, sizes, ANCHOR_FREED, options, device);
        } catch (RuntimeException e) {
            ANCHORS.remove(data.address());
            Pointer.free(data);
            throw e;
        }
    }

    /** The hook on z: sparse24's backward for dZ = grad, stashing the gradients the carriers need. */
    synchronized void backward(TensorBase grad) {
        if (closedReason != null) {
            throw new IllegalStateException("cannot backpropagate through the sparse FFN (" + owner.ffn
                    + "): its saved state was freed because " + closedReason);
        }
        if (released) {
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
                    out[i] = TorchTensors.borrowChecked(context, grads[i], owner.dtype, GRAD_NAMES[i], shapes[i]);
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
        Consumer<SavedState> probe = owner.savedProbe;
        if (probe != null) {
            probe.accept(saved);
        }
    }

    /**
     * A carrier's hook: the stashed gradient of input i replaces the zeros autograd computed. It is copied into
     * autograd's zero tensor and freed at once: a Java tensor returned to autograd would keep the gradient's memory
     * (device memory on CUDA) until the garbage collector runs.
     */
    synchronized TensorBase take(int i, TensorBase zeros) {
        owner.emit(NAMES[i] + "-hook");
        Tensor g = stash[i];
        if (g == null) {
            throw new IllegalStateException("sparse FFN: no gradient of " + NAMES[i] + " was computed for this "
                    + "backward" + (closedReason != null ? " (" + closedReason + ")" : ""));
        }
        stash[i] = null;
        retireIfDone();
        if (zeros.is_contiguous() && zeros.numel() == g.numel() && zeros.scalar_type().intern() == owner.scalarType) {
            try (Tensor into = new Tensor(zeros)) {
                into.copy_(g);
            }
            g.close();
            return zeros;
        }
        return g; // (not expected: autograd's gradient of a view is a fresh contiguous tensor)
    }

    /** The release anchor's deleter: autograd released the graph's saved variables (or freed the graph). */
    private synchronized void released() {
        released = true;
        owner.emit("released");
        // No backward can use the saved state any more; the carriers of a backward in progress only need the stash.
        closeState(null);
        retireIfDone();
    }

    /** The graph anchor's deleter: autograd freed the graph, so nothing can call this forward's callbacks. */
    private synchronized void graphFreed() {
        closeState("its graph was freed"); // e.g. the gradients of a backward stopped before the carriers
        freeCallbacks();
    }

    /**
     * Frees the saved state and the inputs; with a reason (closed, failed, graph freed) also the stashed
     * gradients, and the forward is no longer pending. The hooks stay until the graph is freed: it may still call
     * them, and they then throw.
     */
    synchronized void closeState(String reason) {
        if (reason != null) {
            if (closedReason == null) {
                closedReason = reason;
            }
            for (int i = 0; i < 3; i++) { // nothing will take them now
                if (stash[i] != null) {
                    stash[i].close();
                    stash[i] = null;
                }
            }
            leavePending();
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

    /** Failure while splicing or after. */
    synchronized void abandon() {
        closeState("the forward failed");
        if (!graphAnchored) {
            freeCallbacks(); // no graph holds them
        } // else graphFreed() frees them with the partial graph (the caller closes z)
    }

    /**
     * Once its variables are released and every stashed gradient was taken, the forward is no longer pending.
     * (A backward that fails between z's hook and the carriers' leaves gradients stashed: they are freed with
     * the graph, or by {@link SparseFfnFunction#close()}.)
     */
    private void retireIfDone() {
        if (released && stash[0] == null && stash[1] == null && stash[2] == null) {
            leavePending();
        }
    }

    /** Leaves the function's pending forwards; the carrier nodes (only a backward reads them) go too. */
    private void leavePending() {
        for (int i = 0; i < 3; i++) {
            if (carrierNodes[i] != null) {
                carrierNodes[i].close();
                carrierNodes[i] = null;
            }
        }
        owner.forget(this);
    }

    /** Frees the callbacks once no graph can call them. */
    private void freeCallbacks() {
        if (callbacksFreed) {
            return;
        }
        callbacksFreed = true;
        zHook.close();
        owner.callbacks.decrementAndGet();
        for (TensorTensorHook hook : carrierHooks) {
            if (hook != null) {
                hook.close();
                owner.callbacks.decrementAndGet();
            }
        }
        LIVE.remove(this);
    }
}
