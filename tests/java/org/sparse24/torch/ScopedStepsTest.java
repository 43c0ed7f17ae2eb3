package org.sparse24.torch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.SparseFfn;
import org.sparse24.SparseFfnOptions;

/**
 * Training steps inside the caller's {@link PointerScope} (as the GPT example's loop does) release every forward
 * once its backward ran. Before the fix, the anchor deleter, created at the first apply() inside such a scope,
 * was freed with it: no later forward was released (reproduced with a fresh JVM whose first apply ran in a scope).
 */
class ScopedStepsTest {
    @Test
    void eachScopedStepReleasesItsForward() {
        torch.manual_seed(3);
        try (Sparse24 ctx = Sparse24.cpu();
             SparseFfn ffn = new SparseFfn(ctx, 32, 128, DType.FP32, SparseFfnOptions.defaults());
             SparseFfnFunction f = new SparseFfnFunction(ffn)) {
            Tensor w1 = torch.randn(128, 32).set_requires_grad(true);
            Tensor w2 = torch.randn(32, 128).set_requires_grad(true);
            List<String> events = Collections.synchronizedList(new ArrayList<>());
            f.trace = events::add;
            for (int step = 0; step < 5; step++) {
                events.clear();
                try (PointerScope scope = new PointerScope()) {
                    Tensor x = torch.randn(64, 32).set_requires_grad(true);
                    f.apply(x, w1, w2).sum().backward();
                }
                assertTrue(events.contains("released"), "step " + step + ": " + events);
                assertEquals(0, f.pendingForwards(), "step " + step + ": " + events);
            }
        }
    }
}
