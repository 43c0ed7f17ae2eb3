package org.sparse24;

import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.TestInstance;

/** Checks on one backend (the subclass picks it) that share one context, open for the whole test class. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class ContextChecks {
    Sparse24 ctx;

    abstract Backend backend();

    /** The dtypes the backend's FFN takes: FP32, BF16, FP16 on the CPU backend; BF16, FP16 on CUDA. */
    List<DType> dtypes() {
        return backend() == Backend.CPU ? List.of(DType.FP32, DType.BF16, DType.FP16)
                : List.of(DType.BF16, DType.FP16);
    }

    Stream<DType> dtypeCases() {
        return dtypes().stream();
    }

    @BeforeAll
    void openContext() {
        ctx = Sparse24.create(backend());
    }

    @AfterAll
    void closeContext() {
        ctx.close();
    }
}
