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

const char* form_name(SpmmForm form) {
    switch (form) {
        case SpmmForm::ROW_C: return "row_c";
        case SpmmForm::COL_C: return "col_c";
        case SpmmForm::STRUCTURED_B: return "structured_b";
    }
    return "unknown";
}

std::string SpmmKey::describe() const {
    return std::string(" (") + (dtype == S24_BF16 ? "bf16" : dtype == S24_FP16 ? "fp16" : "fp32") +
           " m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " b_transposed=" + std::to_string((int)b_transposed) + " form=" + form_name(form) + ")";
}

std::string AlgConfig::describe() const {
    if (id < 0) return "default";
    std::string s = "alg " + std::to_string(id);
    if (split_k > 0)
        s += " split-k " + std::to_string(split_k) + "/" + std::to_string(split_k_mode) + "/" +
             std::to_string(split_k_buffers);
    return s;
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

std::unique_ptr<SparseLt::Plan> SparseLt::create_plan(const SpmmKey& key, const AlgConfig& config) {
    auto p = std::make_unique<Plan>();
    Plan& plan = *p;
    plan.key = key;
    plan.api = &api_;
    const std::string where = key.describe() + " " + config.describe();
    const cudaDataType type = cuda_type((s24_dtype)key.dtype);
    const uint32_t alignment = 16;  // bytes; every pointer passed to matmul is checked against it
    const int64_t m = key.m, n = key.n, k = key.k;
    const bool structured_b = key.form == SpmmForm::STRUCTURED_B;

    // The structured operand a: [m, k] row-major (cuSPARSELt's A with op N, or its B with op T).
    cusparseLtMatDescriptor_t* sparse = structured_b ? &plan.mat_b : &plan.mat_a;
    cusparseLtMatDescriptor_t* dense = structured_b ? &plan.mat_a : &plan.mat_b;
    check_cusparselt(api_,
                     api_.cusparseLtStructuredDescriptorInit(&handle_, sparse, m, k, k, alignment, type,
                                                             CUSPARSE_ORDER_ROW, CUSPARSELT_SPARSITY_50_PERCENT),
                     "cusparseLtStructuredDescriptorInit (a)", where);
    (structured_b ? plan.has_b : plan.has_a) = true;
    // b: [n, k] row-major or [k, n] row-major.
    const int64_t b_rows = key.b_transposed ? n : k, b_cols = key.b_transposed ? k : n;
    check_cusparselt(api_,
                     api_.cusparseLtDenseDescriptorInit(&handle_, dense, b_rows, b_cols, b_cols, alignment, type,
                                                        CUSPARSE_ORDER_ROW),
                     "cusparseLtDenseDescriptorInit (b)", where);
    (structured_b ? plan.has_a : plan.has_b) = true;
    // C = D: c [m, n] row-major, column-major (COL_C), or c^T [n, m] row-major (STRUCTURED_B).
    if (key.form == SpmmForm::ROW_C)
        check_cusparselt(api_, api_.cusparseLtDenseDescriptorInit(&handle_, &plan.mat_c, m, n, n, alignment, type,
                                                                  CUSPARSE_ORDER_ROW),
                         "cusparseLtDenseDescriptorInit (c)", where);
    else if (key.form == SpmmForm::COL_C)
        check_cusparselt(api_, api_.cusparseLtDenseDescriptorInit(&handle_, &plan.mat_c, m, n, m, alignment, type,
                                                                  CUSPARSE_ORDER_COL),
                         "cusparseLtDenseDescriptorInit (c, column-major)", where);
    else
        check_cusparselt(api_, api_.cusparseLtDenseDescriptorInit(&handle_, &plan.mat_c, n, m, m, alignment, type,
                                                                  CUSPARSE_ORDER_ROW),
                         "cusparseLtDenseDescriptorInit (c^T)", where);
    plan.has_c = true;
    // ROW_C / COL_C: c = a op(b). STRUCTURED_B: c^T = op(b)^T a^T, where op(b)^T is b itself when
    // b_transposed ([n, k], op N) and b read transposed otherwise ([k, n], op T).
    const cusparseOperation_t op_a = structured_b ? (key.b_transposed ? CUSPARSE_OPERATION_NON_TRANSPOSE
                                                                      : CUSPARSE_OPERATION_TRANSPOSE)
                                                  : CUSPARSE_OPERATION_NON_TRANSPOSE;
    const cusparseOperation_t op_b = structured_b ? CUSPARSE_OPERATION_TRANSPOSE
                                                  : (key.b_transposed ? CUSPARSE_OPERATION_TRANSPOSE
                                                                      : CUSPARSE_OPERATION_NON_TRANSPOSE);
    check_cusparselt(api_,
                     api_.cusparseLtMatmulDescriptorInit(&handle_, &plan.matmul, op_a, op_b, &plan.mat_a, &plan.mat_b,
                                                         &plan.mat_c, &plan.mat_c, CUSPARSE_COMPUTE_32F),
                     "cusparseLtMatmulDescriptorInit", where);
    check_cusparselt(api_,
                     api_.cusparseLtMatmulAlgSelectionInit(&handle_, &plan.alg, &plan.matmul,
                                                           CUSPARSELT_MATMUL_ALG_DEFAULT),
                     "cusparseLtMatmulAlgSelectionInit", where);
    plan.has_alg = true;
    auto set = [&](cusparseLtMatmulAlgAttribute_t attribute, int value, const char* call) {
        check_cusparselt(api_, api_.cusparseLtMatmulAlgSetAttribute(&handle_, &plan.alg, attribute, &value, sizeof(value)),
                         call, where);
    };
    if (config.id >= 0) {
        set(CUSPARSELT_MATMUL_ALG_CONFIG_ID, config.id, "cusparseLtMatmulAlgSetAttribute (CONFIG_ID)");
        if (config.split_k > 0) {
            set(CUSPARSELT_MATMUL_SPLIT_K, config.split_k, "cusparseLtMatmulAlgSetAttribute (SPLIT_K)");
            if (config.split_k > 1) {
                set(CUSPARSELT_MATMUL_SPLIT_K_MODE, config.split_k_mode, "cusparseLtMatmulAlgSetAttribute (SPLIT_K_MODE)");
                set(CUSPARSELT_MATMUL_SPLIT_K_BUFFERS, config.split_k_buffers,
                    "cusparseLtMatmulAlgSetAttribute (SPLIT_K_BUFFERS)");
            }
        }
    }
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

int SparseLt::max_alg_id(const Plan& plan) {
    int max_id = -1;
    check_cusparselt(api_,
                     api_.cusparseLtMatmulAlgGetAttribute(&handle_, &plan.alg, CUSPARSELT_MATMUL_ALG_CONFIG_MAX_ID,
                                                          &max_id, sizeof(max_id)),
                     "cusparseLtMatmulAlgGetAttribute (CONFIG_MAX_ID)", plan.key.describe());
    return max_id;
}

void SparseLt::refresh(Plan& plan) {
    const std::string where = plan.key.describe();
    check_cusparselt(api_, api_.cusparseLtMatmulGetWorkspace(&handle_, &plan.plan, &plan.workspace_bytes),
                     "cusparseLtMatmulGetWorkspace", where);
    auto get = [&](cusparseLtMatmulAlgAttribute_t attribute, const char* call) {
        int value = 0;
        check_cusparselt(api_, api_.cusparseLtMatmulAlgGetAttribute(&handle_, &plan.alg, attribute, &value, sizeof(value)),
                         call, where);
        return value;
    };
    plan.config.id = get(CUSPARSELT_MATMUL_ALG_CONFIG_ID, "cusparseLtMatmulAlgGetAttribute (CONFIG_ID)");
    plan.config.split_k = get(CUSPARSELT_MATMUL_SPLIT_K, "cusparseLtMatmulAlgGetAttribute (SPLIT_K)");
    plan.config.split_k_mode = get(CUSPARSELT_MATMUL_SPLIT_K_MODE, "cusparseLtMatmulAlgGetAttribute (SPLIT_K_MODE)");
    plan.config.split_k_buffers =
        get(CUSPARSELT_MATMUL_SPLIT_K_BUFFERS, "cusparseLtMatmulAlgGetAttribute (SPLIT_K_BUFFERS)");
}

void SparseLt::search(Plan& plan, const void* a_compressed, const void* b, void* c, void* workspace,
                      cudaStream_t stream) {
    const float alpha = 1.0f, beta = 0.0f;
    cudaStream_t streams[1] = {stream};
    const bool structured_b = plan.key.form == SpmmForm::STRUCTURED_B;
    check_cusparselt(api_,
                     api_.cusparseLtMatmulSearch(&handle_, &plan.plan, &alpha, structured_b ? b : a_compressed,
                                                 structured_b ? a_compressed : b, &beta, c, c, workspace, streams, 1),
                     "cusparseLtMatmulSearch", plan.key.describe());
    refresh(plan);
}

void SparseLt::matmul(const Plan& plan, const void* a_compressed, const void* b, void* c, void* workspace,
                      cudaStream_t stream) {
    const float alpha = 1.0f, beta = 0.0f;
    cudaStream_t streams[1] = {stream};
    const bool structured_b = plan.key.form == SpmmForm::STRUCTURED_B;
    cusparseStatus_t st = api_.cusparseLtMatmul(&handle_, &plan.plan, &alpha, structured_b ? b : a_compressed,
                                                structured_b ? a_compressed : b, &beta, c, c, workspace, streams, 1);
    if (st != CUSPARSE_STATUS_SUCCESS) check_cusparselt(api_, st, "cusparseLtMatmul", plan.key.describe());
}

void SparseLt::compress(const Plan& plan, const void* dense, void* compressed, void* buffer, cudaStream_t stream) {
    check_cusparselt(api_, api_.cusparseLtSpMMACompress(&handle_, &plan.plan, dense, compressed, buffer, stream),
                     "cusparseLtSpMMACompress", plan.key.describe());
}

}  // namespace cuda
}  // namespace s24
