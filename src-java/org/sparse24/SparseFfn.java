package org.sparse24;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.WeakHashMap;

import org.sparse24.binding.s24_ffn;
import org.sparse24.binding.s24_ffn_info;
import org.sparse24.binding.s24_ffn_options;
import org.sparse24.binding.s24_saved;
import org.sparse24.binding.global.sparse24;

/**
 * A Squared-ReLU feed-forward layer with 2:4 activation sparsity:
 * <pre>
 *   forward   H = X W1^T;  Yhat = S24_rows(relu(H)^2);  Z = Yhat W2^T
 *   backward  dYhat = dZ W2;  dH = dYhat * 2 sqrt(Yhat);  dX = dH W1;  dW2 = dZ^T Yhat;  dW1 = dH^T X
 * </pre>
 * with X [T, d], W1 [f, d], W2 [d, f] (PyTorch's Linear layout), row-major, all of this FFN's dtype and
 * context. The weight gradients use the split GEMM (dense features exact, the rest 2:4 along permuted tokens)
 * when {@link SparseFfnOptions#sparseBackward()} is on. The layer holds no weights: they are arguments.
 *
 * <p>Dense warm-up: the first {@link SparseFfnOptions#denseWarmupSteps()} training forwards ({@code forward}, not
 * {@code infer}) run the exact dense FFN, the later ones the options' 2:4; a backward runs in the mode of its
 * forward (its {@link SavedState} knows). {@link #stepsTaken()} and {@link #isSparseNow()} tell where it is.
 *
 * <p>One native plan is created and cached per token count T. Every argument is checked before the native
 * call: {@link IllegalArgumentException} (null, wrong shape, dtype or context) or
 * {@link IllegalStateException} (closed) name the argument; native failures throw {@link Sparse24Exception}.
 */
public final class SparseFfn extends Resource {
    private final long dModel;
    private final long dFf;
    private final DType dtype;
    private final SparseFfnOptions options;
    private final Map<Long, s24_ffn> plans = new HashMap<>();
    private final Map<Long, s24_ffn> warmupPlans = new HashMap<>(); // the dense plans of the warm-up steps
    private long stepsTaken; // training forwards run, guarded by this
    private final Set<SavedState> savedStates = Collections.newSetFromMap(new WeakHashMap<>());  // open ones

    /**
     * @param context the context whose backend runs the layer
     * @param dModel  d, the model width (>= 1)
     * @param dFf     f, the FFN width (>= 4, a multiple of 4)
     * @param dtype   storage type of every tensor (FP32 on the CPU backend only)
     * @param options sparsity options
     */
    public SparseFfn(Sparse24 context, long dModel, long dFf, DType dtype, SparseFfnOptions options) {
        super(checkedContext(context));
        Args.atLeast(dModel, 1, "dModel");
        if (dFf < 4 || dFf % 4 != 0) {
            throw new IllegalArgumentException(
                    "dFf must be a positive multiple of 4 (2:4 works on groups of 4 features), got " + dFf);
        }
        Args.notNull(dtype, "dtype");
        DType.requireFloating(dtype, "dtype");
        if (dtype == DType.FP32 && context.backend() != Backend.CPU) {
            throw new IllegalArgumentException("dtype FP32 is supported on the CPU backend only; use BF16 or FP16 on "
                    + context.backend());
        }
        Args.notNull(options, "options");
        this.dModel = dModel;
        this.dFf = dFf;
        this.dtype = dtype;
        this.options = options;
        track(null, 0);
    }

    /** d. */
    public long dModel() {
        return dModel;
    }

    /** f. */
    public long dFf() {
        return dFf;
    }

    /** The storage type of every tensor argument. */
    public DType dtype() {
        return dtype;
    }

    /** The sparsity options. */
    public SparseFfnOptions options() {
        return options;
    }

    /** Training forwards run so far ({@code forward}, not {@code infer}); counts the dense warm-up steps. */
    public synchronized long stepsTaken() {
        return stepsTaken;
    }

