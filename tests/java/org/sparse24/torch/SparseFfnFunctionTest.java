package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparse24.MessageAssertions.assertThrowsNaming;
import static org.sparse24.torch.TorchTestData.assertClose;
import static org.sparse24.torch.TorchTestData.floats;
import static org.sparse24.torch.TorchTestData.longs;
import static org.sparse24.torch.TorchTestData.normal;
import static org.sparse24.torch.TorchTestData.param;
import static org.sparse24.torch.TorchTestData.tensor;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

import org.bytedeco.pytorch.Adam;
import org.bytedeco.pytorch.AdamOptions;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorArrayRefOptional;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;
import org.sparse24.Sparsity;

/**
 * {@link SparseFfnFunction} in LibTorch models on the CPU backend (FP32): gradients against the same model
 * written in plain LibTorch ops, training, the hook mechanics, and bad arguments.
 */
class SparseFfnFunctionTest {
    private static final int V = 32; // vocabulary
    private static final int D = 32; // model width
    private static final int F = 128; // FFN width
    private static final int T = 64; // tokens

    /** The 2:4 forward with exact (unsplit) weight gradients: what the plain masked model computes. */
    private static final SparseFfnOptions EXACT_BACKWARD =
            SparseFfnOptions.builder().sparseForward(true).sparseBackward(false).build();

    private Sparse24 ctx;

    @BeforeEach
    void setUp() {
        ctx = Sparse24.cpu();
    }

    @AfterEach
    void tearDown() {
        ctx.close();
    }

    /** An FFN z = FFN(x; w1, w2), either ours or written in LibTorch ops. */
    interface Ffn {
        Tensor apply(Tensor x, Tensor w1, Tensor w2);
    }

    /** relu(x w1^T)^2 w2^T, dense: the model the sparse one approximates. */
    static Tensor plainDense(Tensor x, Tensor w1, Tensor w2) {
        return x.mm(w1.t()).relu().square().mm(w2.t());
    }

    /** relu(x w1^T)^2, masked to the 2 largest of every 4 along f (ties to the lower index), times w2^T. */
    static Tensor plainMasked(Tensor x, Tensor w1, Tensor w2) {
        Tensor h = x.mm(w1.t());
        long rows = h.size(0);
        long cols = h.size(1);
        return h.relu().square().mul(tensor(mask24(floats(h.detach()), (int) rows, (int) cols), rows, cols))
                .mm(w2.t());
    }

