package org.sparse24.examples;

import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Tensor;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;
import org.sparse24.Sparsity;
import org.sparse24.torch.SparseFfnFunction;

/**
 * The FFN through sparse24's {@link SparseFfnFunction}: with {@code options} (2:4 forward and split backward, or
 * {@link SparseFfnOptions#dense()}), after {@code denseWarmup} dense training steps (the library's
 * {@link SparseFfnOptions.Builder#denseWarmupSteps}: exact, sparse24's dense path). Statistics come from the
 * function's sparsity listener, set only on measured steps.
 */
final class Sparse24Ffn implements Ffn {
    private final SparseFfn ffn;
    private final SparseFfnFunction function;
    private final boolean sparse;
    private boolean measure;
    private volatile Stats stats = Stats.NONE;

    Sparse24Ffn(Sparse24 context, int dModel, int dFf, DType dtype, SparseFfnOptions options, int denseWarmup) {
        this.ffn = new SparseFfn(context, dModel, dFf, dtype, options.toBuilder().denseWarmupSteps(denseWarmup).build());
        this.function = new SparseFfnFunction(ffn);
        this.sparse = options.sparseForward();
    }

    @Override
    public Tensor apply(Tensor x, Tensor w1, Tensor w2) {
        function.setSparsityListener(GradMode.is_enabled() && measure ? this::record : null);
        return function.apply(x, w1, w2);
    }

    private void record(Sparsity s) {
        stats = new Stats(s.activationSparsity(), s.forwardSparse() ? s.forwardDropRate() : 0,
                s.backwardSparse() ? s.dw2DropRate() : 0, s.backwardSparse() ? s.dw1DropRate() : 0);
    }

    @Override
    public void measureNext(boolean on) {
        measure = on;
    }

    @Override
    public Stats stats() {
        return stats;
    }

    @Override
    public boolean sparseNext() {
        return sparse && ffn.isSparseNow();
    }

    @Override
    public void close() {
        function.close();
        ffn.close();
    }
}
