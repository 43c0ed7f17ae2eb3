// decompress24: a packed 2:4 matrix to its dense [rows, cols] form (rows_unpack.cuh); DENSE: a copy.
#include "cuda/kernels.h"
#include "cuda/kernels/rows_unpack.cuh"

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

template <bool BF16, int LAYOUT, bool VEC16>
__global__ void __launch_bounds__(kRowThreads) decompress24_kernel(UnpackArgs a) {
    unpack_rows<BF16, LAYOUT, VEC16, false>(a);
}

template <bool BF16>
__global__ void __launch_bounds__(kRowThreads) decompress24_generic_kernel(UnpackArgs a, s24_layout layout,
                                                                            int64_t meta_bytes) {
    unpack_rows_generic<BF16, false>(a.packed, a.dy, a.out, a.rows, a.cols, layout, meta_bytes);
}

}  // namespace

void launch_decompress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* packed, s24_layout layout,
                         void* dense, cudaStream_t stream) {
    const char* what = "launch_decompress24";
    if (rows <= 0 || cols <= 0) return;
    if (layout == S24_LAYOUT_DENSE) {
        if (dense != packed)
            check_cuda(cudaMemcpyAsync(dense, packed, (size_t)(rows * cols) * 2, cudaMemcpyDeviceToDevice, stream), what);
        return;
    }
    const UnpackArgs a = unpack_args(rows, cols, packed, nullptr, dense);
    const int64_t meta_bytes = (int64_t)packed_meta_bytes(layout, rows, cols);
    launch_rows(dtype, layout, aligned(packed, 16) && aligned(dense, 16), a, rows * (cols / 4), stream, what,
        [&](auto bf16, int grid) {
            decompress24_generic_kernel<bf16><<<grid, kRowThreads, 0, stream>>>(a, layout, meta_bytes);
        },
        [](auto bf16, auto lay, auto vec) {  // DENSE is a copy (above)
            if constexpr (lay != S24_LAYOUT_DENSE) return kernel_c<decompress24_kernel<bf16, lay, vec>>{};
        });
}

}  // namespace cuda
}  // namespace s24
