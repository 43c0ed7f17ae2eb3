// The CUDA backend: device, stream, memory, events, spmm (cuSPARSELt) and gemm (cuBLASLt) with cached
// plans; every other building block forwards to the kernels of kernels.h. The layout probe (run at
// creation) is in layout_probe.cpp.
//
// Threading: the front end serializes the calls on one context, but they may come from different
// threads, so every method that touches CUDA first makes the context's device current.
// Errors: every failure throws s24::Error (CUDA -> S24_ERROR_CUDA, cuSPARSELt -> S24_ERROR_CUSPARSELT,
// cuBLASLt -> S24_ERROR_CUBLAS, cudaMalloc -> S24_ERROR_OUT_OF_MEMORY). Nothing prints, nothing aborts.
#include "backend.h"
#include "cuda/cublaslt_ops.h"
#include "cuda/cuda_util.h"
#include "cuda/cusparselt_ops.h"
#include "cuda/kernels.h"
#include "cuda/layout_probe.h"
#include "cuda/loader.h"
#include "cuda/random_operands.h"
#include "half.h"
#include "layout.h"
#include "sparse24.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace s24 {
namespace cuda {
namespace {

constexpr double kValidationTolerance = 1e-2;  // max |sparse - dense| / max |dense| of a validated plan

bool env_flag(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

bool is16(s24_dtype dtype) { return dtype == S24_BF16 || dtype == S24_FP16; }

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(int device);
    ~CudaBackend() override;

    // --- context -----------------------------------------------------------------------------------
    void info(s24_context_info* info) const override {
        info->backend = S24_BACKEND_CUDA;
        info->device = device_;
        info->compute_capability = cc_;
        info->multiprocessors = sms_;
        info->direct_layout = direct_layout_ ? 1 : 0;
        info->cusparselt_version = lt_api_ ? lt_api_->version : 0;
        info->cublaslt_version = blas_api_ ? blas_api_->version : 0;
        info->cpu_threads = 0;
        copy_string(info->device_name, sizeof info->device_name, name_);
        copy_string(info->cusparselt_path, sizeof info->cusparselt_path, lt_api_ ? lt_api_->path : std::string());
        copy_string(info->cublaslt_path, sizeof info->cublaslt_path, blas_api_ ? blas_api_->path : std::string());
    }

    void set_stream(void* stream) override {
        use_device();
        cudaStream_t next = static_cast<cudaStream_t>(stream);
        if (next == stream_) return;
        check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (previous stream)");
        stream_ = next;
    }
    void* stream() const override { return static_cast<void*>(stream_); }
    void synchronize() override {
        use_device();
        check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    }

    // --- memory ------------------------------------------------------------------------------------
    void* allocate(size_t bytes) override {
        use_device();
        return device_malloc(bytes, "s24_malloc");
    }
    void release(void* ptr) override {
        if (ptr == nullptr) return;
        use_device();
        check_cuda(cudaFree(ptr), "cudaFree");
    }
    void copy(void* dst, const void* src, size_t bytes, s24_copy_kind kind) override {
        if (bytes == 0) return;
        use_device();
        switch (kind) {
            case S24_COPY_HOST_TO_CONTEXT:
                check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (host to device)");
                check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
                break;
            case S24_COPY_CONTEXT_TO_HOST:
                check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (device to host)");
                check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
                break;
            case S24_COPY_CONTEXT_TO_CONTEXT:
                check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_),
                           "cudaMemcpyAsync (device to device)");
                break;
            default: fail(S24_ERROR_INVALID_ARGUMENT, "copy: unknown copy kind " + std::to_string((int)kind));
        }
    }
    void fill(void* ptr, int value, size_t bytes) override {
        if (bytes == 0) return;
        use_device();
        check_cuda(cudaMemsetAsync(ptr, value, bytes, stream_), "cudaMemsetAsync");
    }
    void* scratch(size_t bytes) override {
        use_device();
        return scratch_.get(bytes, stream_);
    }

