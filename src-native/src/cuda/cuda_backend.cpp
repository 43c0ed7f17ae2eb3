// The CUDA backend: device, stream (and a side stream), memory, events, spmm (cuSPARSELt, tuned plans:
// plan_tuning.h, plan_cache.h) and gemm (cuBLASLt) with cached plans; every other building block forwards
// to the kernels of kernels.h. The layout probe (run at creation) is in layout_probe.cpp.
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
#include "cuda/plan_cache.h"
#include "cuda/plan_tuning.h"
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
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace s24 {
namespace cuda {
namespace {

constexpr int kTuneReps = 9;  // timed runs per tuning candidate (median)

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
    void* allocate_saved(size_t bytes) override {
        if (plain_saved_) return Backend::allocate_saved(bytes);
        use_device();
        void* p = nullptr;
        cudaError_t err = cudaMallocFromPoolAsync(&p, bytes, saved_pool(), stream_);
        if (err == cudaErrorMemoryAllocation) {
            (void)cudaGetLastError();
            fail(S24_ERROR_OUT_OF_MEMORY, "cudaMallocFromPoolAsync of " + std::to_string(bytes) +
                                              " bytes (saved state): out of device memory");
        }
        check_cuda(err, "cudaMallocFromPoolAsync (saved state)");
        return p;
    }
    void release_saved(void* ptr) override {
        if (plain_saved_) return Backend::release_saved(ptr);
        if (ptr == nullptr) return;
        use_device();
        check_cuda(cudaFreeAsync(ptr, stream_), "cudaFreeAsync (saved state)");
    }
    void trim_saved() override {
        if (saved_pool_ == nullptr) return;
        use_device();
        check_cuda(cudaMemPoolTrimTo(saved_pool_, 0), "cudaMemPoolTrimTo (saved states)");
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
    void spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_packed, s24_layout a_layout,
              const void* b, bool b_transposed, void* c, bool c_transposed, SpmmAlgorithm algorithm) override;
    void prepare_spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, bool b_transposed, bool c_transposed,
                      SpmmAlgorithm algorithm) override {
        use_device();
        if (sparse_gemm_available(dtype, m, n, k, S24_LAYOUT_CUSPARSELT))
            spmm_plan(SpmmRequest{(int)dtype, m, n, k, b_transposed, c_transposed}, algorithm);
    }
    void tune_spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, bool b_transposed, bool c_transposed,
                   SpmmTuning* report) override;
    void clear_plans() override {
        use_device();
        check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        plans_.clear();
        if (cache_) cache_->clear();
    }
    void begin_side() override;
    void end_side() override;
    void wait_side() override;
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

protected:
    // The retained buffers are used on the context's stream and the side stream (which the FFN joins before it
    // returns); none is freed while either is being captured into a CUDA graph (cudaStreamSynchronize is not
    // allowed then, and the graph keeps the buffers' addresses).
    bool quiesce() override {
        use_device();
        auto capturing = [](cudaStream_t s) {
            cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
            const cudaError_t err = cudaStreamIsCapturing(s, &capture);
            if (err != cudaSuccess) (void)cudaGetLastError();  // e.g. the legacy stream during a global capture
            return err != cudaSuccess || capture != cudaStreamCaptureStatusNone;
        };
        if (capturing(stream_) || (side_ != nullptr && capturing(side_))) return false;
        check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (before releasing scratch)");
        if (side_ != nullptr)
            check_cuda(cudaStreamSynchronize(side_), "cudaStreamSynchronize (side stream, before releasing scratch)");
        return true;
    }

private:
    static constexpr int64_t kMaxElements = (int64_t(1) << 31) - 1;  // per matrix, cuSPARSELt 16-bit

    static void copy_string(char* dst, size_t size, const std::string& src) {
        const size_t n = std::min(size - 1, src.size());
        std::memcpy(dst, src.data(), n);
        dst[n] = '\0';
    }

    void use_device() const { check_cuda(cudaSetDevice(device_), "cudaSetDevice"); }
    // Each stream has its own cuBLASLt workspace (GEMMs on the two streams may run at once).
    void* blas_workspace() {
        return (forked_ ? blas_side_ws_ : blas_ws_).get(BlasLt::kWorkspaceBytes, stream_);
    }

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

    SparseLt::Plan& spmm_plan(const SpmmRequest& asked, SpmmAlgorithm algorithm);
    SpmmRequest plan_request(SpmmRequest request) const;
    std::unique_ptr<SparseLt::Plan> stored_plan(const SpmmRequest& request);
    std::vector<SpmmForm> tuning_forms(const SpmmRequest& request) const;
    TuneContext tune_context() {
        return TuneContext{*sparse_, *blas_, blas_workspace(), lt_ws_, stream_, direct_layout_};
    }

    int device_;
    cudaStream_t stream_ = nullptr;  // the legacy default stream until set_stream
    int cc_ = 0;
    int sms_ = 0;
    std::string name_;
    const CusparseLtApi* lt_api_ = nullptr;
    const CublasLtApi* blas_api_ = nullptr;
    bool direct_layout_ = false;
    bool validate_plans_ = false;  // SPARSE24_VALIDATE_PLANS=1: validate default-algorithm plans too
    // SPARSE24_SAVED_POOL=0: saved states with cudaMalloc / synchronize + cudaFree (for tools that do not follow
    // stream-ordered pool allocations, e.g. compute-sanitizer's racecheck)
    bool plain_saved_ = false;
    std::vector<SpmmForm> transposed_forms_;  // forms tuned for a c_transposed request (SPARSE24_SPMM_FORMS)
    std::string probe_report_;
    // The side stream (created on the first fork) and the events ordering it with stream_.
    cudaStream_t side_ = nullptr, main_ = nullptr;
    cudaEvent_t fork_event_ = nullptr, join_event_ = nullptr;
    bool forked_ = false;

    // The saved states' pool (created on first use), keeping released memory for the next forwards.
    cudaMemPool_t saved_pool_ = nullptr;
    cudaMemPool_t saved_pool() {
        if (saved_pool_ == nullptr) {
            cudaMemPoolProps props{};
            props.allocType = cudaMemAllocationTypePinned;
            props.location.type = cudaMemLocationTypeDevice;
            props.location.id = device_;
            check_cuda(cudaMemPoolCreate(&saved_pool_, &props), "cudaMemPoolCreate (saved states)");
            uint64_t keep = UINT64_MAX;
            check_cuda(cudaMemPoolSetAttribute(saved_pool_, cudaMemPoolAttrReleaseThreshold, &keep),
                       "cudaMemPoolSetAttribute (saved states)");
        }
        return saved_pool_;
    }

    // Buffers (declared before the library objects, so destroyed after them), all under the retention rule
    // (registered by the constructor, the FFN's scratch first).
    DeviceBuffer scratch_{"context scratch"};
    DeviceBuffer blas_ws_{"cuBLASLt workspace"};
    DeviceBuffer blas_side_ws_{"cuBLASLt workspace of the side stream"};
    DeviceBuffer lt_ws_{"cuSPARSELt workspace"};
    DeviceBuffer dense_a_{"decompressed spmm operand"};
    DeviceBuffer repack_{"cuSPARSELt-compressed spmm operand"};
    DeviceBuffer repack_tmp_{"cuSPARSELt compression buffer"};
    DeviceBuffer c_rows_{"row-major spmm product before its transpose"};

    std::unique_ptr<BlasLt> blas_;
    std::unique_ptr<SparseLt> sparse_;  // null below compute capability 8.0 (no sparse tensor cores)
    std::unique_ptr<PlanCache> cache_;  // the tuned choices on disk
    // Plans by request and algorithm (TUNED: the tuned form and algorithm); destroyed before sparse_.
    std::map<std::pair<SpmmRequest, bool>, std::unique_ptr<SparseLt::Plan>> plans_;
};

