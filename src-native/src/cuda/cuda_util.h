// Small host helpers of the CUDA backend and its kernels: CUDA error checks, alignment, a growing device buffer.
#pragma once

#include "backend.h"
#include "sparse24.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace s24 {
namespace cuda {

// "<call>: <cudaGetErrorName>: <cudaGetErrorString>". Also clears the runtime's last-error slot so a
// non-sticky failure is not reported again by a later, unrelated check.
inline std::string cuda_error_text(cudaError_t err, const char* call) {
    (void)cudaGetLastError();
    return std::string(call) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
}

inline void check_cuda(cudaError_t err, const char* call) {
    if (err != cudaSuccess) fail(S24_ERROR_CUDA, cuda_error_text(err, call));
}

// cudaMalloc with OUT_OF_MEMORY for cudaErrorMemoryAllocation. bytes == 0 gives nullptr.
inline void* device_malloc(size_t bytes, const char* what) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        fail(S24_ERROR_OUT_OF_MEMORY, std::string("cudaMalloc of ") + std::to_string(bytes) + " bytes (" + what +
                                          "): out of device memory");
    }
    check_cuda(err, "cudaMalloc");
    return p;
}

inline cudaDataType cuda_type(s24_dtype dtype) {
    switch (dtype) {
        case S24_BF16: return CUDA_R_16BF;
        case S24_FP16: return CUDA_R_16F;
        default: return CUDA_R_32F;
    }
}

inline bool aligned(const void* p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One device allocation that grows on demand. Growing waits for `stream` (work in flight may still use the
// old allocation), frees, and allocates the larger size; contents are not kept. The context's buffers are
// also released between calls by the retention rule (retention.h), after Backend::quiesce.
class DeviceBuffer final : public RetainedBuffer {
public:
    explicit DeviceBuffer(const char* what) : what_(what) {}
    ~DeviceBuffer() override { release(); }

    // bytes == 0 returns the current allocation (maybe nullptr) and counts as no request.
    void* get(size_t bytes, cudaStream_t stream) {
        if (bytes == 0) return ptr_;
        const size_t granule = (size_t)1 << 16;  // 64 KiB: fewer regrowths for nearby sizes
        const size_t want = (bytes + granule - 1) / granule * granule;
        asked(want);
        if (want <= size_ && ptr_ != nullptr) return ptr_;
        if (ptr_ != nullptr) {
            check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
            free_now();
        }
        ptr_ = device_malloc(want, what_);
        size_ = want;
        return ptr_;
    }

    // Frees without checking (destructors).
    void release() noexcept {
        if (ptr_ != nullptr) (void)cudaFree(ptr_);
        ptr_ = nullptr;
        size_ = 0;
    }

    size_t held() const override { return size_; }
    void free_now() override {
        void* p = ptr_;
        ptr_ = nullptr;
        size_ = 0;
        if (p != nullptr) check_cuda(cudaFree(p), "cudaFree");
    }

private:
    const char* what_;
    void* ptr_ = nullptr;
    size_t size_ = 0;
};

}  // namespace cuda
}  // namespace s24