    // --- events ------------------------------------------------------------------------------------
    void* event_create() override {
        use_device();
        cudaEvent_t event = nullptr;
        check_cuda(cudaEventCreate(&event), "cudaEventCreate");
        return static_cast<void*>(event);
    }
    void event_destroy(void* event) override {
        if (event == nullptr) return;
        use_device();
        check_cuda(cudaEventDestroy(static_cast<cudaEvent_t>(event)), "cudaEventDestroy");
    }
    void event_record(void* event) override {
        use_device();
        check_cuda(cudaEventRecord(static_cast<cudaEvent_t>(event), stream_), "cudaEventRecord");
    }
    float event_elapsed_ms(void* start, void* end) override {
        use_device();
        check_cuda(cudaEventSynchronize(static_cast<cudaEvent_t>(end)), "cudaEventSynchronize");
        float ms = 0.0f;
        check_cuda(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)),
                   "cudaEventElapsedTime");
        return ms;
    }

    // --- what the FFN uses ---------------------------------------------------------------------------
    s24_layout ffn_layout(s24_dtype dtype, int64_t rows, int64_t cols) const override {
        if (sparse_ && is16(dtype) && rows > 0 && cols > 0 && cusparselt_shape(rows, cols) &&
            rows <= kMaxElements / cols)
            return S24_LAYOUT_CUSPARSELT;
        return S24_LAYOUT_DENSE;
    }

    // cuSPARSELt needs, for 16-bit types: a structured matrix whose rows and cols are multiples of 16 (our
    // CUSPARSELT layout asks 64), dense matrices with dimensions multiples of 8 (16 bytes; what PyTorch's
    // cuSPARSELt backend pads to), 16-byte aligned pointers (checked per call in spmm), and at most 2^31-1
    // elements per matrix.
    bool sparse_gemm_available(s24_dtype dtype, int64_t m, int64_t n, int64_t k, s24_layout layout) const override {
        if (layout != S24_LAYOUT_CUSPARSELT || !sparse_ || !is16(dtype)) return false;
        if (m <= 0 || n <= 0 || k <= 0) return false;
        if (!cusparselt_shape(m, k) || n % 8 != 0) return false;
        return m <= kMaxElements / k && n <= kMaxElements / k && m <= kMaxElements / n;
    }

    // --- building blocks -----------------------------------------------------------------------------
    void sparsify24_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* h, bool keep_all, s24_layout layout,
                         void* packed, int32_t* col_counts, int64_t* totals) override {
        use_device();
        launch_sparsify24_rows(dtype, rows, cols, h, keep_all, layout, packed, col_counts, totals, stream_);
    }
    void compress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dense, s24_layout layout,
                    void* packed) override {
        use_device();
        launch_compress24(dtype, rows, cols, dense, layout, packed, stream_);
    }
    void decompress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* packed, s24_layout layout,
                      void* dense) override {
        use_device();
        launch_decompress24(dtype, rows, cols, packed, layout, dense, stream_);
    }
    void masked_grad24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dy, const void* y_packed,
                       s24_layout layout, void* dh_packed) override {
        use_device();
        launch_masked_grad24(dtype, rows, cols, dy, y_packed, layout, dh_packed, stream_);
    }
    void select_dense_features(int64_t features, const int32_t* counts, int64_t k, int32_t* dense_idx,
                               uint8_t* is_dense) override {
        use_device();
        launch_select_dense_features(features, counts, k, dense_idx, is_dense, stream_);
    }
    void sparsify24_cols_split(s24_dtype dtype, int64_t tokens, int64_t features, const void* src_packed,
                               s24_layout in_layout, const int32_t* perm, const uint8_t* is_dense,
                               const int32_t* dense_idx, int64_t k, s24_layout out_layout, void* t_packed,
                               void* dense_cols, int64_t* totals) override {
        use_device();
        launch_sparsify24_cols_split(dtype, tokens, features, src_packed, in_layout, perm, is_dense, dense_idx, k,
                                     out_layout, t_packed, dense_cols, totals, stream_);
    }
    void grad_split24(s24_dtype dtype, int64_t tokens, int64_t features, const void* dy, const void* y_packed,
                      s24_layout in_layout, void* dh_packed, const int32_t* perm, const uint8_t* is_dense,
                      const int32_t* dense_idx, int64_t k, s24_layout out_layout, void* t_packed, void* dense_cols,
                      int64_t* totals) override {
        use_device();
        if (!grad_split24_fits(in_layout, tokens, features, dy, y_packed, dh_packed)) {
            Backend::grad_split24(dtype, tokens, features, dy, y_packed, in_layout, dh_packed, perm, is_dense,
                                  dense_idx, k, out_layout, t_packed, dense_cols, totals);
            return;
        }
        launch_grad_split24(dtype, tokens, features, dy, y_packed, dh_packed, perm, is_dense, dense_idx, k, out_layout,
                            t_packed, dense_cols, totals, stream_);
    }
    void gather_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* in, const int32_t* perm,
                     void* out) override {
        use_device();
        launch_gather_rows(dtype, rows, cols, in, perm, out, stream_);
    }
    void set_algorithm_search(bool on) override { search_ = on; }
    void spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_packed, s24_layout a_layout,
              const void* b, bool b_transposed, void* c, bool c_transposed) override;
    void gemm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a, bool a_transposed, const void* b,
              bool b_transposed, void* c) override {
        use_device();
        blas_->gemm(dtype, m, n, k, a, a_transposed, b, b_transposed, c, blas_workspace(), stream_);
    }

    // --- FFN helpers ---------------------------------------------------------------------------------
    void token_permutation(uint64_t seed, int64_t step, int64_t tokens, int32_t* perm) override {
        use_device();
        launch_token_permutation(seed, step, tokens, perm, stream_);
    }
    void scatter_cols(s24_dtype dtype, int64_t rows, int64_t k, const void* src, const int32_t* idx, int64_t dst_cols,
                      void* dst) override {
        use_device();
        launch_scatter_cols(dtype, rows, k, src, idx, dst_cols, dst, stream_);
    }
    void scatter_rows(s24_dtype dtype, int64_t k, int64_t cols, const void* src, const int32_t* idx,
                      void* dst) override {
        use_device();
        launch_scatter_rows(dtype, k, cols, src, idx, dst, stream_);
    }

