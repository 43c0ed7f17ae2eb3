package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparse24.MessageAssertions.assertThrowsNaming;
import static org.sparse24.torch.TorchTestData.floats;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorArrayRefOptional;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.sparse24.DType;
import org.sparse24.Scope;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;

/**
 * What a forward keeps for its backward (saved state, input aliases, the hook callbacks the graph calls) lives as
 * long as its graph, whatever {@link PointerScope} or sparse24 {@link Scope} the caller had open:
 * a scope that closes between the forward and the backward frees none of it, and every forward is released once
 * its backward ran or its graph was dropped. Before the fixes, the anchor deleter (created at the first apply()
 * inside a scope) was freed with that scope, so no later forward was released; and the per-forward callbacks,
 * carrier nodes and input aliases were freed with the scope around their forward, so a backward after it failed.
 */
class ScopedStepsTest {
    private static final int D = 32;
    private static final int F = 128;
    private static final int T = 64;

    private Sparse24 ctx;
    private final List<String> events = Collections.synchronizedList(new ArrayList<>());

    @BeforeEach
    void setUp() {
        torch.manual_seed(3);
        ctx = Sparse24.cpu();
    }

    @AfterEach
    void tearDown() {
        ctx.close();
    }

    private SparseFfnFunction function(SparseFfn ffn) {
        SparseFfnFunction f = new SparseFfnFunction(ffn);
        f.trace = events::add;
        return f;
    }

    /** Asserts that nothing of {@code f}'s forwards is left: no state, no graph that can call back, no callback. */
    private static void assertNothingLeft(SparseFfnFunction f, String when) {
        assertEquals(0, f.pendingForwards(), when + ": pending forwards");
        assertEquals(0, f.liveForwards(), when + ": forwards whose graph can call back");
        assertEquals(0, f.liveCallbacks(), when + ": hook callbacks not freed");
    }

