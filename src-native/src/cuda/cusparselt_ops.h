// cuSPARSELt glue: one handle per context, matmul plans cached per shape, form and algorithm.
//
// A plan computes c [m, n] = a b with a [m, k] 2:4 structured along k (row-major, ld k), alpha = 1,
// beta = 0 (C is never read), compute CUSPARSE_COMPUTE_32F. b is
//   [n, k] row-major (ld k) when b_transposed  (c = a b^T)
//   [k, n] row-major (ld n) otherwise          (c = a b)
// and the form says how cuSPARSELt is asked:
//   ROW_C          cuSPARSELt's A := a (op N), B := b, C = D := c [m, n] row-major
//   COL_C          the same with C = D column-major (c^T [n, m] row-major in memory)
//   STRUCTURED_B   c^T [n, m] = op(b)^T a^T: cuSPARSELt's A := op(b)^T (dense), B := a with op T (the
//                  structured operand), C = D := c^T [n, m] row-major. Writes c^T without a column-major C.
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

enum class SpmmForm { ROW_C = 0, COL_C = 1, STRUCTURED_B = 2 };
const char* form_name(SpmmForm form);  // "row_c", "col_c", "structured_b"

struct SpmmKey {
    int dtype;
    int64_t m, n, k;
    bool b_transposed;
    SpmmForm form;
    bool c_transposed() const { return form != SpmmForm::ROW_C; }  // the product is stored as c^T [n, m]
    bool operator<(const SpmmKey& o) const {
        return std::tie(dtype, m, n, k, b_transposed, form) < std::tie(o.dtype, o.m, o.n, o.k, o.b_transposed, o.form);
    }
    std::string describe() const;  // " (bf16 m=.. n=.. k=.. b_transposed=.. form=..)"
};

// The algorithm a plan runs: CUSPARSELT_MATMUL_ALG_CONFIG_ID and the split-K settings. id < 0: cuSPARSELt's
// default (the other fields are then ignored); split_k <= 0 leaves the split-K settings at their defaults.
struct AlgConfig {
    int id = -1;
    int split_k = 0, split_k_mode = 0, split_k_buffers = 0;
    bool operator==(const AlgConfig& o) const {
        return id == o.id && split_k == o.split_k && split_k_mode == o.split_k_mode && split_k_buffers == o.split_k_buffers;
    }
    std::string describe() const;  // "alg 3", "alg 3 split-k 2/1/1" or "default"
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
        AlgConfig config;                  // what the plan runs (read back from cuSPARSELt)
        size_t workspace_bytes = 0;        // cusparseLtMatmulGetWorkspace
        size_t compressed_bytes = 0;       // cusparseLtSpMMACompressedSize: the compressed structured operand
        size_t compress_buffer_bytes = 0;  // ... and the temporary buffer compression needs
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

    // A new plan running `config` (not cached; see find/insert).
    std::unique_ptr<Plan> create_plan(const SpmmKey& key, const AlgConfig& config = AlgConfig());
    // The largest CUSPARSELT_MATMUL_ALG_CONFIG_ID of the plan's matmul (ids run from 0).
    int max_alg_id(const Plan& plan);
    // cusparseLtMatmulSearch on these operands (c is overwritten), then refreshes workspace_bytes
    // and config. workspace: at least plan.workspace_bytes (the default algorithm's need).
    void search(Plan& plan, const void* a_compressed, const void* b, void* c, void* workspace, cudaStream_t stream);
    // c = a b (in the plan's form) on the stream; workspace: at least plan.workspace_bytes.
    void matmul(const Plan& plan, const void* a_compressed, const void* b, void* c, void* workspace,
                cudaStream_t stream);
    // compressed (plan.compressed_bytes) = cuSPARSELt's compression of the pruned dense [m, k] a;
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
    void refresh(Plan& plan);  // workspace_bytes, config

    const CusparseLtApi& api_;
    cusparseLtHandle_t handle_;
    bool has_handle_ = false;
    std::map<SpmmKey, std::unique_ptr<Plan>> plans_;
};

}  // namespace cuda
}  // namespace s24