private:
    static constexpr int64_t kMaxElements = (int64_t(1) << 31) - 1;  // per matrix, cuSPARSELt 16-bit

    static void copy_string(char* dst, size_t size, const std::string& src) {
        const size_t n = std::min(size - 1, src.size());
        std::memcpy(dst, src.data(), n);
        dst[n] = '\0';
    }

    void use_device() const { check_cuda(cudaSetDevice(device_), "cudaSetDevice"); }
    void* blas_workspace() { return blas_ws_.get(BlasLt::kWorkspaceBytes, stream_); }

    // c (row-major [m, n], or [n, m] when c_transposed) = a_dense [m, k] times b, by cuBLASLt.
    void dense_product(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_dense, const void* b,
                       bool b_transposed, void* c, bool c_transposed) {
        if (!c_transposed) {
            blas_->gemm(dtype, m, n, k, a_dense, false, b, b_transposed, c, blas_workspace(), stream_);
        } else {
            // c^T [n, m] = op(b)^T a^T: b [n, k] is already op(b)^T; b [k, n] is read transposed.
            blas_->gemm(dtype, n, m, k, b, !b_transposed, a_dense, true, c, blas_workspace(), stream_);
        }
    }

    SparseLt::Plan& spmm_plan(const SpmmKey& key);
    std::unique_ptr<SparseLt::Plan> validated_plan(std::unique_ptr<SparseLt::Plan> plan);

    int device_;
    cudaStream_t stream_ = nullptr;  // the legacy default stream until set_stream
    int cc_ = 0;
    int sms_ = 0;
    std::string name_;
    const CusparseLtApi* lt_api_ = nullptr;
    const CublasLtApi* blas_api_ = nullptr;
    bool direct_layout_ = false;
    bool search_ = false;
    bool validate_plans_ = false;  // SPARSE24_VALIDATE_PLANS=1: validate every new plan, searched or not
    std::string probe_report_;

    // Buffers (declared before the library objects, so destroyed after them).
    DeviceBuffer scratch_{"context scratch"};
    DeviceBuffer blas_ws_{"cuBLASLt workspace"};
    DeviceBuffer lt_ws_{"cuSPARSELt workspace"};
    DeviceBuffer dense_a_{"decompressed spmm operand"};
    DeviceBuffer repack_{"cuSPARSELt-compressed spmm operand"};
    DeviceBuffer repack_tmp_{"cuSPARSELt compression buffer"};
    DeviceBuffer c_rows_{"row-major spmm product before its transpose"};

    std::unique_ptr<BlasLt> blas_;
    std::unique_ptr<SparseLt> sparse_;  // null below compute capability 8.0 (no sparse tensor cores)
};

