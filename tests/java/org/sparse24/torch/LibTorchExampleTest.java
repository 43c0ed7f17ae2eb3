package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.bytedeco.pytorch.Adam;
import org.bytedeco.pytorch.AdamOptions;
import org.bytedeco.pytorch.EmbeddingImpl;
import org.bytedeco.pytorch.LinearImpl;
import org.bytedeco.pytorch.LongOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;

/** The README's "Using sparse24 from LibTorch code" example, run as a test. */
class LibTorchExampleTest {

    /** The example: a tiny LibTorch model whose FFN is sparse24's. Returns {first loss, last loss, accuracy}. */
    static float[] example() {
        int vocab = 32, d = 32, f = 128, tokens = 64;
        float first = 0, last = 0, accuracy;
        torch.manual_seed(0);
        try (Sparse24 ctx = Sparse24.cpu();                     // CPU tensors: the CPU backend
             SparseFfn ffn = new SparseFfn(ctx, d, f, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction sparseFfn = new SparseFfnFunction(ffn)) {
            EmbeddingImpl embed = new EmbeddingImpl(vocab, d);
            LinearImpl head = new LinearImpl(d, vocab);
            Tensor w1 = torch.randn(f, d).div_(new Scalar(Math.sqrt(d))).set_requires_grad(true); // [f, d]
            Tensor w2 = torch.randn(d, f).div_(new Scalar(Math.sqrt(f))).set_requires_grad(true); // [d, f]
            Adam adam = new Adam(new TensorVector(embed.weight(), w1, w2, head.weight(), head.bias()),
                    new AdamOptions(1e-3));
            Tensor input = torch.randint(vocab, new long[] {tokens});              // token ids [T]
            Tensor target = input.mul(new Scalar(7)).add(new Scalar(3)).remainder(new Scalar(vocab));
            for (int step = 0; step < 300; step++) {
                adam.zero_grad();
                Tensor x = embed.forward(input);                  // [T, d]
                Tensor z = sparseFfn.apply(x, w1, w2);            // relu(x w1^T)^2, 2:4 along f, times w2^T
                Tensor loss = torch.cross_entropy_loss(head.forward(z), target);
                loss.backward();  // sparse24's backward: fills w1.grad(), w2.grad(), flows on into embed
                adam.step();
                if (step == 0) {
                    first = loss.item_float();
                }
                last = loss.item_float();
            }
            try (NoGradGuard noGrad = new NoGradGuard()) {          // inference: no graph, nothing kept
                Tensor logits = head.forward(sparseFfn.apply(embed.forward(input), w1, w2));
                accuracy = logits.argmax(new LongOptional(1), false).eq(target).sum().item_long() / (float) tokens;
            }
        }
        System.out.printf("LibTorch example: loss %.3f -> %.4f, accuracy %.2f%n", first, last, accuracy);
        return new float[] {first, last, accuracy};
    }

    @Test
    void exampleTrains() {
        float[] r = example();
        assertTrue(r[1] < 0.05 * r[0], "loss " + r[0] + " -> " + r[1]);
        assertEquals(1f, r[2], "the model learned the task");
    }
}
