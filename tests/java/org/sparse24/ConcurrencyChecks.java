package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.Test;

/**
 * Closing tensors, FFNs and whole contexts on some threads while others run forward and backward on them: no
 * crash, no hang, every call either succeeds with the right result (Z as one thread computes it) or fails with {@link IllegalStateException}
 * ("... is closed"). 8 threads per test (6 workers, 2 closers), {@code sparse24.stressSeconds} (default 10)
 * seconds each.
 */
abstract class ConcurrencyChecks {
    static final int WORKERS = 6;
    static final int CLOSERS = 2;

    abstract Backend backend();

    /** The element type of every case: bf16. */
    DType dtype() {
        return DType.BF16;
    }

    /** {T, d, f}. */
    abstract int[] shape();

    static long seconds() {
        return Long.getLong("sparse24.stressSeconds", 10);
    }

    /** Everything one generation of workers uses; what the closers close. */
    final class World {
        final Sparse24 ctx;
        final boolean ownsContext;
        final SparseFfn ffn;
        final Tensor x;
        final Tensor w1;
        final Tensor w2;
        final Tensor dz;

        World(Sparse24 ctx, boolean ownsContext, FfnInputs in) {
            this.ctx = ctx;
            this.ownsContext = ownsContext;
            ffn = new SparseFfn(ctx, in.d, in.f, in.dtype, SparseFfnOptions.defaults());
            x = Tensor.fromFloats(ctx, in.dtype, in.x, in.tokens, in.d).named("x");
            w1 = Tensor.fromFloats(ctx, in.dtype, in.w1, in.f, in.d).named("w1");
            w2 = Tensor.fromFloats(ctx, in.dtype, in.w2, in.d, in.f).named("w2");
            dz = Tensor.fromFloats(ctx, in.dtype, in.dz, in.tokens, in.d).named("dz");
        }

        /** One training step; returns Z's values (compared with the single-threaded ones). */
        float[] step() {
            try (ForwardResult r = ffn.forward(x, w1, w2);
                 Gradients g = ffn.backward(r.saved(), x, w1, w2, dz)) {
                return r.output().toFloats();
            }
        }
    }

    /** What the closers do to a world: close some of it, or all, and return its replacement. */
    interface Closer {
        World replace(World old, FfnInputs inputs, Random random);
    }

    @Test
    void closingTensorsWhileOthersRun() throws Exception {
        try (Sparse24 ctx = Sparse24.create(backend())) {
            stress(new World(ctx, false, inputs()), (old, inputs, random) -> {
                Tensor[] all = {old.x, old.w1, old.w2, old.dz};
                all[random.nextInt(all.length)].close();
                World next = new World(old.ctx, false, inputs);
                old.ffn.close();
                for (Tensor t : all) {
                    t.close();
                }
                return next;
            });
        }
    }

    @Test
    void closingFfnsWhileOthersRun() throws Exception {
        try (Sparse24 ctx = Sparse24.create(backend())) {
            stress(new World(ctx, false, inputs()), (old, inputs, random) -> {
                old.ffn.close();
                World next = new World(old.ctx, false, inputs);
                for (Tensor t : new Tensor[] {old.x, old.w1, old.w2, old.dz}) {
                    t.close();
                }
                return next;
            });
        }
    }

    @Test
    void closingContextsWhileOthersRun() throws Exception {
        stress(new World(Sparse24.create(backend()), true, inputs()), (old, inputs, random) -> {
            old.ctx.close();
            return new World(Sparse24.create(backend()), true, inputs);
        });
    }

    private FfnInputs inputs() {
        int[] s = shape();
        return new FfnInputs(dtype(), s[0], s[1], s[2], new Random(99));
    }

    private void stress(World first, Closer closer) throws Exception {
        FfnInputs inputs = inputs();
        float[] expected = first.step();
        AtomicReference<World> world = new AtomicReference<>(first);
        AtomicLong steps = new AtomicLong();
        AtomicLong refused = new AtomicLong();
        AtomicLong replaced = new AtomicLong();
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds());
        ExecutorService pool = Executors.newFixedThreadPool(WORKERS + CLOSERS);
        List<Future<?>> running = new ArrayList<>();
        try {
            for (int i = 0; i < WORKERS; i++) {
                running.add(pool.submit(() -> {
                    while (System.nanoTime() < end && failures.isEmpty()) {
                        try {
                            float[] z = world.get().step();
                            TestData.assertClose("Z of a step", z, ReferenceFfn.widen(expected),
                                    TestData.tolerance(dtype()));
                            steps.incrementAndGet();
                        } catch (IllegalStateException e) {
                            if (!e.getMessage().contains("closed")) {
                                failures.add(e);
                            }
                            refused.incrementAndGet();
                        } catch (Throwable e) {
                            failures.add(e);
                        }
                    }
                }));
            }
            for (int i = 0; i < CLOSERS; i++) {
                long seed = i;
                running.add(pool.submit(() -> {
                    Random random = new Random(seed);
                    while (System.nanoTime() < end && failures.isEmpty()) {
                        try {
                            Thread.sleep(5 + random.nextInt(45));
                            synchronized (world) {
                                world.set(closer.replace(world.get(), inputs, random));
                            }
                            replaced.incrementAndGet();
                        } catch (Throwable e) {
                            failures.add(e);
                        }
                    }
                }));
            }
            for (Future<?> f : running) {
                f.get(seconds() + 120, TimeUnit.SECONDS);  // a hang fails here
            }
        } finally {
            pool.shutdownNow();
            World last = world.get();
            if (last.ownsContext) {
                last.ctx.close();
            }
        }
        if (!failures.isEmpty()) {
            Throwable t = failures.peek();
            fail("unexpected failure (" + failures.size() + " in all): " + t, t);
        }
        assertTrue(steps.get() > 0 && replaced.get() > 0, "steps " + steps + ", refused " + refused + ", replaced "
                + replaced);
        System.out.println(getClass().getSimpleName() + ": " + steps + " steps, " + refused + " refused, " + replaced
                + " closes in " + seconds() + " s");
    }
}