    /** The 2:4 mask of relu(h) [rows, cols] computed in plain Java. */
    static float[] mask24(float[] h, int rows, int cols) {
        float[] mask = new float[h.length];
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < cols; g += 4) {
                for (int j = 0; j < 4; j++) {
                    float v = Math.max(h[r * cols + g + j], 0f);
                    int rank = 0;
                    for (int k = 0; k < 4; k++) {
                        float u = Math.max(h[r * cols + g + k], 0f);
                        if (u > v || (u == v && k < j)) {
                            rank++;
                        }
                    }
                    mask[r * cols + g + j] = rank < 2 ? 1f : 0f;
                }
            }
        }
        return mask;
    }

    /** embedding -> FFN -> linear -> cross entropy; parameters are LibTorch leaves. */
    static final class Model {
        final Tensor emb;
        final Tensor w1;
        final Tensor w2;
        final Tensor out;

        Model(long seed) {
            Random r = new Random(seed);
            emb = param(normal(r, V * D, 1), V, D);
            w1 = param(normal(r, F * D, 1 / Math.sqrt(D)), F, D);
            w2 = param(normal(r, D * F, 1 / Math.sqrt(F)), D, F);
            out = param(normal(r, V * D, 1 / Math.sqrt(D)), V, D);
        }

        Tensor loss(Ffn ffn, Tensor tokens, Tensor targets) {
            Tensor x = torch.embedding(emb, tokens); // [T, d], not a leaf: its gradient flows on to emb
            Tensor z = ffn.apply(x, w1, w2);
            return torch.cross_entropy_loss(z.mm(out.t()), targets);
        }

        TensorVector parameters() {
            return new TensorVector(emb, w1, w2, out);
        }

        /** The gradients of emb, w1, w2, out. */
        float[][] grads() {
            return new float[][] {floats(emb.grad()), floats(w1.grad()), floats(w2.grad()), floats(out.grad())};
        }
    }

    private static long[] randomTokens(Random r, int n) {
        long[] t = new long[n];
        for (int i = 0; i < n; i++) {
            t[i] = r.nextInt(V);
        }
        return t;
    }

    @Test
    void gradientsEqualThePlainLibTorchModel() {
        Random r = new Random(7);
        Tensor tokens = longs(randomTokens(r, T));
        Tensor targets = longs(randomTokens(r, T));
        Model plain = new Model(1);
        Model ours = new Model(1);
        Tensor plainLoss = plain.loss(SparseFfnFunctionTest::plainMasked, tokens, targets);
        plainLoss.backward();
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, EXACT_BACKWARD);
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor loss = ours.loss(f::apply, tokens, targets);
            assertTrue(loss.requires_grad());
            loss.backward();
            assertEquals(plainLoss.item_float(), loss.item_float(), 1e-5 * Math.abs(plainLoss.item_float()));
            String[] names = {"embedding weight", "w1", "w2", "output weight"};
            float[][] expected = plain.grads();
            float[][] actual = ours.grads();
            for (int i = 0; i < names.length; i++) {
                assertClose(names[i] + " gradient", expected[i], actual[i], 1e-4);
            }
            assertEquals(0, f.pendingForwards(), "the saved state is freed after the backward");
        }
    }

    @Test
    void denseOptionsEqualThePlainDenseModel() {
        Random r = new Random(8);
        Tensor tokens = longs(randomTokens(r, T));
        Tensor targets = longs(randomTokens(r, T));
        Model plain = new Model(2);
        Model ours = new Model(2);
        plain.loss(SparseFfnFunctionTest::plainDense, tokens, targets).backward();
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.dense());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            ours.loss(f::apply, tokens, targets).backward();
            float[][] expected = plain.grads();
            float[][] actual = ours.grads();
            for (int i = 0; i < expected.length; i++) {
                assertClose("gradient " + i, expected[i], actual[i], 1e-4);
            }
        }
    }

    /**
     * The tiny task: map each token to its image under a fixed random permutation (a next-token task on a
     * fixed cyclic sequence). Adam (lr 1e-3) for 300 steps; returns the loss of every step.
     */
    private static float[] train(Ffn ffn, long seed) {
        Random r = new Random(seed);
        List<Integer> perm = new ArrayList<>();
        for (int i = 0; i < V; i++) {
            perm.add(i);
        }
        Collections.shuffle(perm, r);
        Model model = new Model(seed);
        float[] losses = new float[300];
        try (AdamOptions options = new AdamOptions(1e-3); TensorVector params = model.parameters();
             Adam adam = new Adam(params, options)) {
            for (int step = 0; step < losses.length; step++) {
                long[] in = randomTokens(r, T);
                long[] out = new long[T];
                for (int i = 0; i < T; i++) {
                    out[i] = perm.get((int) in[i]);
                }
                adam.zero_grad();
                Tensor loss = model.loss(ffn, longs(in), longs(out));
                loss.backward();
                adam.step();
                losses[step] = loss.item_float();
            }
        }
        return losses;
    }

    /** The mean of v[from, to). */
    static float mean(float[] v, int from, int to) {
        float s = 0;
        for (int i = from; i < to; i++) {
            s += v[i];
        }
        return s / (to - from);
    }

    @Test
    void trainingWithTheSplitBackwardFollowsTheDenseModel() {
        float[] dense = train(SparseFfnFunctionTest::plainDense, 11);
        float[] sparse;
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            assertTrue(ffn.options().sparseBackward() && ffn.options().permuteTokens());
            List<Sparsity> stats = new ArrayList<>();
            f.setSparsityListener(stats::add);
            sparse = train(f::apply, 11);
            assertEquals(sparse.length, stats.size(), "one statistics record per backward");
            Sparsity last = stats.get(stats.size() - 1);
            assertTrue(last.forwardSparse() && last.backwardDone());
            assertTrue(last.denseFeatures() > 0 && last.denseFeatures() < F);
            assertEquals(0, f.pendingForwards());
        }
        // Losses start near ln(32) = 3.47; both models get below 1% of that; the sparse one as fast as the dense.
        float dense0 = mean(dense, 0, 5);
        float sparse0 = mean(sparse, 0, 5);
        float denseMid = mean(dense, 45, 55);
        float sparseMid = mean(sparse, 45, 55);
        float denseEnd = mean(dense, 290, 300);
        float sparseEnd = mean(sparse, 290, 300);
        String curve = String.format("steps 0-5, 45-55, 290-300: dense %.4f, %.4f, %.4f; sparse %.4f, %.4f, %.4f",
                dense0, denseMid, denseEnd, sparse0, sparseMid, sparseEnd);
        System.out.println("LibTorch training, " + curve);
        assertEquals(dense0, sparse0, 0.1 * dense0, "same start: " + curve);
        assertTrue(denseEnd < 0.01 * dense0, "the dense model learns the task: " + curve);
        assertTrue(sparseEnd < 0.01 * sparse0, "the sparse model learns the task: " + curve);
        assertTrue(sparseMid < 1.5 * denseMid + 0.02, "as fast as the dense model: " + curve);
        assertTrue(sparseEnd < 2 * denseEnd + 0.005, "as far as the dense model: " + curve);
    }

    @Test
    void hooksFireInOrderAndTheStateIsReleased() {
        List<String> events = Collections.synchronizedList(new ArrayList<>());
        Random r = new Random(3);
        Tensor x = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            f.trace = events::add;  // this function's events only (earlier tests' graphs may be freed meanwhile)
            Tensor z = f.apply(x, w1, w2);
            assertEquals(List.of("forward"), events);
            assertEquals(1, f.pendingForwards());
            assertEquals(1, f.liveForwards());
            Tensor square = z.square();
            Tensor loss = square.sum();
            loss.backward();
            int zHook = events.indexOf("z-hook");
            assertTrue(zHook > 0, events.toString());
            for (String carrier : new String[] {"x-hook", "w1-hook", "w2-hook"}) {
                assertTrue(events.indexOf(carrier) > zHook, carrier + " after z's hook: " + events);
            }
            assertTrue(events.indexOf("released") > zHook, events.toString());
            assertEquals(6, events.size(), events.toString());
            assertEquals(0, f.pendingForwards(), "saved state freed");
            assertEquals(1, f.liveForwards(), "the graph, still referenced, holds the hooks");
            loss.close();
            square.close();
            z.close();
            assertEquals(0, f.liveForwards(), "hooks freed with the graph");
            assertEquals(0, f.liveCallbacks());
            assertNotNull(x.grad());
            assertNotNull(w1.grad());
            assertNotNull(w2.grad());
        }
    }

    @Test
    void nonContiguousGradientAndBatchedInput() {
        // loss = z.sum(): dZ arrives as an expanded (stride 0) tensor; x is [B, S, d]
        Random r = new Random(4);
        float[] xs = normal(r, T * D, 1);
        float[] w1s = normal(r, F * D, 0.2);
        float[] w2s = normal(r, D * F, 0.1);
        Tensor px = param(xs, 2, T / 2, D);
        Tensor pw1 = param(w1s, F, D);
        Tensor pw2 = param(w2s, D, F);
        plainMasked(px.view(T, D), pw1, pw2).sum().backward();
        Tensor x = param(xs, 2, T / 2, D);
        Tensor w1 = param(w1s, F, D);
        Tensor w2 = param(w2s, D, F);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, EXACT_BACKWARD);
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor z = f.apply(x, w1, w2);
            assertArrayEquals(new long[] {2, T / 2, D}, TorchTensors.sizes(z));
            z.sum().backward();
            assertArrayEquals(new long[] {2, T / 2, D}, TorchTensors.sizes(x.grad()));
            assertClose("dX", floats(px.grad()), floats(x.grad()), 1e-4);
            assertClose("dW1", floats(pw1.grad()), floats(w1.grad()), 1e-4);
            assertClose("dW2", floats(pw2.grad()), floats(w2.grad()), 1e-4);
        }
    }

    @Test
    void stackedLayersWithResidualsShareOneFunction() {
        // h = x + FFN_a(x); out = h + FFN_b(h): two forwards of one function pending at once, gradients flowing
        // from one sparse FFN into the other
        Random r = new Random(17);
        float[] xs = normal(r, T * D, 1);
        float[][] ws = {normal(r, F * D, 0.2), normal(r, D * F, 0.1), normal(r, F * D, 0.2), normal(r, D * F, 0.1)};
        long[][] shapes = {{F, D}, {D, F}, {F, D}, {D, F}};
        Tensor px = param(xs, T, D);
        Tensor x = param(xs, T, D);
        Tensor[] pw = new Tensor[4];
        Tensor[] w = new Tensor[4];
        for (int i = 0; i < 4; i++) {
            pw[i] = param(ws[i], shapes[i]);
            w[i] = param(ws[i], shapes[i]);
        }
        Tensor ph = px.add(plainMasked(px, pw[0], pw[1]));
        ph.add(plainMasked(ph, pw[2], pw[3])).square().sum().backward();
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, EXACT_BACKWARD);
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor h = x.add(f.apply(x, w[0], w[1]));
            Tensor out = h.add(f.apply(h, w[2], w[3]));
            assertEquals(2, f.pendingForwards());
            out.square().sum().backward();
            assertEquals(0, f.pendingForwards());
            assertClose("dX", floats(px.grad()), floats(x.grad()), 1e-4);
            for (int i = 0; i < 4; i++) {
                assertClose("weight " + i + " gradient", floats(pw[i].grad()), floats(w[i].grad()), 1e-4);
            }
        }
    }

    @Test
    void bf16TensorsAndGradients() {
        Random r = new Random(5);
        float[] xs = normal(r, T * D, 1);
        float[] w1s = normal(r, F * D, 0.2);
        float[] w2s = normal(r, D * F, 0.1);
        Tensor x = tensor(xs, T, D).to(ScalarType.BFloat16).set_requires_grad(true);
        Tensor w1 = tensor(w1s, F, D).to(ScalarType.BFloat16).set_requires_grad(true);
        Tensor w2 = tensor(w2s, D, F).to(ScalarType.BFloat16).set_requires_grad(true);
        // the reference: the FP32 FFN on the same (bf16-valued) inputs
        Tensor fx = x.detach().to(ScalarType.Float).set_requires_grad(true);
        Tensor fw1 = w1.detach().to(ScalarType.Float).set_requires_grad(true);
        Tensor fw2 = w2.detach().to(ScalarType.Float).set_requires_grad(true);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.BF16, EXACT_BACKWARD);
             SparseFfn ffn32 = new SparseFfn(ctx, D, F, DType.FP32, EXACT_BACKWARD);
             SparseFfnFunction f = new SparseFfnFunction(ffn);
             SparseFfnFunction f32 = new SparseFfnFunction(ffn32)) {
            Tensor z = f.apply(x, w1, w2);
            assertEquals(ScalarType.BFloat16, z.scalar_type().intern());
            z.to(ScalarType.Float).square().sum().backward(); // dZ reaches the hook as BFloat16
            f32.apply(fx, fw1, fw2).square().sum().backward();
            assertClose("bf16 dX", floats(fx.grad()), floats(x.grad().to(ScalarType.Float)), 2e-2);
            assertClose("bf16 dW1", floats(fw1.grad()), floats(w1.grad().to(ScalarType.Float)), 2e-2);
            assertClose("bf16 dW2", floats(fw2.grad()), floats(w2.grad().to(ScalarType.Float)), 2e-2);
        }
    }

    @Test
    void gradientsAccumulateAndRetainedGraphsBackpropagateTwice() {
        Random r = new Random(6);
        Tensor x = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor loss = f.apply(x, w1, w2).square().sum();
            try (BoolOptional retain = new BoolOptional(true); TensorArrayRefOptional all =
                    new TensorArrayRefOptional()) {
                loss.backward(new Tensor(), retain, false, all);
            }
            float[] once = floats(w1.grad());
            assertEquals(1, f.pendingForwards(), "a retained graph keeps the saved state");
            loss.backward(); // the same split backward again, accumulated
            float[] twice = floats(w1.grad());
            for (int i = 0; i < once.length; i++) {
                assertEquals(2 * once[i], twice[i], 1e-5 * Math.abs(twice[i]) + 1e-7);
            }
            assertEquals(0, f.pendingForwards(), "released by the last backward");
            RuntimeException e = assertThrowsNaming(RuntimeException.class, loss::backward, "second time",
                    "retain_graph");
            assertFalse(e.getMessage().isEmpty());
        }
    }

    @Test
    void autogradGradForSomeInputsOnly() {
        Random r = new Random(9);
        Tensor x = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        Tensor pw1 = param(floats(w1), F, D);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, EXACT_BACKWARD);
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor z = f.apply(x, w1, w2);
            Tensor square = z.square();
            Tensor loss = square.sum();
            TensorVector grads;
            try (TensorVector outputs = new TensorVector(loss); TensorVector inputs = new TensorVector(w1)) {
                grads = torch.grad(outputs, inputs);
            }
            plainMasked(x.detach(), pw1, w2.detach()).square().sum().backward();
            assertClose("dW1 by autograd::grad", floats(pw1.grad()), floats(grads.get(0)), 1e-4);
            assertFalse(x.grad().defined(), "grad() fills no .grad()");
            assertEquals(0, f.pendingForwards(), "released by grad(), which ran without retain_graph, no stash left "
                    + "for the carriers not run");
            assertThrowsNaming(RuntimeException.class, loss::backward, "second time");
            loss.close();
            square.close();
            z.close();
            assertEquals(0, f.liveForwards());
        }
    }

    @Test
    void onlySomeArgumentsRequireGrad() {
        Random r = new Random(10);
        float[] xs = normal(r, T * D, 1);
        float[] w1s = normal(r, F * D, 0.2);
        float[] w2s = normal(r, D * F, 0.1);
        Tensor x = tensor(xs, T, D); // data, no grad
        Tensor w1 = tensor(w1s, F, D); // frozen
        Tensor w2 = param(w2s, D, F);
        Tensor pw2 = param(w2s, D, F);
        plainMasked(x, w1, pw2).square().sum().backward();
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, EXACT_BACKWARD);
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            f.apply(x, w1, w2).square().sum().backward();
            assertClose("dW2", floats(pw2.grad()), floats(w2.grad()), 1e-4);
            assertFalse(x.grad().defined());
            assertFalse(w1.grad().defined());
        }
    }

    @Test
    void withoutGradNothingIsKept() {
        Random r = new Random(12);
        Tensor x = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor z;
            try (NoGradGuard guard = new NoGradGuard()) {
                z = f.apply(x, w1, w2);
            }
            assertFalse(z.requires_grad());
            assertEquals(0, f.pendingForwards());
            Tensor inferred = f.infer(x, w1, w2);
            assertFalse(inferred.requires_grad());
            assertArrayEquals(floats(z), floats(inferred));
            Tensor trained = f.apply(x, w1, w2);
            assertArrayEquals(floats(z), floats(trained.detach()), "the training forward computes the same z");
        }
    }

    @Test
    void inPlaceModificationBeforeBackwardIsDetected() {
        Random r = new Random(13);
        Tensor x = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor loss = f.apply(x, w1, w2).sum();
            try (NoGradGuard guard = new NoGradGuard(); Scalar one = new Scalar(1.0)) {
                w1.add_(one);
            }
            assertThrowsNaming(RuntimeException.class, loss::backward, "w1 of the sparse FFN was modified in place");
        }
    }

    @Test
    void closeFreesForwardsNeverBackpropagated() {
        Random r = new Random(14);
        Tensor x = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults())) {
            SparseFfnFunction f = new SparseFfnFunction(ffn);
            Tensor loss = f.apply(x, w1, w2).sum();
            assertEquals(1, f.pendingForwards());
            f.close();
            assertEquals(0, f.pendingForwards());
            assertThrowsNaming(RuntimeException.class, loss::backward, "saved state was freed",
                    "SparseFfnFunction was closed");
            assertThrowsNaming(IllegalStateException.class, () -> f.apply(x, w1, w2), "closed");
        }
    }

    @Test
    void aBackwardFailingUpstreamLeavesNothingBehind() {
        Random r = new Random(18);
        Tensor x0 = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        Tensor x = x0.mul(new Scalar(1.0)); // a non-leaf upstream of the FFN whose hook fails
        x.register_hook(new TensorTensorHook() {
            @Override
            public TensorBase call(TensorBase grad) {
                throw new IllegalStateException("upstream failure");
            }
        });
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults())) {
            SparseFfnFunction f = new SparseFfnFunction(ffn);
            Tensor z = f.apply(x, w1, w2);
            Tensor loss = z.sum();
            assertThrowsNaming(RuntimeException.class, loss::backward, "upstream failure");
            assertEquals(0, f.pendingForwards());
            f.close();
            loss.close();
            z.close();
            assertEquals(0, f.liveForwards());
        }
    }

    @Test
    void droppingTheGraphFreesTheSavedState() {
        List<String> events = Collections.synchronizedList(new ArrayList<>());
        Random r = new Random(15);
        Tensor x = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            f.trace = events::add;
            Tensor z = f.apply(x, w1, w2);
            Tensor loss = z.sum();
            assertEquals(1, f.pendingForwards());
            loss.close(); // the last references to the graph: autograd frees it, and with it the anchor
            z.close();
            assertEquals(List.of("forward", "released"), events);
            assertEquals(0, f.pendingForwards());
            assertEquals(0, f.liveForwards());
            assertEquals(0, f.liveCallbacks());
        }
    }

    @Test
    void badArgumentsAreRejectedClearly() {
        Random r = new Random(16);
        Tensor x = param(normal(r, T * D, 1), T, D);
        Tensor w1 = param(normal(r, F * D, 0.2), F, D);
        Tensor w2 = param(normal(r, D * F, 0.1), D, F);
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor xt = param(normal(r, T * D, 1), D, T).t(); // [T, d] with strides [1, T]
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(xt, w1, w2), "x:", "contiguous",
                    "x.contiguous()");
            Tensor ok = f.apply(xt.contiguous(), w1, w2); // the documented fix; autograd flows through it
            assertTrue(ok.requires_grad());
            Tensor w2d = w2.detach().to(ScalarType.Double);
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(x, w1, w2d), "w2:", "Double");
            Tensor w2h = w2.detach().to(ScalarType.BFloat16);
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(x, w1, w2h), "w2:",
                    "expected a Float tensor (the FFN's dtype FP32)", "got BFloat16");
            Tensor w1t = param(normal(r, F * D, 0.2), D, F);
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(x, w1t, w2), "w1:",
                    "[f, d] = [128, 32]", "[32, 128]");
            Tensor xw = param(normal(r, T * 8, 1), T, 8);
            assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(xw, w1, w2), "x:", "[..., 32]",
                    "[64, 8]");
            try (Device meta = new Device("meta"); TensorOptions o = new TensorOptions(meta);
                 MemoryFormatOptional format = new MemoryFormatOptional()) {
                Tensor xm = torch.empty(new long[] {T, D}, o, format);
                assertThrowsNaming(IllegalArgumentException.class, () -> f.apply(xm, w1, w2), "x:",
                        "expected a tensor on cpu", "got one on meta");
            }
            assertEquals(1, f.pendingForwards(), "only the good call is pending");
        }
    }
}
