package org.sparse24;

import org.sparse24.binding.global.sparse24;

/** Where a {@link Sparse24} context runs its work. */
public enum Backend {
    /** CUDA when a usable device and cuSPARSELt/cuBLASLt are present, else CPU. */
    AUTO(sparse24.S24_BACKEND_AUTO),
    /** The reference backend: runs anywhere, host memory. */
    CPU(sparse24.S24_BACKEND_CPU),
    /** A CUDA device: device memory, work ordered on the context's stream. */
    CUDA(sparse24.S24_BACKEND_CUDA);

    final int code;

    Backend(int code) {
        this.code = code;
    }

    static Backend of(int code) {
        for (Backend b : values()) {
            if (b.code == code) {
                return b;
            }
        }
        throw new IllegalStateException("unknown native backend code " + code);
    }
}