CudaBackend::CudaBackend(int device) : device_(device) {
    retention_.add(&scratch_, true);
    for (DeviceBuffer* b : {&blas_ws_, &blas_side_ws_, &lt_ws_, &dense_a_, &repack_, &repack_tmp_, &c_rows_})
        retention_.add(b, false);
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
    if (const char* pool = std::getenv("SPARSE24_SAVED_POOL")) plain_saved_ = std::strcmp(pool, "0") == 0;
    transposed_forms_ = {SpmmForm::ROW_C};
    if (const char* forms = std::getenv("SPARSE24_SPMM_FORMS")) {
        // A comma-separated subset of row_c, col_c, structured_b (the last two are off by default: see
        // tuning_forms).
        transposed_forms_.clear();
        std::stringstream list(forms);
        std::string name;
        while (std::getline(list, name, ','))
            for (SpmmForm f : {SpmmForm::ROW_C, SpmmForm::COL_C, SpmmForm::STRUCTURED_B})
                if (name == form_name(f)) transposed_forms_.push_back(f);
        if (transposed_forms_.empty())
            fail(S24_ERROR_INVALID_ARGUMENT, std::string("SPARSE24_SPMM_FORMS: expected a comma-separated subset of "
                                                         "row_c, col_c, structured_b, got '") + forms + "'");
    }
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
        int driver = 0;
        check_cuda(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
        char uuid[40];
        char* p = uuid;
        for (int i = 0; i < 16; ++i) p += std::snprintf(p, 3, "%02x", (unsigned)(unsigned char)props.uuid.bytes[i]);
        cache_ = std::make_unique<PlanCache>(name_ + "/GPU-" + uuid, driver, lt_api_->version);
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
    plans_.clear();
    sparse_.reset();
    if (side_) (void)cudaStreamDestroy(side_);
    if (fork_event_) (void)cudaEventDestroy(fork_event_);
    if (join_event_) (void)cudaEventDestroy(join_event_);
    blas_.reset();
    blas_side_ws_.release();
    c_rows_.release();
    repack_tmp_.release();
    repack_.release();
    dense_a_.release();
    lt_ws_.release();
    blas_ws_.release();
    scratch_.release();
    if (saved_pool_) (void)cudaMemPoolDestroy(saved_pool_);
    (void)cudaGetLastError();
}

// ---- side stream --------------------------------------------------------------------------------------

void CudaBackend::begin_side() {
    use_device();
    if (forked_) fail(S24_ERROR_INTERNAL, "begin_side: the side stream is already in use");
    if (side_ == nullptr) {
        int least = 0, greatest = 0;  // the side stream's short GEMMs get SMs as the main stream's blocks retire
        check_cuda(cudaDeviceGetStreamPriorityRange(&least, &greatest), "cudaDeviceGetStreamPriorityRange");
        check_cuda(cudaStreamCreateWithPriority(&side_, cudaStreamNonBlocking, greatest), "cudaStreamCreateWithPriority");
        check_cuda(cudaEventCreateWithFlags(&fork_event_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
        check_cuda(cudaEventCreateWithFlags(&join_event_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    }
    check_cuda(cudaEventRecord(fork_event_, stream_), "cudaEventRecord (side stream)");
    check_cuda(cudaStreamWaitEvent(side_, fork_event_, 0), "cudaStreamWaitEvent (side stream)");
    main_ = stream_;
    stream_ = side_;
    forked_ = true;
}

void CudaBackend::end_side() {
    if (!forked_) return;
    stream_ = main_;
    forked_ = false;
}

void CudaBackend::wait_side() {
    if (side_ == nullptr) return;
    use_device();
    check_cuda(cudaEventRecord(join_event_, side_), "cudaEventRecord (side stream)");
    check_cuda(cudaStreamWaitEvent(stream_, join_event_, 0), "cudaStreamWaitEvent (side stream)");
}

// ---- spmm ---------------------------------------------------------------------------------------------

// The forms a request may be tuned to: ROW_C (a product stored as c^T is transposed by our kernel). Only
// where SPARSE24_SPMM_FORMS asks for them: a column-major C (on an H100, with fp16 and a searched algorithm,
// it returned CUSPARSE_STATUS_INTERNAL_ERROR and left the context with a sticky illegal-instruction fault)
// and the structured operand as cuSPARSELt's B (on an H200 with cuSPARSELt 0.8.0, tuning it at
// 16384x4096x16384 did not finish within 120 s).
std::vector<SpmmForm> CudaBackend::tuning_forms(const SpmmRequest& request) const {
    if (!request.c_transposed) return {SpmmForm::ROW_C};
    return transposed_forms_;
}

// The choice stored on disk for this request, if there is one that is still allowed and validates.
std::unique_ptr<SparseLt::Plan> CudaBackend::stored_plan(const SpmmRequest& request) {
    PlanChoice choice;
    if (!cache_ || !cache_->find(request, &choice)) return nullptr;
    const std::vector<SpmmForm> forms = tuning_forms(request);
    if (std::find(forms.begin(), forms.end(), choice.form) == forms.end()) return nullptr;
    try {
        std::unique_ptr<SparseLt::Plan> plan = sparse_->create_plan(
            SpmmKey{request.dtype, request.m, request.n, request.k, request.b_transposed, choice.form}, choice.config);
        TuneContext ctx = tune_context();
        if (choice.config.id <= sparse_->max_alg_id(*plan) && validate_plan(ctx, *plan) <= kPlanTolerance) return plan;
    } catch (const Error&) {
        (void)cudaGetLastError();
    }
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (after validating a stored plan)");
    return nullptr;
}

// The request a plan is made, tuned and cached for: a c_transposed request that may only take ROW_C (the
// default) runs the same GEMM as its c [m, n] twin before the transpose, so the two share one plan (dW2 and
// dW1 of the FFN: tuned apart, they got different algorithms, dW2's up to 7% slower, H200 2026-11-29).
SpmmRequest CudaBackend::plan_request(SpmmRequest request) const {
    if (request.c_transposed && transposed_forms_ == std::vector<SpmmForm>{SpmmForm::ROW_C}) request.c_transposed = false;
    return request;
}

SparseLt::Plan& CudaBackend::spmm_plan(const SpmmRequest& asked, SpmmAlgorithm algorithm) {
    const SpmmRequest request = plan_request(asked);
    const auto slot = std::make_pair(request, algorithm == SpmmAlgorithm::TUNED);
    auto it = plans_.find(slot);
    if (it != plans_.end()) return *it->second;
    std::unique_ptr<SparseLt::Plan> plan;
    if (algorithm == SpmmAlgorithm::DEFAULT) {
        plan = sparse_->create_plan(
            SpmmKey{request.dtype, request.m, request.n, request.k, request.b_transposed, SpmmForm::ROW_C});
        // Our packed buffer is used as is only where the probe matched and the plan expects exactly its size.
        plan->direct = direct_layout_ && plan->compressed_bytes == packed_bytes(S24_LAYOUT_CUSPARSELT, (s24_dtype)request.dtype, request.m, request.k);
        if (validate_plans_) {
            TuneContext ctx = tune_context();
            const double error = validate_plan(ctx, *plan);
            if (!(error <= kPlanTolerance)) {
                char text[32];
                std::snprintf(text, sizeof text, "%.3g", error);
                fail(S24_ERROR_VALIDATION_FAILED, std::string("cuSPARSELt's default algorithm (") +
                                                      plan->config.describe() +
                                                      ") disagrees with cuBLASLt's dense product: relative error " +
                                                      text + " > 1e-2" + request.describe());
            }
        }
    } else {
        plan = stored_plan(request);
        if (!plan) {
            TuneContext ctx = tune_context();
            SpmmTuning report;
            plan = tune_plan(ctx, request, tuning_forms(request), kTuneReps, &report);
            if (cache_) cache_->store(request, PlanChoice{plan->key.form, plan->config, report.candidates[report.chosen].ms});
        }
    }
    return *plans_.emplace(slot, std::move(plan)).first->second;
}

void CudaBackend::tune_spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, bool b_transposed, bool c_transposed,
                            SpmmTuning* report) {
    use_device();
    if (!sparse_gemm_available(dtype, m, n, k, S24_LAYOUT_CUSPARSELT))
        fail(S24_ERROR_NOT_SUPPORTED, "spmm tuning: this shape and dtype do not run on cuSPARSELt here (16-bit dtype, "
                                      "m and k multiples of 64, n of 8, compute capability 8.0 or newer)");
    const SpmmRequest request = plan_request(SpmmRequest{(int)dtype, m, n, k, b_transposed, c_transposed});
    TuneContext ctx = tune_context();
    std::unique_ptr<SparseLt::Plan> plan = tune_plan(ctx, request, tuning_forms(request), kTuneReps, report);
    if (cache_) cache_->store(request, PlanChoice{plan->key.form, plan->config, report->candidates[report->chosen].ms});
    plans_[std::make_pair(request, true)] = std::move(plan);
}

void CudaBackend::spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_packed, s24_layout a_layout,
                       const void* b, bool b_transposed, void* c, bool c_transposed, SpmmAlgorithm algorithm) {
    use_device();
    const size_t es = (size_t)dtype_size(dtype);
    if (a_layout == S24_LAYOUT_CUSPARSELT && sparse_gemm_available(dtype, m, n, k, a_layout) &&
        aligned(a_packed, 16) && aligned(b, 16) && aligned(c, 16)) {
        const SparseLt::Plan& plan = spmm_plan(SpmmRequest{(int)dtype, m, n, k, b_transposed, c_transposed}, algorithm);
        // A ROW_C plan writes c row-major: c^T is written into a buffer and transposed (one pass over c).
        const bool transpose = c_transposed && plan.key.form == SpmmForm::ROW_C;
        void* c_out = transpose ? c_rows_.get((size_t)m * (size_t)n * es, stream_) : c;
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
        sparse_->matmul(plan, a, b, c_out, lt_ws_.get(plan.workspace_bytes, stream_), stream_);
        if (transpose) launch_transpose(dtype, m, n, c_out, c, stream_);
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
