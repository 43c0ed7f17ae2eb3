// cuBLASLt glue (see cublaslt_ops.h).
#include "cuda/cublaslt_ops.h"

#include "backend.h"
#include "cuda/cuda_util.h"

#include <string>

namespace s24 {
namespace cuda {
namespace {

uint32_t pointer_alignment(const void* p) {
    uint32_t a = 256;
    while (a > 1 && !aligned(p, a)) a /= 2;
    return a;
}

std::string describe(int dtype, int64_t m, int64_t n, int64_t k, bool a_t, bool b_t) {
    return std::string(" (") + (dtype == S24_BF16 ? "bf16" : dtype == S24_FP16 ? "fp16" : "fp32") +
           " m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " a_transposed=" + std::to_string((int)a_t) + " b_transposed=" + std::to_string((int)b_t) + ")";
}

}  // namespace

void check_cublaslt(const CublasLtApi& api, cublasStatus_t st, const char* call, const std::string& context) {
    if (st == CUBLAS_STATUS_SUCCESS) return;
    const char* name = api.cublasLtGetStatusName(st);
    fail(S24_ERROR_CUBLAS, std::string(call) + ": " + (name ? name : "unknown status") + " (" +
                               std::to_string((int)st) + ")" + context);
}

BlasLt::Plan::~Plan() {
    if (api == nullptr) return;
    if (lay_c) (void)api->cublasLtMatrixLayoutDestroy(lay_c);
    if (lay_b) (void)api->cublasLtMatrixLayoutDestroy(lay_b);
    if (lay_a) (void)api->cublasLtMatrixLayoutDestroy(lay_a);
    if (desc) (void)api->cublasLtMatmulDescDestroy(desc);
}

BlasLt::BlasLt(const CublasLtApi& api) : api_(api) {
    check_cublaslt(api_, api_.cublasLtCreate(&handle_), "cublasLtCreate");
}

BlasLt::~BlasLt() {
    plans_.clear();
    if (handle_ != nullptr) (void)api_.cublasLtDestroy(handle_);
}

std::unique_ptr<BlasLt::Plan> BlasLt::create_plan(const Key& key) {
    const std::string where = describe(key.dtype, key.m, key.n, key.k, key.a_t, key.b_t);
    auto p = std::make_unique<Plan>();
    Plan& plan = *p;
    plan.api = &api_;
    const cudaDataType type = cuda_type((s24_dtype)key.dtype);
    const uint64_t m = (uint64_t)key.m, n = (uint64_t)key.n, k = (uint64_t)key.k;

    check_cublaslt(api_, api_.cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                   "cublasLtMatmulDescCreate", where);
    // cuBLASLt's A is our b, its B is our a (c^T = op(b)^T op(a)^T, column-major).
    const cublasOperation_t op_a = key.b_t ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = key.a_t ? CUBLAS_OP_T : CUBLAS_OP_N;
    check_cublaslt(api_,
                   api_.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)),
                   "cublasLtMatmulDescSetAttribute (TRANSA)", where);
    check_cublaslt(api_,
                   api_.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)),
                   "cublasLtMatmulDescSetAttribute (TRANSB)", where);
    // Column-major layouts (cuBLASLt's default order): rows, cols, ld.
    if (key.b_t)
        check_cublaslt(api_, api_.cublasLtMatrixLayoutCreate(&plan.lay_a, type, k, n, (int64_t)k),
                       "cublasLtMatrixLayoutCreate (b)", where);
    else
        check_cublaslt(api_, api_.cublasLtMatrixLayoutCreate(&plan.lay_a, type, n, k, (int64_t)n),
                       "cublasLtMatrixLayoutCreate (b)", where);
    if (key.a_t)
        check_cublaslt(api_, api_.cublasLtMatrixLayoutCreate(&plan.lay_b, type, m, k, (int64_t)m),
                       "cublasLtMatrixLayoutCreate (a)", where);
    else
        check_cublaslt(api_, api_.cublasLtMatrixLayoutCreate(&plan.lay_b, type, k, m, (int64_t)k),
                       "cublasLtMatrixLayoutCreate (a)", where);
    check_cublaslt(api_, api_.cublasLtMatrixLayoutCreate(&plan.lay_c, type, n, m, (int64_t)n),
                   "cublasLtMatrixLayoutCreate (c)", where);

    cublasLtMatmulPreference_t pref = nullptr;
    check_cublaslt(api_, api_.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate", where);
    struct PrefGuard {
        const CublasLtApi& api;
        cublasLtMatmulPreference_t pref;
        ~PrefGuard() { (void)api.cublasLtMatmulPreferenceDestroy(pref); }
    } guard{api_, pref};
    const uint64_t max_ws = kWorkspaceBytes;
    check_cublaslt(api_,
                   api_.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws,
                                                             sizeof(max_ws)),
                   "cublasLtMatmulPreferenceSetAttribute (MAX_WORKSPACE_BYTES)", where);
    // The pointers' actual alignment (the default assumes 256 bytes): cuBLASLt's A is b, its B is a.
    const uint32_t align_a = key.align_b, align_b = key.align_a, align_c = key.align_c;
    check_cublaslt(api_,
                   api_.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                             &align_a, sizeof(align_a)),
                   "cublasLtMatmulPreferenceSetAttribute (MIN_ALIGNMENT_A_BYTES)", where);
    check_cublaslt(api_,
                   api_.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                             &align_b, sizeof(align_b)),
                   "cublasLtMatmulPreferenceSetAttribute (MIN_ALIGNMENT_B_BYTES)", where);
    check_cublaslt(api_,
                   api_.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                             &align_c, sizeof(align_c)),
                   "cublasLtMatmulPreferenceSetAttribute (MIN_ALIGNMENT_C_BYTES)", where);
    check_cublaslt(api_,
                   api_.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                             &align_c, sizeof(align_c)),
                   "cublasLtMatmulPreferenceSetAttribute (MIN_ALIGNMENT_D_BYTES)", where);

    cublasLtMatmulHeuristicResult_t result{};
    int count = 0;
    check_cublaslt(api_,
                   api_.cublasLtMatmulAlgoGetHeuristic(handle_, plan.desc, plan.lay_a, plan.lay_b, plan.lay_c,
                                                       plan.lay_c, pref, 1, &result, &count),
                   "cublasLtMatmulAlgoGetHeuristic", where);
    if (count < 1) check_cublaslt(api_, CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulAlgoGetHeuristic (no algorithm)", where);
    check_cublaslt(api_, result.state, "cublasLtMatmulAlgoGetHeuristic (result)", where);
    plan.algo = result.algo;
    plan.workspace_bytes = result.workspaceSize;
    return p;
}

void BlasLt::gemm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a, bool a_transposed, const void* b,
                  bool b_transposed, void* c, void* workspace, cudaStream_t stream) {
    const Key key{(int)dtype,           m, n, k, a_transposed, b_transposed, pointer_alignment(a), pointer_alignment(b),
                  pointer_alignment(c)};
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, create_plan(key)).first;
    const Plan& plan = *it->second;
    const float alpha = 1.0f, beta = 0.0f;
    // cuBLASLt's A is b, its B is a; C = D = c.
    cublasStatus_t st = api_.cublasLtMatmul(handle_, plan.desc, &alpha, b, plan.lay_a, a, plan.lay_b, &beta, c,
                                            plan.lay_c, c, plan.lay_c, &plan.algo, workspace, kWorkspaceBytes, stream);
    if (st != CUBLAS_STATUS_SUCCESS)
        check_cublaslt(api_, st, "cublasLtMatmul", describe(dtype, m, n, k, a_transposed, b_transposed));
}

}  // namespace cuda
}  // namespace s24
