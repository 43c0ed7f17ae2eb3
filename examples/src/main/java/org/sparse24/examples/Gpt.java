package org.sparse24.examples;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntFunction;

import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.VoidTensorHook;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.sparse24.Event;
import org.sparse24.Sparse24;

/**
 * A small GPT over bytes: token embedding + learned positions, pre-norm decoder blocks (causal self-attention
 * through LibTorch's scaled_dot_product_attention, the Squared-ReLU FFN given per layer), a final LayerNorm and
 * an output head tied to the token embedding. Parameters are fp32 leaves (the optimizer's master weights); each
 * forward casts them to the compute dtype inside the graph (bf16 on CUDA; fp32 on the CPU: no cast).
 *
 * <p>Every training forward brackets each layer's FFN with events: around the call (its forward) and, through
 * gradient hooks on its output and its input, around its backward (from dZ ready to dX ready, which covers the
 * weight gradients too). {@link #ffnMillis} reads them.
 */
final class Gpt implements AutoCloseable {
    private final int d;
    private final int heads;
    private final ScalarType compute;
    private final Tensor wte; // [V, d], also the output head
    private final Tensor wpe; // [maxSeq, d]
    private final Tensor lnfW;
    private final Tensor lnfB;
    private final List<Block> blocks = new ArrayList<>();
    private final List<Tensor> decayed = new ArrayList<>();
    private final List<Tensor> notDecayed = new ArrayList<>();
    private final List<Tensor> inOrder = new ArrayList<>(); // every parameter, in the order the forward uses them

    /** One decoder block's parameters, its FFN and its FFN's events. */
    private static final class Block {
        Tensor ln1W, ln1B, wqkv, wo, ln2W, ln2B, w1, w2;
        Ffn ffn;
        Event fwdStart, fwdEnd, bwdStart, bwdEnd;
        VoidTensorHook atBwdStart, atBwdEnd; // kept here: the graph holds only weak references to hooks
    }

    /**
     * @param ffns the FFN of layer i (one instance per layer)
     * @param timing the context whose events time the FFNs (its stream is LibTorch's current one)
     */
    Gpt(TrainConfig c, Device device, ScalarType compute, IntFunction<Ffn> ffns, Sparse24 timing) {
        this.d = c.dModel();
        this.heads = c.heads();
        this.compute = compute;
        double std = 0.02;
        double outStd = std / Math.sqrt(2.0 * c.layers()); // residual projections, as GPT-2
        wte = param(device, std, true, Corpus.VOCAB, d);
        wpe = param(device, std, true, c.seq(), d);
        for (int i = 0; i < c.layers(); i++) {
            Block b = new Block();
            b.ln1W = ones(device, d);
            b.ln1B = zeros(device, d);
            b.wqkv = param(device, std, true, 3L * d, d);
            b.wo = param(device, outStd, true, d, d);
            b.ln2W = ones(device, d);
            b.ln2B = zeros(device, d);
            b.w1 = param(device, std, true, c.dFf(), d);
            b.w2 = param(device, outStd, true, d, c.dFf());
            b.ffn = ffns.apply(i);
            b.fwdStart = Event.create(timing);
            b.fwdEnd = Event.create(timing);
            b.bwdStart = Event.create(timing);
            b.bwdEnd = Event.create(timing);
            Event start = b.bwdStart;
            Event end = b.bwdEnd;
            b.atBwdStart = new VoidTensorHook() {
                @Override
                public void call(org.bytedeco.pytorch.TensorBase grad) {
                    start.record();
                    grad.close(); // a copy this wrapper owns: it would hold dZ's memory until collected
                }
            };
            b.atBwdEnd = new VoidTensorHook() {
                @Override
                public void call(org.bytedeco.pytorch.TensorBase grad) {
                    end.record();
                    grad.close(); // a copy this wrapper owns: it would hold dX's memory until collected
                }
            };
            blocks.add(b);
        }
        lnfW = ones(device, d);
        lnfB = zeros(device, d);
    }

    /** Matrices (weight decay applies). */
    TensorVector decayedParameters() {
        return new TensorVector(decayed.toArray(new Tensor[0]));
    }

    /** LayerNorm gains and biases (no weight decay). */
    TensorVector otherParameters() {
        return new TensorVector(notDecayed.toArray(new Tensor[0]));
    }

    /** Every parameter. */
    TensorVector parameters() {
        List<Tensor> all = new ArrayList<>(decayed);
        all.addAll(notDecayed);
        return new TensorVector(all.toArray(new Tensor[0]));
    }

