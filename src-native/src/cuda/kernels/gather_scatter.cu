// gather_rows, scatter_rows (a warp per row, the widest vector the alignment allows) and scatter_cols.
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

// ---- row copies: out[oi(r)] = in[ii(r)], rows of `vecs` elements of type V; a warp per row -------------
template <class V>
__global__ void __launch_bounds__(256) copy_rows_kernel(const V* __restrict__ in, const int32_t* __restrict__ in_idx,
                                                        V* __restrict__ out, const int32_t* __restrict__ out_idx,
                                                        int64_t rows, int64_t vecs) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + (threadIdx.x >> 5); r < rows; r += warps) {
        const int64_t src = in_idx ? (int64_t)__ldg(in_idx + r) : r;
        const int64_t dst = out_idx ? (int64_t)__ldg(out_idx + r) : r;
        const V* a = in + src * vecs;
        V* b = out + dst * vecs;
#pragma unroll 4
        for (int64_t c = lane; c < vecs; c += 32) b[c] = a[c];
    }
}

void copy_rows(int64_t rows, int64_t cols, const void* in, const int32_t* in_idx, void* out, const int32_t* out_idx,
               cudaStream_t stream, const char* what) {
    if (rows <= 0 || cols <= 0) return;
    const int64_t bytes = cols * 2;
    const int grid = (int)std::min<int64_t>(ceil_div(rows, 8), 65535);
    if (bytes % 16 == 0 && aligned(in, 16) && aligned(out, 16)) {
        copy_rows_kernel<uint4><<<grid, 256, 0, stream>>>(static_cast<const uint4*>(in), in_idx,
                                                          static_cast<uint4*>(out), out_idx, rows, bytes / 16);
    } else if (bytes % 4 == 0 && aligned(in, 4) && aligned(out, 4)) {
        copy_rows_kernel<uint32_t><<<grid, 256, 0, stream>>>(static_cast<const uint32_t*>(in), in_idx,
                                                             static_cast<uint32_t*>(out), out_idx, rows, bytes / 4);
    } else {
        copy_rows_kernel<uint16_t><<<grid, 256, 0, stream>>>(static_cast<const uint16_t*>(in), in_idx,
                                                             static_cast<uint16_t*>(out), out_idx, rows, bytes / 2);
    }
    check_launch(what);
}

// ---- scatter_cols: dst[r, idx[j]] = src[r, j] -----------------------------------------------------------
__global__ void __launch_bounds__(256) scatter_cols_kernel(const uint16_t* __restrict__ src, const int32_t* __restrict__ idx,
                                                           uint16_t* __restrict__ dst, int64_t rows, int64_t k,
                                                           int64_t dst_cols) {
    const int64_t n = rows * k, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += stride) {
        const int64_t r = e / k, j = e - r * k;
        dst[r * dst_cols + __ldg(idx + j)] = src[e];
    }
}

}  // namespace

void launch_gather_rows(s24_dtype /*dtype*/, int64_t rows, int64_t cols, const void* in, const int32_t* perm,
                        void* out, cudaStream_t stream) {
    const char* what = "launch_gather_rows";
    if (!perm && rows > 0 && cols > 0) {
        if (out != in)
            check_cuda(cudaMemcpyAsync(out, in, (size_t)(rows * cols) * 2, cudaMemcpyDeviceToDevice, stream), what);
        return;
    }
    copy_rows(rows, cols, in, perm, out, nullptr, stream, what);
}

void launch_scatter_rows(s24_dtype /*dtype*/, int64_t k, int64_t cols, const void* src, const int32_t* idx, void* dst,
                         cudaStream_t stream) {
    copy_rows(k, cols, src, nullptr, dst, idx, stream, "launch_scatter_rows");
}

void launch_scatter_cols(s24_dtype /*dtype*/, int64_t rows, int64_t k, const void* src, const int32_t* idx,
                         int64_t dst_cols, void* dst, cudaStream_t stream) {
    const char* what = "launch_scatter_cols";
    if (rows <= 0 || k <= 0) return;
    scatter_cols_kernel<<<stride_grid(rows * k, 256, 16384), 256, 0, stream>>>(static_cast<const uint16_t*>(src), idx,
                                                                  static_cast<uint16_t*>(dst), rows, k, dst_cols);
    check_launch(what);
}

}  // namespace cuda
}  // namespace s24