    /**
     * Whether the next training forward (and an inference now) uses the options' 2:4: false during the dense
     * warm-up, and always when {@link SparseFfnOptions#sparseForward()} is off.
     */
    public synchronized boolean isSparseNow() {
        return options.sparseForward() && !inWarmup();
    }

    /** How the layer runs for {@code tokens} tokens on this backend with its options, after any dense warm-up. */
    public PlanInfo planInfo(long tokens) {
        Args.atLeast(tokens, 1, "tokens");
        try (s24_ffn_info info = new s24_ffn_info(); InUse u = InUse.of(context(), this)) {
            Native.check(sparse24.s24_ffn_get_info(plan(tokens, false), info), "s24_ffn_get_info");
            return new PlanInfo(info.tokens(), info.sparse_forward_path() != 0, info.sparse_backward_path() != 0,
                    info.dense_features(), info.workspace_bytes(), info.saved_bytes());
        }
    }

    /**
     * Prepares the sparse GEMM plans for {@code tokens} tokens now (tuned, or read back from the plan cache on disk
     * and validated, when {@link SparseFfnOptions#algorithmSearch()} is on), so that the first forward and backward
     * after any dense warm-up do not pay for it. Waits for the context's stream.
     */
    public void tune(long tokens) {
        Args.atLeast(tokens, 1, "tokens");
        try (InUse u = InUse.of(context(), this)) {
            Native.check(sparse24.s24_ffn_tune(plan(tokens, false)), "s24_ffn_tune");
        }
    }

    /**
     * An empty saved state for forwards of {@code tokens} tokens (for
     * {@link #forward(Tensor, Tensor, Tensor, Tensor, SavedState)}), of the mode of the next training forward:
     * a state made during the dense warm-up serves only warm-up steps, one made after it only 2:4 steps.
     */
    public SavedState newSavedState(long tokens) {
        Args.atLeast(tokens, 1, "tokens");
        boolean warmup;
        s24_saved handle = new s24_saved();
        try (InUse u = InUse.of(context(), this)) {
            synchronized (this) {
                warmup = inWarmup();
                Native.check(sparse24.s24_saved_create(plan(tokens, warmup), handle), "s24_saved_create");
            }
        }
        try {
            SavedState saved = new SavedState(this, tokens, handle, warmup);
            synchronized (this) {
                savedStates.add(saved);
            }
            return saved;
        } catch (RuntimeException e) {  // the context began closing meanwhile
            sparse24.s24_saved_destroy(handle);
            throw e;
        }
    }

    /**
     * Training forward: Z [T, d] and the state the backward needs. Consumes one step of the permutation sequence.
     *
     * @param x  [T, d]
     * @param w1 [f, d]
     * @param w2 [d, f]
     */
    public ForwardResult forward(Tensor x, Tensor w1, Tensor w2) {
        long tokens = checkInputs(x, w1, w2);
        Tensor z = Tensor.allocate(context(), dtype, tokens, dModel).named("z");
        SavedState saved = null;
        try {
            saved = newSavedState(tokens);
            forward(x, w1, w2, z, saved);
            return new ForwardResult(z, saved);
        } catch (RuntimeException e) {
            z.close();
            if (saved != null) {
                saved.close();
            }
            throw e;
        }
    }

