// transpose: out [cols, rows] = in [rows, cols]^T (where a GEMM cannot write the layout asked for).
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

#include <algorithm>

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

// 64x64 tiles, 8-byte loads along in's rows and 4-byte stores (2 elements) along out's rows; needs
// cols % 4 == 0, rows % 2 == 0, in 8-byte and out 4-byte aligned (every spmm product: n % 8 == 0, m % 64 == 0,
// 16-byte aligned). Pitch 66: the loads' 4-byte shared stores hit 32 different banks, the stores' column
// reads 16 (2-way).
constexpr int kTile = 64, kPitch = kTile + 2;

__global__ void __launch_bounds__(256) transpose_kernel(const uint16_t* __restrict__ in, uint16_t* __restrict__ out,
                                                        int64_t rows, int64_t cols, int64_t row_tiles) {
    __shared__ __align__(8) uint16_t tile[kTile][kPitch];
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const int lc = 4 * (t & 15);  // the 4 columns a thread loads
    const int64_t c0 = (int64_t)blockIdx.x * kTile;
    for (int64_t rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
        const int64_t r0 = rt * kTile;
#pragma unroll
        for (int m = 0; m < 4; ++m) {
            const int lr = (t >> 4) + 16 * m;
            const int64_t r = r0 + lr, c = c0 + lc;
            uint2 v = make_uint2(0u, 0u);
            if (r < rows && c < cols) v = __ldg(reinterpret_cast<const uint2*>(in + r * cols + c));
            uint32_t* p = reinterpret_cast<uint32_t*>(&tile[lr][lc]);
            p[0] = v.x;
            p[1] = v.y;
        }
        __syncthreads();
        // warp w writes out rows c0 + w + 8m; lane l the elements from in rows r0 + 2l and r0 + 2l + 1
        const int64_t r = r0 + 2 * lane;
#pragma unroll
        for (int m = 0; m < 8; ++m) {
            const int oc = warp + 8 * m;
            const int64_t c = c0 + oc;
            if (c < cols && r < rows)
                *reinterpret_cast<uint32_t*>(out + c * rows + r) =
                    (uint32_t)tile[2 * lane][oc] | ((uint32_t)tile[2 * lane + 1][oc] << 16);
        }
        __syncthreads();
    }
}

}  // namespace

void launch_transpose(s24_dtype /*dtype*/, int64_t rows, int64_t cols, const void* in, void* out, cudaStream_t stream) {
    const char* what = "launch_transpose";
    if (rows <= 0 || cols <= 0) return;
    if (cols % 4 != 0 || rows % 2 != 0 || !aligned(in, 8) || !aligned(out, 4))
        throw Error(S24_ERROR_INTERNAL, std::string(what) + ": needs cols % 4 == 0, rows % 2 == 0 and aligned buffers");
    const int64_t col_tiles = ceil_div(cols, kTile), row_tiles = ceil_div(rows, kTile);
    if (col_tiles > 0x7fffffffLL) throw Error(S24_ERROR_NOT_SUPPORTED, std::string(what) + ": too many columns");
    const dim3 grid((unsigned)col_tiles, (unsigned)std::min<int64_t>(row_tiles, 65535));
    transpose_kernel<<<grid, 256, 0, stream>>>(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out), rows,
                                               cols, row_tiles);
    check_launch(what);
}

}  // namespace cuda
}  // namespace s24
