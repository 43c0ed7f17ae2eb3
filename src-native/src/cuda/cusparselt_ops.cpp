// cuSPARSELt glue (see cusparselt_ops.h).
#include "cuda/cusparselt_ops.h"

#include "backend.h"
#include "cuda/cuda_util.h"

#include <string>

namespace s24 {
namespace cuda {

void check_cusparselt(const CusparseLtApi& api, cusparseStatus_t st, const char* call, const std::string& context) {
    if (st == CUSPARSE_STATUS_SUCCESS) return;
    const char* name = api.cusparseLtGetErrorName(st);
    const char* text = api.cusparseLtGetErrorString(st);
    std::string message = std::string(call) + ": " + (name ? name : "unknown status") + " (" +
                          std::to_string((int)st) + ")";
    if (text != nullptr && text[0] != '\0') message += std::string(": ") + text;
    fail(S24_ERROR_CUSPARSELT, message + context);
}

std::string SpmmKey::describe() const {
    return std::string(" (") + (dtype == S24_BF16 ? "bf16" : dtype == S24_FP16 ? "fp16" : "fp32") +
           " m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " b_transposed=" + std::to_string((int)b_transposed) +
           " search=" + std::to_string((int)search) + ")";
}

SparseLt::Plan::~Plan() {
    if (api == nullptr) return;
    // Reverse order of creation; statuses are ignored (nothing useful to do with them here).
    if (has_plan) (void)api->cusparseLtMatmulPlanDestroy(&plan);
    if (has_alg) (void)api->cusparseLtMatmulAlgSelectionDestroy(&alg);
    if (has_c) (void)api->cusparseLtMatDescriptorDestroy(&mat_c);
    if (has_b) (void)api->cusparseLtMatDescriptorDestroy(&mat_b);
    if (has_a) (void)api->cusparseLtMatDescriptorDestroy(&mat_a);
}

SparseLt::SparseLt(const CusparseLtApi& api) : api_(api) {
    check_cusparselt(api_, api_.cusparseLtInit(&handle_), "cusparseLtInit");
    has_handle_ = true;
}

SparseLt::~SparseLt() {
    plans_.clear();
    if (has_handle_) (void)api_.cusparseLtDestroy(&handle_);
}

std::unique_ptr<SparseLt::Plan> SparseLt::create_plan(const SpmmKey& key) {
    auto p = std::make_unique<Plan>();
    Plan& plan = *p;
    plan.key = key;
    plan.api = &api_;
    const std::string where = key.describe();
    const cudaDataType type = cuda_type((s24_dtype)key.dtype);
    const uint32_t alignment = 16;  // bytes; every pointer passed to matmul is checked against it
    const int64_t m = key.m, n = key.n, k = key.k;

    // A: the structured operand, [m, k] row-major, op N.
    check_cusparselt(api_,
                     api_.cusparseLtStructuredDescriptorInit(&handle_, &plan.mat_a, m, k, k, alignment, type,
                                                             CUSPARSE_ORDER_ROW, CUSPARSELT_SPARSITY_50_PERCENT),
                     "cusparseLtStructuredDescriptorInit (A)", where);
    plan.has_a = true;
    // B: [n, k] row-major with op T (c = a b^T), or [k, n] row-major with op N (c = a b).
    const int64_t b_rows = key.b_transposed ? n : k, b_cols = key.b_transposed ? k : n;
    check_cusparselt(api_,
                     api_.cusparseLtDenseDescriptorInit(&handle_, &plan.mat_b, b_rows, b_cols, b_cols, alignment,
                                                        type, CUSPARSE_ORDER_ROW),
                     "cusparseLtDenseDescriptorInit (B)", where);
    plan.has_b = true;
    // C = D: [m, n] row-major (ld n).
    check_cusparselt(api_,
                     api_.cusparseLtDenseDescriptorInit(&handle_, &plan.mat_c, m, n, n, alignment, type,
                                                        CUSPARSE_ORDER_ROW),
                     "cusparseLtDenseDescriptorInit (C)", where);
    plan.has_c = true;
    check_cusparselt(api_,
                     api_.cusparseLtMatmulDescriptorInit(
                         &handle_, &plan.matmul, CUSPARSE_OPERATION_NON_TRANSPOSE,
                         key.b_transposed ? CUSPARSE_OPERATION_TRANSPOSE : CUSPARSE_OPERATION_NON_TRANSPOSE,
                         &plan.mat_a, &plan.mat_b, &plan.mat_c, &plan.mat_c, CUSPARSE_COMPUTE_32F),
                     "cusparseLtMatmulDescriptorInit", where);
    check_cusparselt(api_,
                     api_.cusparseLtMatmulAlgSelectionInit(&handle_, &plan.alg, &plan.matmul,
                                                           CUSPARSELT_MATMUL_ALG_DEFAULT),
                     "cusparseLtMatmulAlgSelectionInit", where);
    plan.has_alg = true;
    check_cusparselt(api_, api_.cusparseLtMatmulPlanInit(&handle_, &plan.plan, &plan.matmul, &plan.alg),
                     "cusparseLtMatmulPlanInit", where);
    plan.has_plan = true;
    check_cusparselt(api_,
                     api_.cusparseLtSpMMACompressedSize(&handle_, &plan.plan, &plan.compressed_bytes,
                                                        &plan.compress_buffer_bytes),
                     "cusparseLtSpMMACompressedSize", where);
    refresh(plan);
    return p;
}

void SparseLt::refresh(Plan& plan) {
    const std::string where = plan.key.describe();
    check_cusparselt(api_, api_.cusparseLtMatmulGetWorkspace(&handle_, &plan.plan, &plan.workspace_bytes),
                     "cusparseLtMatmulGetWorkspace", where);
    int id = -1;
    check_cusparselt(api_,
                     api_.cusparseLtMatmulAlgGetAttribute(&handle_, &plan.alg, CUSPARSELT_MATMUL_ALG_CONFIG_ID, &id,
                                                          sizeof(id)),
                     "cusparseLtMatmulAlgGetAttribute (CONFIG_ID)", where);
    plan.alg_id = id;
}

void SparseLt::search(Plan& plan, const void* a_compressed, const void* b, void* c, void* workspace,
                      cudaStream_t stream) {
    const float alpha = 1.0f, beta = 0.0f;
    cudaStream_t streams[1] = {stream};
    check_cusparselt(api_,
                     api_.cusparseLtMatmulSearch(&handle_, &plan.plan, &alpha, a_compressed, b, &beta, c, c, workspace,
                                                 streams, 1),
                     "cusparseLtMatmulSearch", plan.key.describe());
    plan.searched = true;
    refresh(plan);
}

void SparseLt::matmul(const Plan& plan, const void* a_compressed, const void* b, void* c, void* workspace,
                      cudaStream_t stream) {
    const float alpha = 1.0f, beta = 0.0f;
    cudaStream_t streams[1] = {stream};
    cusparseStatus_t st = api_.cusparseLtMatmul(&handle_, &plan.plan, &alpha, a_compressed, b, &beta, c, c, workspace,
                                                streams, 1);
    if (st != CUSPARSE_STATUS_SUCCESS) check_cusparselt(api_, st, "cusparseLtMatmul", plan.key.describe());
}

void SparseLt::compress(const Plan& plan, const void* dense, void* compressed, void* buffer, cudaStream_t stream) {
    check_cusparselt(api_, api_.cusparseLtSpMMACompress(&handle_, &plan.plan, dense, compressed, buffer, stream),
                     "cusparseLtSpMMACompress", plan.key.describe());
}

}  // namespace cuda
}  // namespace s24
