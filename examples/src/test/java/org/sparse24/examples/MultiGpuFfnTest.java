package org.sparse24.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.List;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * {@link MultiGpuCheck} as a test: the FFN on two GPUs at once from two threads, each against the CPU backend.
 * Needs 2 GPUs and the preset's CUDA natives (skipped otherwise, e.g. with the CPU natives of the test class path).
 */
@Tag("gpu")
class MultiGpuFfnTest {
    @Test
    void twoDevicesAtOnceMatchTheCpuBackend() throws Exception {
        int gpus = MultiGpuCheck.visibleGpus();
        assumeTrue(gpus >= 2, "needs 2 GPUs visible to LibTorch, found " + gpus);
        List<String> failures = MultiGpuCheck.run(2, 10);
        assertEquals(List.of(), failures);
    }
}
