package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Contexts: creation, information, streams, timing, and closing everything they own. */
class ContextTest {
    @Test
    void cpuContextDescribesItself() {
        try (Sparse24 ctx = Sparse24.cpu()) {
            ContextInfo info = ctx.info();
            assertEquals(Backend.CPU, info.backend());
            assertEquals(-1, info.device());
            assertEquals(0, info.computeCapability());
            assertTrue(info.cpuThreads() >= 1);
            assertEquals("", info.cusparseltPath());
            assertTrue(info.toString().startsWith("CPU backend"), info.toString());
            assertTrue(Sparse24.version().matches("\\d+\\.\\d+\\.\\d+"), Sparse24.version());
        }
    }

    @Test
    void autoPicksARealBackend() {
        try (Sparse24 ctx = Sparse24.auto()) {
            assertNotEquals(Backend.AUTO, ctx.backend());
        }
    }

    @Test
    void cpuHasOnlyTheNullStream() {
        try (Sparse24 ctx = Sparse24.cpu()) {
            ctx.setStream(null);
            assertTrue(ctx.stream().isNull());
            ctx.synchronize();
        }
    }

    @Test
    void eventsMeasureElapsedTime() throws InterruptedException {
        try (Sparse24 ctx = Sparse24.cpu(); Event start = Event.create(ctx); Event end = Event.create(ctx)) {
            start.record();
            Thread.sleep(20);
            end.record();
            float ms = Event.elapsedMillis(start, end);
            assertTrue(ms >= 15 && ms < 10_000, "elapsed " + ms + " ms");
        }
    }

    @Test
    void closingTheContextClosesWhatItOwns() {
        Sparse24 ctx = Sparse24.cpu();
        Tensor t = Tensor.allocate(ctx, DType.FP32, 4, 4);
        SparseFfn ffn = new SparseFfn(ctx, 4, 8, DType.FP32, SparseFfnOptions.defaults());
        SavedState saved = ffn.newSavedState(2);
        Event event = Event.create(ctx);
        PackedMatrix packed = PackedMatrix.allocate(ctx, Layout.ROW, DType.FP32, 4, 8);
        ctx.close();
        assertTrue(ctx.isClosed());
        for (Resource r : new Resource[] {t, ffn, saved, event, packed}) {
            assertTrue(r.isClosed(), r.describe());
        }
        IllegalStateException e = assertThrows(IllegalStateException.class, saved::sparsity);
        assertTrue(e.getMessage().contains("saved state"), e.getMessage());
        assertThrows(IllegalStateException.class, event::record);
        t.close(); // after the context: a no-op
    }

    @Test
    void closingAnFfnClosesItsSavedStates() {
        try (Sparse24 ctx = Sparse24.cpu()) {
            SparseFfn ffn = new SparseFfn(ctx, 4, 8, DType.FP32, SparseFfnOptions.defaults());
            SavedState saved = ffn.newSavedState(3);
            ffn.close();
            assertTrue(saved.isClosed());
        }
    }
}
