// masked_grad24: dh = dy * 2 sqrt(y) on the kept positions of the packed y, packed like y (rows_unpack.cuh);
// DENSE: element-wise.
#include "cuda/kernels.h"
#include "cuda/kernels/rows_unpack.cuh"

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

template <bool BF16, int LAYOUT, bool VEC16>
__global__ void __launch_bounds__(kRowThreads) masked_grad24_kernel(UnpackArgs a) {
    unpack_rows<BF16, LAYOUT, VEC16, true>(a);
}

template <bool BF16>
__global__ void __launch_bounds__(kRowThreads) masked_grad24_generic_kernel(UnpackArgs a, s24_layout layout,
                                                                            int64_t meta_bytes) {
    unpack_rows_generic<BF16, true>(a.packed, a.dy, a.out, a.rows, a.cols, layout, meta_bytes);
}

// DENSE masked_grad: dh = dy * 2 * sqrt(y) for every element; 4 elements per step when 8-byte aligned.
template <bool BF16, bool VEC>
__global__ void __launch_bounds__(kRowThreads) masked_grad24_dense_kernel(const uint16_t* dy, const uint16_t* y,
                                                                          uint16_t* dh, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if (VEC) {
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n / 4; i += stride) {
            const uint2 d = ld_stream8(dy + 4 * i), yy = ld_stream8(y + 4 * i);
            uint2 o;
            o.x = pack_rn<BF16>(lo_float<BF16>(d.x) * 2.f * sqrtf(lo_float<BF16>(yy.x)),
                                hi_float<BF16>(d.x) * 2.f * sqrtf(hi_float<BF16>(yy.x)));
            o.y = pack_rn<BF16>(lo_float<BF16>(d.y) * 2.f * sqrtf(lo_float<BF16>(yy.y)),
                                hi_float<BF16>(d.y) * 2.f * sqrtf(hi_float<BF16>(yy.y)));
            st8(dh + 4 * i, o.x, o.y);
        }
    } else {
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
            dh[i] = round_one<BF16>(to_float<BF16>(dy[i]) * 2.f * sqrtf(to_float<BF16>(y[i])));
    }
}

}  // namespace

void launch_masked_grad24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dy, const void* y_packed,
                          s24_layout layout, void* dh_packed, cudaStream_t stream) {
    const char* what = "launch_masked_grad24";
    if (rows <= 0 || cols <= 0) return;
    if (layout == S24_LAYOUT_DENSE) {
        const int64_t n = rows * cols;
        const bool vec = aligned(dy, 8) && aligned(y_packed, 8) && aligned(dh_packed, 8) && n % 4 == 0;
        const int grid = stride_grid(vec ? n / 4 : n, kRowThreads, 8192);
        const auto* d = static_cast<const uint16_t*>(dy);
        const auto* y = static_cast<const uint16_t*>(y_packed);
        auto* o = static_cast<uint16_t*>(dh_packed);
        with_bf16(dtype, [&](auto bf16) {
            with_bools([&](auto v) { masked_grad24_dense_kernel<bf16, v><<<grid, kRowThreads, 0, stream>>>(d, y, o, n); },
                       vec);
        });
        check_launch(what);
        return;
    }
    const UnpackArgs a = unpack_args(rows, cols, y_packed, dy, dh_packed);
    const int64_t meta_bytes = (int64_t)packed_meta_bytes(layout, rows, cols);
    launch_rows(dtype, layout, aligned(y_packed, 16) && aligned(dh_packed, 16) && aligned(dy, 16), a, rows * (cols / 4),
        stream, what,
        [&](auto bf16, int grid) {
            masked_grad24_generic_kernel<bf16><<<grid, kRowThreads, 0, stream>>>(a, layout, meta_bytes);
        },
        [](auto bf16, auto lay, auto vec) {  // DENSE is element-wise (above)
            if constexpr (lay != S24_LAYOUT_DENSE) return kernel_c<masked_grad24_kernel<bf16, lay, vec>>{};
        });
}

}  // namespace cuda
}  // namespace s24
