package org.sparse24;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/** {@link IndexTensorOpsTest}'s check on CUDA device 0, in the cuSPARSELt layout (GPU bundle only). */
@Tag("gpu")
class IndexTensorOpsGpuTest {
    @Test
    void deviceTensorsGiveTheHostArrayResults() {
        try (Sparse24 ctx = Sparse24.cuda(0)) {
            IndexTensorOpsTest.check(ctx, DType.BF16, Layout.CUSPARSELT, 128, 192);
            IndexTensorOpsTest.check(ctx, DType.FP16, Layout.ROW, 36, 20);
        }
    }
}
