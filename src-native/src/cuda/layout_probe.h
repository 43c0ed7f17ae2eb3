// The layout probe, run at context creation: whether the CUSPARSELT bytes our kernels write are exactly
// what cuSPARSELt's own compression writes (then spmm uses our packed operands as they are).
#pragma once

#include "cuda/cusparselt_ops.h"

#include <cuda_runtime.h>

#include <string>

namespace s24 {
namespace cuda {

struct LayoutProbe {
    bool direct = false;  // every byte matched
    std::string report;   // what matched, or the first difference / failure
};

// For bf16 and fp16, shapes 128x256 and 192x320: a random 2:4 matrix (exactly two non-zeros per group,
// so the metadata is unambiguous) compressed by cuSPARSELt (the plan-based compression of a plan with A
// row-major, op N, as spmm uses it) and by launch_compress24(..., S24_LAYOUT_CUSPARSELT, ...); the sizes
// and every byte must match. Failures (a mismatch, an exception from either side) give direct = false with
// the reason; a CUDA fault shows at the caller's next synchronization.
LayoutProbe probe_cusparselt_layout(SparseLt& sparse, cudaStream_t stream);

}  // namespace cuda
}  // namespace s24