CudaBackend::CudaBackend(int device) : device_(device) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess)
        fail(S24_ERROR_BACKEND_UNAVAILABLE, "no usable CUDA device: " + cuda_error_text(err, "cudaGetDeviceCount"));
    if (count <= 0) fail(S24_ERROR_BACKEND_UNAVAILABLE, "no CUDA device (cudaGetDeviceCount found 0)");
    if (device < 0 || device >= count)
        fail(S24_ERROR_INVALID_ARGUMENT, "device: CUDA device ordinal must be in [0, " + std::to_string(count) +
                                             "), got " + std::to_string(device));
    err = cudaSetDevice(device);
    if (err != cudaSuccess)
        fail(S24_ERROR_BACKEND_UNAVAILABLE,
             "CUDA device " + std::to_string(device) + " is not usable: " + cuda_error_text(err, "cudaSetDevice"));
    // Make the runtime create the device's primary context now, so that a broken device shows here.
    err = cudaFree(nullptr);
    if (err != cudaSuccess)
        fail(S24_ERROR_BACKEND_UNAVAILABLE,
             "CUDA device " + std::to_string(device) + " is not usable: " + cuda_error_text(err, "cudaFree(0)"));
    int major = 0, minor = 0;
    check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
    check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute");
    check_cuda(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    cc_ = major * 10 + minor;
    cudaDeviceProp props;
    check_cuda(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties");
    name_ = props.name;

    blas_api_ = &cublaslt_api();   // S24_ERROR_LIBRARY_NOT_FOUND with the paths searched
    lt_api_ = &cusparselt_api();
    blas_ = std::make_unique<BlasLt>(*blas_api_);
    blas_workspace();
    validate_plans_ = env_flag("SPARSE24_VALIDATE_PLANS");
    // Sparse tensor cores: compute capability 8.0 and newer. Without them (or where this cuSPARSELt
    // does not support the device), every spmm runs densely.
    if (cc_ < 80) {
        probe_report_ = "no layout probe: compute capability " + std::to_string(cc_) +
                        " has no sparse tensor cores (8.0 needed); spmm runs densely";
    } else {
        try {
            sparse_ = std::make_unique<SparseLt>(*lt_api_);
        } catch (const Error& e) {
            (void)cudaGetLastError();
            probe_report_ = std::string("no layout probe: ") + e.what() + "; spmm runs densely";
        }
    }
    if (sparse_) {
        const LayoutProbe probe = probe_cusparselt_layout(*sparse_, stream_);
        direct_layout_ = probe.direct;
        probe_report_ = probe.report;
    }
    // A probe that faulted leaves the context unusable: say so now rather than on a later call.
    err = cudaDeviceSynchronize();
    if (err != cudaSuccess) fail(S24_ERROR_CUDA, cuda_error_text(err, "cudaDeviceSynchronize (after the layout probe)"));
    if (cc_ >= 80 && !direct_layout_ && env_flag("SPARSE24_REQUIRE_DIRECT_LAYOUT"))
        fail(S24_ERROR_VALIDATION_FAILED, "layout probe (SPARSE24_REQUIRE_DIRECT_LAYOUT is set): " + probe_report_);
}

CudaBackend::~CudaBackend() {
    // Never throws: every status is ignored.
    // The whole device, not stream_: the caller's stream may already be destroyed.
    (void)cudaSetDevice(device_);
    (void)cudaDeviceSynchronize();
    sparse_.reset();
    blas_.reset();
    c_rows_.release();
    repack_tmp_.release();
    repack_.release();
    dense_a_.release();
    lt_ws_.release();
    blas_ws_.release();
    scratch_.release();
    (void)cudaGetLastError();
}

// ---- spmm ---------------------------------------------------------------------------------------------

SparseLt::Plan& CudaBackend::spmm_plan(const SpmmKey& key) {
    if (SparseLt::Plan* plan = sparse_->find(key)) return *plan;
    std::unique_ptr<SparseLt::Plan> plan = sparse_->create_plan(key);
    // Our packed buffer is used as is only where the probe matched and the plan expects exactly its size.
    plan->direct = direct_layout_ && plan->compressed_bytes == packed_bytes(S24_LAYOUT_CUSPARSELT, (s24_dtype)key.dtype, key.m, key.k);
    if (key.search || validate_plans_) plan = validated_plan(std::move(plan));
    return sparse_->insert(std::move(plan));
}

// Runs the default algorithm (and, with the search on, cusparseLtMatmulSearch) once on random operands
// of the plan's shape and compares with cuBLASLt's dense product of the same (uncompressed) matrix.
// A searched algorithm that is off by more than kValidationTolerance is discarded for the default one;
// a default algorithm that is off is an error (S24_ERROR_VALIDATION_FAILED). Synchronizes (once per plan).
std::unique_ptr<SparseLt::Plan> CudaBackend::validated_plan(std::unique_ptr<SparseLt::Plan> plan) {
    const SpmmKey key = plan->key;
    const s24_dtype dtype = (s24_dtype)key.dtype;
    const int64_t m = key.m, n = key.n, k = key.k;
    const size_t a_elems = (size_t)m * (size_t)k, b_elems = (size_t)n * (size_t)k, c_elems = (size_t)m * (size_t)n;
    const size_t pattern_a = std::min<size_t>(a_elems, (size_t(1) << 20) - 4);  // multiple of 4: whole 2:4 groups
    const size_t pattern_b = std::min<size_t>(b_elems, (size_t(1) << 20) - 3);  // another period than A's

    DeviceBuffer a_dense("validation: A"), a_comp("validation: compressed A"), comp_tmp("validation: buffer"),
        b_buf("validation: B"), ref("validation: dense product"), out("validation: sparse product");
    void* d_a = a_dense.get(a_elems * 2, stream_);
    void* d_ac = a_comp.get(plan->compressed_bytes, stream_);
    void* d_tmp = comp_tmp.get(plan->compress_buffer_bytes, stream_);
    void* d_b = b_buf.get(b_elems * 2, stream_);
    void* d_ref = ref.get(c_elems * 2, stream_);
    void* d_out = out.get(c_elems * 2, stream_);
    upload_tiled(d_a, a_elems, random_24(pattern_a, dtype, 0xa11ce ^ (uint64_t)m), stream_);
    upload_tiled(d_b, b_elems, random_dense(pattern_b, dtype, 0xb0b ^ (uint64_t)n), stream_);
    sparse_->compress(*plan, d_a, d_ac, d_tmp, stream_);
    dense_product(dtype, m, n, k, d_a, d_b, key.b_transposed, d_ref, false);
    const std::vector<uint16_t> want = download16(d_ref, c_elems, stream_);

    // max |got - want| / max |want|; infinite if got has a NaN or an infinity where want is finite.
    auto relative_error = [&](const void* d_got) -> double {
        const std::vector<uint16_t> got = download16(d_got, c_elems, stream_);
        double max_diff = 0.0, max_ref = 0.0;
        for (size_t i = 0; i < c_elems; ++i) {
            const double w = decode(want[i], dtype), g = decode(got[i], dtype);
            if (!std::isfinite(g)) return INFINITY;
            max_diff = std::max(max_diff, std::fabs(g - w));
            max_ref = std::max(max_ref, std::fabs(w));
        }
        return max_diff / std::max(max_ref, 1e-30);
    };
    auto run = [&](const SparseLt::Plan& p) -> double {
        check_cuda(cudaMemsetAsync(d_out, 0xff, c_elems * 2, stream_), "cudaMemsetAsync");  // NaN: unwritten shows
        sparse_->matmul(p, d_ac, d_b, d_out, lt_ws_.get(p.workspace_bytes, stream_), stream_);
        return relative_error(d_out);
    };

    const double default_error = run(*plan);
    if (!(default_error <= kValidationTolerance)) {
        char text[96];
        std::snprintf(text, sizeof text, "%.3g", default_error);
        fail(S24_ERROR_VALIDATION_FAILED, std::string("cuSPARSELt's default algorithm (id ") +
                                              std::to_string(plan->alg_id) +
                                              ") disagrees with cuBLASLt's dense product: relative error " + text +
                                              " > 1e-2" + key.describe());
    }
    if (!key.search) return plan;

    // The search is an optimization: where it fails, or its choice gives wrong results, the validated
    // default algorithm stays (a CUDA fault would still show on the next call).
    try {
        std::unique_ptr<SparseLt::Plan> searched = sparse_->create_plan(key);
        searched->direct = plan->direct;
        sparse_->search(*searched, d_ac, d_b, d_out, lt_ws_.get(searched->workspace_bytes, stream_), stream_);
        const double searched_error = run(*searched);
        if (searched_error <= kValidationTolerance) return searched;
    } catch (const Error&) {
        (void)cudaGetLastError();
    }
    return plan;
}

void CudaBackend::spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_packed, s24_layout a_layout,
                       const void* b, bool b_transposed, void* c, bool c_transposed) {
    use_device();
    const size_t es = (size_t)dtype_size(dtype);
    if (a_layout == S24_LAYOUT_CUSPARSELT && sparse_gemm_available(dtype, m, n, k, a_layout) &&
        aligned(a_packed, 16) && aligned(b, 16) && aligned(c, 16)) {
        // cuSPARSELt only ever writes a row-major C: on an H100 a column-major C with fp16 and a searched
        // algorithm returned CUSPARSE_STATUS_INTERNAL_ERROR and left the context with a sticky illegal-
        // instruction fault. c^T is written row-major into a buffer and transposed (one pass over c).
        const SparseLt::Plan& plan = spmm_plan(SpmmKey{(int)dtype, m, n, k, b_transposed, search_});
        void* c_rows = c_transposed ? c_rows_.get((size_t)m * (size_t)n * es, stream_) : c;
        const void* a = a_packed;
        if (!plan.direct) {
            // Our layout is not cuSPARSELt's here: unpack, and let cuSPARSELt compress.
            void* dense = dense_a_.get((size_t)m * (size_t)k * es, stream_);
            void* compressed = repack_.get(plan.compressed_bytes, stream_);
            void* buffer = repack_tmp_.get(plan.compress_buffer_bytes, stream_);
            launch_decompress24(dtype, m, k, a_packed, S24_LAYOUT_CUSPARSELT, dense, stream_);
            sparse_->compress(plan, dense, compressed, buffer, stream_);
            a = compressed;
        }
        sparse_->matmul(plan, a, b, c_rows, lt_ws_.get(plan.workspace_bytes, stream_), stream_);
        if (c_transposed) launch_transpose(dtype, m, n, c_rows, c, stream_);
        return;
    }
    // Dense path: unpack (unless already dense) and multiply with cuBLASLt.
    const void* a_dense = a_packed;
    if (a_layout != S24_LAYOUT_DENSE) {
        void* dense = dense_a_.get((size_t)m * (size_t)k * es, stream_);
        launch_decompress24(dtype, m, k, a_packed, a_layout, dense, stream_);
        a_dense = dense;
    }
    dense_product(dtype, m, n, k, a_dense, b, b_transposed, c, c_transposed);
}

}  // namespace
}  // namespace cuda

std::unique_ptr<Backend> create_cuda_backend(int device) {
    cuda::require_driver();
    return std::make_unique<cuda::CudaBackend>(device);
}

}  // namespace s24
