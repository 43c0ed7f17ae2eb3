package org.sparse24;

import java.util.List;

import org.junit.jupiter.api.Tag;

/** The FFN checks on CUDA device 0 (GPU bundle only: {@code mvn test -Pgpu}). */
@Tag("gpu")
class GpuFfnTest extends FfnChecks {
    @Override
    Backend backend() {
        return Backend.CUDA;
    }

    /** Shapes the sparse GEMMs take (multiples of 64) and awkward ones that fall back or pad. */
    @Override
    List<int[]> shapes() {
        return List.of(new int[] {128, 256, 512}, new int[] {64, 64, 128}, new int[] {192, 136, 320},
                new int[] {256, 128, 1024}, new int[] {1, 8, 68}, new int[] {7, 17, 100}, new int[] {100, 64, 132},
                new int[] {130, 72, 256});
    }

    @Override
    int flipAllowance() {
        return 4;
    }
}
