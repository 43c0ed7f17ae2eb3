// cuBLASLt glue: dense GEMMs of row-major bf16/fp16 matrices with fp32 accumulation, plans cached.
//
// c [m, n] row-major = op(a) op(b); a is [m, k] (or [k, m] when a_transposed), b is [k, n] (or [n, k]
// when b_transposed), all row-major. cuBLASLt is column-major, so the product is computed as
// c^T [n, m] (column-major, ld n: the same bytes as row-major c) = op(b)^T op(a)^T:
//   cuBLASLt A := b   as column-major [n, k] (ld n), op N     -- b [k, n] row-major
//                     as column-major [k, n] (ld k), op T     -- b [n, k] row-major (b_transposed)
//   cuBLASLt B := a   as column-major [k, m] (ld k), op N     -- a [m, k] row-major
//                     as column-major [m, k] (ld m), op T     -- a [k, m] row-major (a_transposed)
//   cuBLASLt C = D := column-major [n, m] (ld n)
#pragma once

#include "cuda/loader.h"
#include "sparse24.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace s24 {
namespace cuda {

// Throws S24_ERROR_CUBLAS "<call>: <status name>" unless st is SUCCESS.
void check_cublaslt(const CublasLtApi& api, cublasStatus_t st, const char* call,
                    const std::string& context = std::string());

class BlasLt {
public:
    static constexpr size_t kWorkspaceBytes = (size_t)32 << 20;  // what the heuristic may ask for

    explicit BlasLt(const CublasLtApi& api);  // cublasLtCreate
    ~BlasLt();                                // destroys the plans and the handle; never throws
    BlasLt(const BlasLt&) = delete;
    BlasLt& operator=(const BlasLt&) = delete;

    const CublasLtApi& api() const { return api_; }

    // c = op(a) op(b) (see above) on the stream. workspace: kWorkspaceBytes of device memory, 256-byte
    // aligned. The plan (descriptor, layouts, heuristic's algorithm) is cached per shape, transposes and
    // pointer alignments.
    void gemm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a, bool a_transposed, const void* b,
              bool b_transposed, void* c, void* workspace, cudaStream_t stream);

    void clear() noexcept { plans_.clear(); }

private:
    struct Key {
        int dtype;
        int64_t m, n, k;
        bool a_t, b_t;
        uint32_t align_a, align_b, align_c;  // bytes: the largest power of two (<= 256) dividing the pointer
        bool operator<(const Key& o) const {
            return std::tie(dtype, m, n, k, a_t, b_t, align_a, align_b, align_c) <
                   std::tie(o.dtype, o.m, o.n, o.k, o.a_t, o.b_t, o.align_a, o.align_b, o.align_c);
        }
    };
    struct Plan {
        Plan() = default;
        Plan(const Plan&) = delete;
        Plan& operator=(const Plan&) = delete;
        ~Plan();
        const CublasLtApi* api = nullptr;
        cublasLtMatmulDesc_t desc = nullptr;
        cublasLtMatrixLayout_t lay_a = nullptr, lay_b = nullptr, lay_c = nullptr;  // cuBLASLt's A, B, C=D
        cublasLtMatmulAlgo_t algo;
        size_t workspace_bytes = 0;
    };

    std::unique_ptr<Plan> create_plan(const Key& key);

    const CublasLtApi& api_;
    cublasLtHandle_t handle_ = nullptr;
    std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace cuda
}  // namespace s24
