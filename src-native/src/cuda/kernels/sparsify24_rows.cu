// sparsify24_rows: the forward's fused relu^2 + 2:4 + per-column non-zero counts (rows_select.cuh).
#include "cuda/kernels.h"
#include "cuda/kernels/rows_select.cuh"

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

template <bool BF16, int LAYOUT, bool VEC16, bool KEEP_ALL, bool COUNT>
__global__ void __launch_bounds__(kRowThreads) sparsify24_rows_kernel(RowArgs a) {
    select_rows<BF16, OP_RELU2, LAYOUT, VEC16, KEEP_ALL, COUNT>(a);
}

template <bool BF16>
__global__ void __launch_bounds__(kRowThreads) sparsify24_rows_generic_kernel(RowArgs a, s24_layout layout,
                                                                               bool keep_all, int64_t n) {
    select_rows_generic<BF16, OP_RELU2>(a.in, a.out, a.rows, a.cols, layout, keep_all, a.col_counts, a.totals, n);
}

}  // namespace

void launch_sparsify24_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* h, bool keep_all,
                            s24_layout layout, void* packed, int32_t* col_counts, int64_t* totals,
                            cudaStream_t stream) {
    const char* what = "launch_sparsify24_rows";
    if (col_counts) check_cuda(cudaMemsetAsync(col_counts, 0, (size_t)cols * sizeof(int32_t), stream), what);
    if (totals) check_cuda(cudaMemsetAsync(totals, 0, 2 * sizeof(int64_t), stream), what);
    if (rows <= 0 || cols <= 0) return;
    if (keep_all) layout = S24_LAYOUT_DENSE;
    const RowArgs a = row_args(rows, cols, h, packed, col_counts, totals);
    const int64_t n = select_rows_generic_items(layout, rows, cols);
    launch_rows(dtype, layout, aligned(h, 16) && aligned(packed, 16), a, n, stream, what,
        [&](auto bf16, int grid) {
            sparsify24_rows_generic_kernel<bf16><<<grid, kRowThreads, 0, stream>>>(a, layout, keep_all, n);
        },
        [](auto bf16, auto lay, auto vec, auto keep, auto cnt) {  // keep_all writes DENSE
            if constexpr (!keep || lay == S24_LAYOUT_DENSE)
                return kernel_c<sparsify24_rows_kernel<bf16, lay, vec, keep, cnt>>{};
        },
        keep_all, col_counts || totals);
}

}  // namespace cuda
}  // namespace s24