    /**
     * Training forward into caller-provided {@code z} [T, d] and {@code saved} (of this FFN, for T tokens, made
     * in the mode of this step: see {@link #newSavedState(long)}).
     */
    public void forward(Tensor x, Tensor w1, Tensor w2, Tensor z, SavedState saved) {
        long tokens = checkInputs(x, w1, w2);
        Args.tensor(z, "z", context(), dtype, "[T, d]", tokens, dModel);
        checkSaved(saved, tokens);
        try (InUse u = InUse.of(context(), this, x, w1, w2, z, saved)) {
            Args.noAliasing(1, new String[] {"z", "x", "w1", "w2"}, z, x, w1, w2);
            synchronized (this) {
                if (saved.denseWarmup() != inWarmup()) {
                    throw new IllegalStateException("saved: " + saved.describe() + " was made for "
                            + (saved.denseWarmup() ? "a dense warm-up step" : "a 2:4 step") + ", but training forward "
                            + stepsTaken + " is " + (inWarmup() ? "a dense warm-up step" : "a 2:4 step")
                            + " (denseWarmupSteps=" + options.denseWarmupSteps() + "); make it with newSavedState");
                }
            }
            Native.check(sparse24.s24_ffn_forward(plan(tokens, saved.denseWarmup()), x.data(), w1.data(), w2.data(),
                    z.data(), saved.handle()), "s24_ffn_forward");
            saved.markFilled(x, w1, w2);
            synchronized (this) {
                stepsTaken++;
            }
        }
    }

    /** Inference forward: Z [T, d], nothing kept for a backward. */
    public Tensor infer(Tensor x, Tensor w1, Tensor w2) {
        long tokens = checkInputs(x, w1, w2);
        Tensor z = Tensor.allocate(context(), dtype, tokens, dModel).named("z");
        try {
            infer(x, w1, w2, z);
            return z;
        } catch (RuntimeException e) {
            z.close();
            throw e;
        }
    }

    /** Inference forward into a caller-provided {@code z} [T, d]; dense while the warm-up lasts. */
    public void infer(Tensor x, Tensor w1, Tensor w2, Tensor z) {
        long tokens = checkInputs(x, w1, w2);
        Args.tensor(z, "z", context(), dtype, "[T, d]", tokens, dModel);
        boolean warmup;
        synchronized (this) {
            warmup = inWarmup();
        }
        try (InUse u = InUse.of(context(), this, x, w1, w2, z)) {
            Args.noAliasing(1, new String[] {"z", "x", "w1", "w2"}, z, x, w1, w2);
            Native.check(sparse24.s24_ffn_forward(plan(tokens, warmup), x.data(), w1.data(), w2.data(), z.data(),
                    null), "s24_ffn_forward");
        }
    }

    /**
     * Gradients of the forward that filled {@code saved}, given dZ.
     *
     * @param saved from the forward whose inputs x, w1, w2 are (the same memory, contents unchanged; other memory
     *              throws {@link IllegalArgumentException})
     * @param dz    [T, d]
     * @return dX [T, d], dW1 [f, d], dW2 [d, f]
     */
    public Gradients backward(SavedState saved, Tensor x, Tensor w1, Tensor w2, Tensor dz) {
        long tokens = checkInputs(x, w1, w2);
        List<Tensor> out = new ArrayList<>(3);
        try {
            out.add(Tensor.allocate(context(), dtype, tokens, dModel).named("dX"));
            out.add(Tensor.allocate(context(), dtype, dFf, dModel).named("dW1"));
            out.add(Tensor.allocate(context(), dtype, dModel, dFf).named("dW2"));
            backward(saved, x, w1, w2, dz, out.get(0), out.get(1), out.get(2));
            return new Gradients(out.get(0), out.get(1), out.get(2));
        } catch (RuntimeException e) {
            out.forEach(Tensor::close);
            throw e;
        }
    }

