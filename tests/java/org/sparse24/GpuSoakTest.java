package org.sparse24;

import org.junit.jupiter.api.Tag;

/**
 * The soak on CUDA device 0 (GPU bundle only). Device memory is checked from outside (tests/gpu/reliability.sh
 * samples it while this runs); here the counted native bytes and the host's resident memory.
 */
@Tag("gpu")
class GpuSoakTest extends SoakChecks {
    @Override
    Backend backend() {
        return Backend.CUDA;
    }

    @Override
    int[] shape() {
        return new int[] {256, 256, 1024};
    }

    @Override
    long rssAllowance() {
        return 256L << 20;
    }
}
