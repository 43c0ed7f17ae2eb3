package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;
import static org.sparse24.MessageAssertions.assertThrowsNaming;
import static org.sparse24.torch.TorchTestData.assertClose;
import static org.sparse24.torch.TorchTestData.floats;
import static org.sparse24.torch.TorchTestData.normal;
import static org.sparse24.torch.TorchTestData.tensor;

import java.util.Random;

import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;

/**
 * {@link SparseFfnFunction} with CUDA tensors on the CUDA backend. Needs a GPU and the preset's CUDA natives
 * (pytorch {@code linux-x86_64-gpu} and org.bytedeco:cuda); the test class path has the CPU natives only, so this
 * is skipped unless those are put on it.
 */
@Tag("gpu")
class TorchGpuTest {
    private static final int T = 256;
    private static final int D = 128;
    private static final int F = 512;

    @Test
    void bf16OnTheCurrentStreamMatchesTheCpuBackend() {
        assumeTrue(torch.cuda_is_available(), "LibTorch has no CUDA here (CPU natives of the preset)");
        Random r = new Random(1);
        float[] xs = normal(r, T * D, 1);
        float[] w1s = normal(r, F * D, 0.1);
        float[] w2s = normal(r, D * F, 0.05);
        try (Sparse24 gpu = Sparse24.cuda(0); Sparse24 cpu = Sparse24.cpu();
             SparseFfn ffn = new SparseFfn(gpu, D, F, DType.BF16, SparseFfnOptions.dense());
             SparseFfn ref = new SparseFfn(cpu, D, F, DType.FP32, SparseFfnOptions.dense());
             SparseFfnFunction f = new SparseFfnFunction(ffn); SparseFfnFunction fRef = new SparseFfnFunction(ref);
             Device cuda = TorchTensors.device(gpu)) {
            Tensor x = tensor(xs, T, D).to(cuda, ScalarType.BFloat16).set_requires_grad(true);
            Tensor w1 = tensor(w1s, F, D).to(cuda, ScalarType.BFloat16).set_requires_grad(true);
            Tensor w2 = tensor(w2s, D, F).to(cuda, ScalarType.BFloat16).set_requires_grad(true);
            f.apply(x, w1, w2).to(ScalarType.Float).square().sum().backward();
            assertEquals(CudaStreams.current(0).address(), gpu.stream().address(), "LibTorch's current stream");

            // the CPU backend on the same (bf16-valued) inputs, in FP32
            Tensor cx = x.detach().cpu().to(ScalarType.Float).set_requires_grad(true);
            Tensor cw1 = w1.detach().cpu().to(ScalarType.Float).set_requires_grad(true);
            Tensor cw2 = w2.detach().cpu().to(ScalarType.Float).set_requires_grad(true);
            fRef.apply(cx, cw1, cw2).square().sum().backward();
            assertClose("dX", floats(cx.grad()), floats(x.grad().cpu().to(ScalarType.Float)), 3e-2);
            assertClose("dW1", floats(cw1.grad()), floats(w1.grad().cpu().to(ScalarType.Float)), 3e-2);
            assertClose("dW2", floats(cw2.grad()), floats(w2.grad().cpu().to(ScalarType.Float)), 3e-2);

            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(cx.detach().to(ScalarType.BFloat16),
                    w1, w2), "x:", "expected a tensor on cuda:0", "got one on cpu");
        }
    }
}