    /**
     * Gradients into caller-provided tensors; any of {@code dx} [T, d], {@code dw1} [f, d], {@code dw2} [d, f]
     * may be {@code null} to skip it. Weight gradients are overwritten, not accumulated.
     */
    public void backward(SavedState saved, Tensor x, Tensor w1, Tensor w2, Tensor dz, Tensor dx, Tensor dw1,
                         Tensor dw2) {
        long tokens = checkInputs(x, w1, w2);
        checkSaved(saved, tokens);
        if (!saved.isFilled()) {
            throw new IllegalStateException("saved: " + saved.describe() + " has not been filled by a forward");
        }
        Args.tensor(dz, "dz", context(), dtype, "[T, d]", tokens, dModel);
        if (dx != null) {
            Args.tensor(dx, "dx", context(), dtype, "[T, d]", tokens, dModel);
        }
        if (dw1 != null) {
            Args.tensor(dw1, "dw1", context(), dtype, "[f, d]", dFf, dModel);
        }
        if (dw2 != null) {
            Args.tensor(dw2, "dw2", context(), dtype, "[d, f]", dModel, dFf);
        }
        try (InUse u = InUse.of(context(), this, saved, x, w1, w2, dz, dx, dw1, dw2)) {
            Args.noAliasing(3, new String[] {"dx", "dw1", "dw2", "x", "w1", "w2", "dz"}, dx, dw1, dw2, x, w1, w2, dz);
            saved.checkForwardInputs(x, w1, w2);
            Native.check(sparse24.s24_ffn_backward(plan(tokens, saved.denseWarmup()), saved.handle(), x.data(),
                    w1.data(), w2.data(), dz.data(), dx == null ? null : dx.data(), dw1 == null ? null : dw1.data(),
                    dw2 == null ? null : dw2.data()), "s24_ffn_backward");
        }
    }

    @Override
    public String toString() {
        return describe() + " " + options + (isClosed() ? " (closed)" : "");
    }

    @Override
    String describe() {
        return "SparseFfn(d=" + dModel + ", f=" + dFf + ", " + dtype + ")";
    }

    @Override
    void release() {
        List<SavedState> open;
        synchronized (this) {
            open = new ArrayList<>(savedStates);
        }
        open.forEach(SavedState::close);
        synchronized (this) {
            for (Map<Long, s24_ffn> m : List.of(plans, warmupPlans)) {
                for (s24_ffn plan : m.values()) {
                    Native.check(sparse24.s24_ffn_destroy(plan), "s24_ffn_destroy");
                }
                m.clear();
            }
        }
    }

    synchronized void forget(SavedState saved) {
        savedStates.remove(saved);
    }

    /** Whether the next training forward is a dense warm-up step. */
    private synchronized boolean inWarmup() {
        return stepsTaken < options.denseWarmupSteps();
    }

    /** The cached plan for {@code tokens} (a dense warm-up step's or the options'), created on first use. */
    private synchronized s24_ffn plan(long tokens, boolean warmup) {
        ensureOpen();
        Map<Long, s24_ffn> cache = warmup ? warmupPlans : plans;
        s24_ffn plan = cache.get(tokens);
        if (plan == null) {
            plan = new s24_ffn();
            try (s24_ffn_options o = (warmup ? options.warmupOptions() : options).toNative();
                 InUse u = InUse.of(context())) {
                Native.check(sparse24.s24_ffn_create(context().handle(), tokens, dModel, dFf, dtype.code, o, plan),
                        "s24_ffn_create");
            }
            cache.put(tokens, plan);
        }
        return plan;
    }

    /** Checks x [T, d], w1 [f, d], w2 [d, f] and returns T. */
    private long checkInputs(Tensor x, Tensor w1, Tensor w2) {
        context().handle();
        ensureOpen();
        Args.tensor(x, "x", context(), dtype, "[T, d]", Args.ANY, dModel);
        Args.tensor(w1, "w1", context(), dtype, "[f, d]", dFf, dModel);
        Args.tensor(w2, "w2", context(), dtype, "[d, f]", dModel, dFf);
        return x.dim(0);
    }

    private void checkSaved(SavedState saved, long tokens) {
        if (saved == null) {
            throw new IllegalArgumentException("saved must not be null: expected a saved state of this FFN for T="
                    + tokens);
        }
        if (saved.isClosed()) {
            throw new IllegalStateException("saved: " + saved.describe() + " is closed");
        }
        if (saved.ffn() != this || saved.tokens() != tokens) {
            throw new IllegalArgumentException("saved: expected a saved state of " + describe() + " for T=" + tokens
                    + ", got " + saved.describe());
        }
    }

    private static Sparse24 checkedContext(Sparse24 context) {
        Args.notNull(context, "context");
        context.handle();
        return context;
    }
}
