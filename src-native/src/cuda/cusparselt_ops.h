// cuSPARSELt glue: one handle per context, matmul plans cached per shape.
//
// Every plan multiplies a 2:4 structured A by a dense B:
//   A  [m, k] row-major (ld k), op N                                   -- the structured operand
//   B  [n, k] row-major (ld k), op T   when b_transposed  (c = a b^T)
//      [k, n] row-major (ld n), op N   otherwise          (c = a b)
//   C = D  [m, n] row-major (ld n)     (never column-major: see CudaBackend::spmm)
// compute CUSPARSE_COMPUTE_32F, alpha = 1, beta = 0 (C is never read).
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

// Throws S24_ERROR_CUSPARSELT "<call>: <status name>: <status text><context>" unless st is SUCCESS.
void check_cusparselt(const CusparseLtApi& api, cusparseStatus_t st, const char* call,
                      const std::string& context = std::string());

struct SpmmKey {
    int dtype;
    int64_t m, n, k;
    bool b_transposed;
    bool search;  // the plan's algorithm comes from cusparseLtMatmulSearch (a separate cache entry)
    bool operator<(const SpmmKey& o) const {
        return std::tie(dtype, m, n, k, b_transposed, search) < std::tie(o.dtype, o.m, o.n, o.k, o.b_transposed, o.search);
    }
    std::string describe() const;  // " (bf16 m=.. n=.. k=.. b_transposed=.. search=..)"
};

class SparseLt {
public:
    // Everything a cuSPARSELt matmul needs, created once. Lives at a fixed address (the plan keeps
    // pointers to its descriptors and to the algorithm selection, which the search updates).
    struct Plan {
        Plan() = default;
        Plan(const Plan&) = delete;
        Plan& operator=(const Plan&) = delete;
        ~Plan();

        SpmmKey key{};
        size_t workspace_bytes = 0;        // cusparseLtMatmulGetWorkspace (after the search, if any)
        size_t compressed_bytes = 0;       // cusparseLtSpMMACompressedSize: the compressed A
        size_t compress_buffer_bytes = 0;  // ... and the temporary buffer compression needs
        int alg_id = -1;                   // CUSPARSELT_MATMUL_ALG_CONFIG_ID in use
        bool searched = false;             // the algorithm came from cusparseLtMatmulSearch
        bool direct = false;               // the plan reads our packed CUSPARSELT layout as is

        cusparseLtMatDescriptor_t mat_a, mat_b, mat_c;
        cusparseLtMatmulDescriptor_t matmul;
        cusparseLtMatmulAlgSelection_t alg;
        cusparseLtMatmulPlan_t plan;

        const CusparseLtApi* api = nullptr;
        bool has_a = false, has_b = false, has_c = false, has_alg = false, has_plan = false;
    };

    // cusparseLtInit on the current CUDA device.
    explicit SparseLt(const CusparseLtApi& api);
    ~SparseLt();  // destroys the plans, then the handle; never throws
    SparseLt(const SparseLt&) = delete;
    SparseLt& operator=(const SparseLt&) = delete;

    const CusparseLtApi& api() const { return api_; }

    // A new plan with the default algorithm (not cached; see find/insert).
    std::unique_ptr<Plan> create_plan(const SpmmKey& key);
    // cusparseLtMatmulSearch on these operands (c is overwritten), then refreshes workspace_bytes
    // and alg_id. workspace: at least plan.workspace_bytes (the default algorithm's need).
    void search(Plan& plan, const void* a_compressed, const void* b, void* c, void* workspace, cudaStream_t stream);
    // c = a b on the stream; workspace: at least plan.workspace_bytes.
    void matmul(const Plan& plan, const void* a_compressed, const void* b, void* c, void* workspace,
                cudaStream_t stream);
    // compressed (plan.compressed_bytes) = cuSPARSELt's compression of the pruned dense [m, k] A;
    // buffer: plan.compress_buffer_bytes of temporary device memory.
    void compress(const Plan& plan, const void* dense, void* compressed, void* buffer, cudaStream_t stream);

    Plan* find(const SpmmKey& key) {
        auto it = plans_.find(key);
        return it == plans_.end() ? nullptr : it->second.get();
    }
    Plan& insert(std::unique_ptr<Plan> plan) {
        Plan& p = *plan;
        plans_[p.key] = std::move(plan);
        return p;
    }
    void clear() noexcept { plans_.clear(); }

private:
    void refresh(Plan& plan);  // workspace_bytes, alg_id

    const CusparseLtApi& api_;
    cusparseLtHandle_t handle_;
    bool has_handle_ = false;
    std::map<SpmmKey, std::unique_ptr<Plan>> plans_;
};

}  // namespace cuda
}  // namespace s24
