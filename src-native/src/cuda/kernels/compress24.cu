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
    const bool fast = aligned(dense, 16) && aligned(packed, 16);
    with_bf16(dtype, [&](auto bf16) {
        if (!fast) {
            const int64_t n = select_rows_generic_items(layout, rows, cols);
            compress24_generic_kernel<bf16><<<stride_grid(n, kRowThreads, 8192), kRowThreads, 0, stream>>>(a, layout, n);
            check_launch(what);
            return;
        }
        with_layout(layout, [&](auto lay) {
            with_bools([&](auto vec) {
                if constexpr (lay == S24_LAYOUT_CUSPARSELT && !vec) {  // CUSPARSELT has cols % 64 == 0
                    fail(S24_ERROR_INTERNAL, std::string(what) + ": no kernel for this layout and shape");
                } else {
                    launch_persistent<compress24_kernel<bf16, lay, vec>>(a, a.units, kRowThreads, stream, what);
                }
            }, cols % 8 == 0);
        });
    });
}

}  // namespace cuda
}  // namespace s24
