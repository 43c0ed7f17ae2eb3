// transpose: out [cols, rows] = in [rows, cols]^T (where a GEMM cannot write the layout asked for).
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

#include <algorithm>

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

// 32x32 tiles through shared memory.
__global__ void __launch_bounds__(256) transpose_kernel(const uint16_t* __restrict__ in, uint16_t* __restrict__ out,
                                                        int64_t rows, int64_t cols, int64_t row_tiles) {
    __shared__ uint16_t tile[32][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;  // 32 x 8
    const int64_t c0 = (int64_t)blockIdx.x * 32;
    for (int64_t rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
        const int64_t r0 = rt * 32;
#pragma unroll
        for (int m = 0; m < 4; ++m) {
            const int64_t r = r0 + ty + 8 * m, c = c0 + tx;
            if (r < rows && c < cols) tile[ty + 8 * m][tx] = in[r * cols + c];
        }
        __syncthreads();
#pragma unroll
        for (int m = 0; m < 4; ++m) {
            const int64_t c = c0 + ty + 8 * m, r = r0 + tx;  // out row c, column r
            if (r < rows && c < cols) out[c * rows + r] = tile[tx][ty + 8 * m];
        }
        __syncthreads();
    }
}

}  // namespace

void launch_transpose(s24_dtype /*dtype*/, int64_t rows, int64_t cols, const void* in, void* out, cudaStream_t stream) {
    const char* what = "launch_transpose";
    if (rows <= 0 || cols <= 0) return;
    const int64_t col_tiles = ceil_div(cols, 32), row_tiles = ceil_div(rows, 32);
    if (col_tiles > 0x7fffffffLL) throw Error(S24_ERROR_NOT_SUPPORTED, std::string(what) + ": too many columns");
    const dim3 grid((unsigned)col_tiles, (unsigned)std::min<int64_t>(row_tiles, 65535));
    transpose_kernel<<<grid, 256, 0, stream>>>(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out), rows,
                                               cols, row_tiles);
    check_launch(what);
}

}  // namespace cuda
}  // namespace s24
