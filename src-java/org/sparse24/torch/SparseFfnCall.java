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
 * inputs the backward reads, the hooks, the anchor that tells when autograd releases the graph, and the gradients stashed between the
 * hook on z and the carriers' hooks.
 */
final class SparseFfnCall {
    /**
     * Forwards whose graph may still call back into Java. The native side holds only weak references to hook
     * and deleter objects, so they are kept here until the graph can no longer call them (a GC'd callback would
     * throw inside native code; in a deleter, which runs in a destructor, that would abort the process).
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

    /** Forwards by the address of their anchor's memory (one float that nothing reads). */
    private static final ConcurrentHashMap<Long, SparseFfnCall> ANCHORS = new ConcurrentHashMap<>();

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
                SparseFfnCall call = ANCHORS.remove(data.address());
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

    static {
        // This class is first used inside apply(), often inside the caller's PointerScope, which would free the
        // deleter when it closes: every later anchor would then never call back (no forward retired, their
        // saved states kept: device memory ran out in training). One reference of our own keeps it for good.
        ANCHOR_FREED.retainReference();
    }

    private static final String[] NAMES = {"x", "w1", "w2"};

    final SparseFfnFunction owner;
    private final long tokens;
    private final long[] xSizes;
    private final boolean[] need;
    private final long[] versions = new long[3];
    private final TensorTensorHook[] carrierHooks = new TensorTensorHook[3];
    private final Node[] carrierNodes = new Node[3];
    private final VoidTensorHook zHook;
    private SavedState saved;
    private Tensor[] inputs; // detached aliases of x, w1, w2 (same memory and version counter)
    private Tensor[] stash = new Tensor[3];
    private String closedReason;
    private boolean anchorFreed;
    private boolean anchored;

    SparseFfnCall(SparseFfnFunction owner, SavedState saved, long tokens, long[] xSizes, Tensor x, Tensor w1,
                  Tensor w2, boolean[] need) {
        this.owner = owner;
        this.saved = saved;
        this.tokens = tokens;
        this.xSizes = xSizes;
        this.need = need.clone();
        this.inputs = new Tensor[] {x.detach(), w1.detach(), w2.detach()};
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
        };
        for (int i = 0; i < 3; i++) {
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
