package org.sparse24.examples;

import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The dense baseline as a LibTorch user writes it: {@code linear(relu(linear(x, w1))², w2)}, differentiated by
 * LibTorch's own autograd. Measured steps count the zeros of relu(H) (nothing is dropped: the drop rates are 0).
 */
final class TorchFfn implements Ffn {
    private boolean measure;
    private Stats stats = Stats.NONE;

    @Override
    public Tensor apply(Tensor x, Tensor w1, Tensor w2) {
        Tensor r = torch.linear(x, w1).relu();
        if (measure && r.requires_grad()) {
            try (NoGradGuard noGrad = new NoGradGuard()) {
                double nonzeros = r.count_nonzero().item_double();
                stats = new Stats(1 - nonzeros / r.numel(), 0, 0, 0);
            }
        }
        return torch.linear(r.square(), w2);
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
        return false;
    }

    @Override
    public void close() {
    }
}