    @Test
    void eachScopedStepReleasesItsForward() {
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = function(ffn)) {
            Tensor w1 = torch.randn(F, D).set_requires_grad(true);
            Tensor w2 = torch.randn(D, F).set_requires_grad(true);
            for (int step = 0; step < 5; step++) {
                events.clear();
                try (PointerScope scope = new PointerScope()) {
                    Tensor x = torch.randn(T, D).set_requires_grad(true);
                    f.apply(x, w1, w2).sum().backward();
                }
                assertTrue(events.contains("released"), "step " + step + ": " + events);
                assertNothingLeft(f, "step " + step + ": " + events);
            }
        }
    }

    /** The forward in a scope that closes before the backward: the gradients of the same forward without one. */
    @Test
    void aForwardInAScopeClosedBeforeItsBackwardGivesTheSameGradients() {
        Tensor x0 = torch.randn(T, D);
        Tensor w10 = torch.randn(F, D).mul_(new Scalar(0.2));
        Tensor w20 = torch.randn(D, F).mul_(new Scalar(0.1));
        Tensor[] plain = {x0.clone().set_requires_grad(true), w10.clone().set_requires_grad(true),
                w20.clone().set_requires_grad(true)};
        Tensor[] scoped = {x0.clone().set_requires_grad(true), w10.clone().set_requires_grad(true),
                w20.clone().set_requires_grad(true)};
        // two FFNs of the same options: their first step (token permutation, split backward) is the same
        try (SparseFfn ffnPlain = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfn ffnScoped = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction fPlain = new SparseFfnFunction(ffnPlain);
             SparseFfnFunction f = function(ffnScoped)) {
            try (Tensor loss = fPlain.apply(plain[0], plain[1], plain[2]).square().sum()) {
                loss.backward();
            }
            Tensor loss;
            try (PointerScope scope = new PointerScope(); Scope s24 = Sparse24.scope()) {
                loss = f.apply(scoped[0], scoped[1], scoped[2]).square().sum().retainReference();
            } // free z, its square and every other wrapper (and sparse24 resource) made inside; loss holds the graph
            System.gc(); // what the forward keeps only weakly would be collected here
            assertEquals(1, f.pendingForwards());
            loss.backward();
            assertTrue(events.contains("released"), events.toString());
            assertEquals(0, f.pendingForwards(), "released by its backward");
            String[] names = {"dX", "dW1", "dW2"};
            for (int i = 0; i < 3; i++) {
                assertArrayEquals(floats(plain[i].grad()), floats(scoped[i].grad()), names[i]);
            }
            assertThrowsNaming(RuntimeException.class, loss::backward, "second time", "retain_graph");
            assertEquals(1, f.liveForwards(), "loss still holds the graph, which can call back");
            loss.close();
            assertNothingLeft(f, "after the graph was freed");
        }
    }

    /** A graph dropped without a (complete) backward releases its forward, scope or not. */
    @Test
    void aGraphDroppedWithoutBackwardReleasesItsForward() {
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = function(ffn)) {
            Tensor x = torch.randn(T, D).set_requires_grad(true);
            Tensor w1 = torch.randn(F, D).set_requires_grad(true);
            Tensor w2 = torch.randn(D, F).set_requires_grad(true);
            // forward in a scope, the output escaping it, then dropped
            Tensor loss;
            try (PointerScope scope = new PointerScope()) {
                loss = f.apply(x, w1, w2).sum().retainReference();
            }
            assertEquals(1, f.pendingForwards());
            loss.close();
            assertEquals(List.of("forward", "released"), events);
            assertNothingLeft(f, "after the graph was dropped");

            // a backward stopped after the hook on z computed the gradients, before the carriers took them
            events.clear();
            Tensor z = f.apply(x, w1, w2);
            TensorTensorHook failing = new TensorTensorHook() {
                @Override
                public TensorBase call(TensorBase grad) {
                    grad.close();
                    throw new IllegalStateException("a later hook on z fails");
                }
            };
            z.register_hook(failing); // runs after the function's own hook on z
            loss = z.sum();
            assertThrowsNaming(RuntimeException.class, loss::backward, "a later hook on z fails");
            assertEquals(List.of("forward", "z-hook"), events);
            assertEquals(1, f.pendingForwards(), "the gradients wait for the carriers");
            loss.close();
            z.close();
            assertEquals(List.of("forward", "z-hook", "released"), events);
            assertNothingLeft(f, "after the graph of the stopped backward was dropped");
            failing.close();
        }
    }

    /**
     * A backward through a released graph throws the "second time" error even once the garbage collector has run:
     * the callbacks the graph still holds stay valid until the graph is freed.
     */
    @Test
    void aSecondBackwardAfterACollectionThrowsCleanly() throws InterruptedException {
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = function(ffn)) {
            Tensor x = torch.randn(T, D).set_requires_grad(true);
            Tensor w1 = torch.randn(F, D).set_requires_grad(true);
            Tensor w2 = torch.randn(D, F).set_requires_grad(true);
            Tensor z = f.apply(x, w1, w2);
            Tensor loss = z.sum();
            loss.backward();
            for (int i = 0; i < 3; i++) { // unreachable callbacks would be collected and freed here
                System.gc();
                Thread.sleep(50);
            }
            assertThrowsNaming(RuntimeException.class, loss::backward, "second time", "retain_graph");
            loss.close();
            z.close();
            assertNothingLeft(f, "after the graph was freed");
        }
    }

    /**
     * More forwards pending at once than JavaCPP has function-pointer slots per callback class (10): the hooks do
     * not use those slots (LibTorch holds a copy of the callback object), so each one still reaches its forward.
     */
    @Test
    void moreForwardsPendingThanCallbackSlotsAllBackpropagate() {
        int layers = 12;
        try (SparseFfn ffn = new SparseFfn(ctx, D, F, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = function(ffn)) {
            try (PointerScope scope = new PointerScope()) {
                Tensor x = torch.randn(T, D).set_requires_grad(true);
                Tensor[] w1 = new Tensor[layers];
                Tensor[] w2 = new Tensor[layers];
                Tensor h = x;
                for (int i = 0; i < layers; i++) { // h = h + FFN_i(h) / layers
                    w1[i] = torch.randn(F, D).mul_(new Scalar(0.2)).set_requires_grad(true);
                    w2[i] = torch.randn(D, F).mul_(new Scalar(0.1)).set_requires_grad(true);
                    h = h.add(f.apply(h, w1[i], w2[i]).div(new Scalar(layers)));
                }
                assertEquals(layers, f.pendingForwards());
                assertEquals(4 * layers, f.liveCallbacks());
                h.square().sum().backward();
                for (String event : new String[] {"z-hook", "x-hook", "w1-hook", "w2-hook", "released"}) {
                    assertEquals(layers, Collections.frequency(events, event), event + ": " + events);
                }
                for (int i = 0; i < layers; i++) {
                    assertTrue(w1[i].grad().abs().sum().item_float() > 0, "layer " + i + " dW1");
                    assertTrue(w2[i].grad().abs().sum().item_float() > 0, "layer " + i + " dW2");
                }
                assertTrue(x.grad().abs().sum().item_float() > 0, "dX");
                assertEquals(0, f.pendingForwards());
            } // frees the graph
            assertNothingLeft(f, "after the graph was freed");
        }
    }

    /**
     * Thousands of steps in every scope pattern (forward and backward in one scope; forward in a scope, backward
     * outside; forward in a scope, graph dropped unused; no scope, everything closed; a retained graph
     * backpropagated twice outside the scope of its forward): every step leaves nothing behind.
     */
    @Test
    void thousandsOfStepsInAlternatingScopePatternsLeaveNothing() {
        int steps = 2000;
        int d = 16; // small, to keep the test short
        int f = 64;
        int t = 32;
        try (SparseFfn ffn = new SparseFfn(ctx, d, f, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction fn = function(ffn)) {
            Tensor w1 = torch.randn(f, d).mul_(new Scalar(0.2)).set_requires_grad(true);
            Tensor w2 = torch.randn(d, f).mul_(new Scalar(0.1)).set_requires_grad(true);
            for (int step = 0; step < steps; step++) {
                int pattern = step % 5;
                events.clear();
                switch (pattern) {
                    case 0:
                        try (PointerScope scope = new PointerScope()) {
                            Tensor x = torch.randn(t, d).set_requires_grad(true);
                            fn.apply(x, w1, w2).square().sum().backward();
                        }
                        break;
                    case 1: {
                        Tensor loss;
                        try (PointerScope scope = new PointerScope(); Scope s24 = Sparse24.scope()) {
                            Tensor x = torch.randn(t, d).set_requires_grad(true);
                            loss = fn.apply(x, w1, w2).square().sum().retainReference();
                        }
                        loss.backward();
                        loss.close();
                        break;
                    }
                    case 2:
                        try (PointerScope scope = new PointerScope()) {
                            Tensor x = torch.randn(t, d).set_requires_grad(true);
                            fn.apply(x, w1, w2).square().sum();
                        }
                        break;
                    case 3:
                        try (Tensor x = torch.randn(t, d).set_requires_grad(true); Tensor z = fn.apply(x, w1, w2);
                             Tensor sq = z.square(); Tensor loss = sq.sum()) {
                            loss.backward();
                        }
                        break;
                    default: {
                        Tensor loss;
                        try (PointerScope scope = new PointerScope()) {
                            Tensor x = torch.randn(t, d).set_requires_grad(true);
                            loss = fn.apply(x, w1, w2).square().sum().retainReference();
                        }
                        try (PointerScope scope = new PointerScope(); BoolOptional retain = new BoolOptional(true);
                             TensorArrayRefOptional all = new TensorArrayRefOptional()) {
                            loss.backward(new Tensor(), retain, false, all);
                        }
                        assertEquals(1, fn.pendingForwards(), "step " + step + ": a retained graph");
                        loss.backward();
                        loss.close();
                        break;
                    }
                }
                String seen = "step " + step + " (pattern " + pattern + "): " + events;
                assertTrue(events.contains("released"), seen);
                assertNothingLeft(fn, seen);
            }
            assertEquals(steps, ffn.stepsTaken());
            for (Tensor w : new Tensor[] {w1, w2}) {
                float[] g = floats(w.grad());
                for (float v : g) {
                    assertTrue(Float.isFinite(v), "finite accumulated gradients");
                }
            }
        }
    }
}
