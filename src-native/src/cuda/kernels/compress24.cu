// compress24: 2:4 by |v| (ties to the lower index, NaN below everything), values kept (rows_select.cuh).
#include "cuda/kernels.h"
#include "cuda/kernels/rows_select.cuh"

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

template <bool BF16, int LAYOUT, bool VEC16>
__global__ void __launch_bounds__(kRowThreads) compress24_kernel(RowArgs a) {
    select_rows<BF16, OP_ABS, LAYOUT, VEC16, false, false>(a);
}

template <bool BF16>
__global__ void __launch_bounds__(kRowThreads) compress24_generic_kernel(RowArgs a, s24_layout layout, int64_t n) {
    select_rows_generic<BF16, OP_ABS>(a.in, a.out, a.rows, a.cols, layout, false, nullptr, nullptr, n);
}

}  // namespace

void launch_compress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dense, s24_layout layout,
                       void* packed, cudaStream_t stream) {
    const char* what = "launch_compress24";
    if (rows <= 0 || cols <= 0) return;
    const RowArgs a = row_args(rows, cols, dense, packed, nullptr, nullptr);
    const int64_t n = select_rows_generic_items(layout, rows, cols);
    launch_rows(dtype, layout, aligned(dense, 16) && aligned(packed, 16), a, n, stream, what,
        [&](auto bf16, int grid) { compress24_generic_kernel<bf16><<<grid, kRowThreads, 0, stream>>>(a, layout, n); },
        [](auto bf16, auto lay, auto vec) { return kernel_c<compress24_kernel<bf16, lay, vec>>{}; });
}

}  // namespace cuda
}  // namespace s24
