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
 * {@link SparseFfnOptions#dense()}), after {@code denseWarmup} dense training steps (exact, sparse24's dense
 * path). Statistics come from the function's sparsity listener, set only on measured steps.
 */
final class Sparse24Ffn implements Ffn {
    private final SparseFfn ffn;
    private final SparseFfnFunction function;
    private final SparseFfn warmupFfn;            // null without warm-up
    private final SparseFfnFunction warmupFunction;
    private final int denseWarmup;
    private final boolean sparse;
    private int trainingSteps;
    private boolean measure;
    private volatile Stats stats = Stats.NONE;

    Sparse24Ffn(Sparse24 context, int dModel, int dFf, DType dtype, SparseFfnOptions options, int denseWarmup) {
        this.ffn = new SparseFfn(context, dModel, dFf, dtype, options);
        this.function = new SparseFfnFunction(ffn);
        this.denseWarmup = denseWarmup;
        this.sparse = options.sparseForward();
        // The warm-up is a second, dense layer until SparseFfnOptions.denseWarmupSteps is in: then GptTrain.ffn passes
        // options.toBuilder().denseWarmupSteps(n).build() with denseWarmup 0, and sparseNext() asks ffn.isSparseNow().
        this.warmupFfn = denseWarmup > 0 ? new SparseFfn(context, dModel, dFf, dtype, SparseFfnOptions.dense()) : null;
        this.warmupFunction = warmupFfn == null ? null : new SparseFfnFunction(warmupFfn);
    }

    @Override
    public Tensor apply(Tensor x, Tensor w1, Tensor w2) {
        boolean training = GradMode.is_enabled();
        SparseFfnFunction f = inWarmup() ? warmupFunction : function;
        f.setSparsityListener(training && measure ? this::record : null);
        Tensor z = f.apply(x, w1, w2);
        if (training) {
            trainingSteps++;
        }
        return z;
    }

    private boolean inWarmup() {
        return trainingSteps < denseWarmup;
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
        return sparse && !inWarmup();
    }

    @Override
    public void close() {
        function.close();
        ffn.close();
        if (warmupFfn != null) {
            warmupFunction.close();
            warmupFfn.close();
        }
    }
}