    /** Every parameter in forward order (the embeddings first, the last block's last): data parallel buckets. */
    List<Tensor> parametersInOrder() {
        return List.copyOf(inOrder);
    }

    long parameterCount() {
        long n = 0;
        for (Tensor t : decayed) {
            n += t.numel();
        }
        for (Tensor t : notDecayed) {
            n += t.numel();
        }
        return n;
    }

    List<Ffn> ffns() {
        return blocks.stream().map(b -> b.ffn).toList();
    }

    /**
     * Mean cross-entropy of next-byte prediction.
     *
     * @param batch [B, S + 1] token ids (long) on the model's device
     */
    Tensor loss(Tensor batch) {
        long bs = batch.size(0);
        long s = batch.size(1) - 1;
        Tensor input = batch.narrow(1, 0, s);
        Tensor target = batch.narrow(1, 1, s).reshape(-1);
        Tensor logits = logits(input);
        return torch.cross_entropy_loss(logits.to(ScalarType.Float).view(bs * s, Corpus.VOCAB), target);
    }

    /** Logits [B, S, V] of token ids [B, S]. */
    Tensor logits(Tensor input) {
        long bs = input.size(0);
        long s = input.size(1);
        boolean training = GradMode.is_enabled();
        Tensor wteC = cast(wte);
        Tensor x = torch.embedding(wteC, input).add(cast(wpe).narrow(0, 0, s)); // [B, S, d]
        for (Block b : blocks) {
            Tensor a = layerNorm(x, b.ln1W, b.ln1B);
            x = x.add(torch.linear(attention(a, cast(b.wqkv), bs, s), cast(b.wo)));
            Tensor m = layerNorm(x, b.ln2W, b.ln2B);
            if (training) {
                b.fwdStart.record();
            }
            Tensor z = b.ffn.apply(m, cast(b.w1), cast(b.w2));
            if (training) {
                b.fwdEnd.record();
                z.register_hook(b.atBwdStart); // dZ is ready: the FFN's backward starts
                m.register_hook(b.atBwdEnd);   // dX is ready: it is done (m feeds only the FFN)
            }
            x = x.add(z);
        }
        return torch.linear(layerNorm(x, lnfW, lnfB), wteC);
    }

    /** Causal multi-head self-attention of a [B, S, d] (no output projection): [B, S, d]. */
    private Tensor attention(Tensor a, Tensor wqkv, long bs, long s) {
        long hd = d / heads;
        Tensor qkv = torch.linear(a, wqkv).view(bs, s, 3, heads, hd).permute(2, 0, 3, 1, 4); // [3, B, H, S, hd]
        Tensor o = torch.scaled_dot_product_attention(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2),
                new TensorOptional(), 0.0, true, new DoubleOptional(), false); // [B, H, S, hd]
        return o.transpose(1, 2).reshape(bs, s, d);
    }

    private Tensor layerNorm(Tensor x, Tensor w, Tensor b) {
        return torch.layer_norm(x, new long[] {d}, new TensorOptional(cast(w)), new TensorOptional(cast(b)), 1e-5,
                false);
    }

    /** The parameter in the compute dtype, inside the graph (gradients flow back to the fp32 master). */
    private Tensor cast(Tensor p) {
        return p.scalar_type() == compute ? p : p.to(compute);
    }

    /**
     * Milliseconds the FFNs of the last training step took, summed over the layers: {forward, backward}. Waits
     * for the events.
     */
    float[] ffnMillis() {
        float fwd = 0;
        float bwd = 0;
        for (Block b : blocks) {
            fwd += Event.elapsedMillis(b.fwdStart, b.fwdEnd);
            bwd += Event.elapsedMillis(b.bwdStart, b.bwdEnd);
        }
        return new float[] {fwd, bwd};
    }

    private Tensor param(Device device, double std, boolean decay, long... shape) {
        Tensor t = torch.randn(shape).mul_(new Scalar(std)).to(device, ScalarType.Float).set_requires_grad(true);
        (decay ? decayed : notDecayed).add(t);
        inOrder.add(t);
        return t;
    }

    private Tensor ones(Device device, long n) {
        Tensor t = torch.ones(n).to(device, ScalarType.Float).set_requires_grad(true);
        notDecayed.add(t);
        inOrder.add(t);
        return t;
    }

    private Tensor zeros(Device device, long n) {
        Tensor t = torch.zeros(n).to(device, ScalarType.Float).set_requires_grad(true);
        notDecayed.add(t);
        inOrder.add(t);
        return t;
    }

    @Override
    public void close() {
        for (Block b : blocks) {
            b.ffn.close();
        }
    }
}
