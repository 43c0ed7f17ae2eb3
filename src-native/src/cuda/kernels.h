// CUDA kernels of the CUDA backend: launch_<op> lives in kernels/<op>.cu. Each launch_* enqueues on `stream`, never
// synchronizes, and throws s24::Error(S24_ERROR_CUDA, "<kernel>: <cudaGetErrorName>: ...") if the launch
// fails. Arguments are already validated by the front end (shapes, layouts, dtypes BF16/FP16 only).
// Semantics of each operation: sparse24.h (same names) and backend.h.
#pragma once

#include "sparse24.h"

#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

namespace s24 {
namespace cuda {

// Yhat = S24_rows(relu(h)^2), packed; col_counts (may be null) and totals (may be null) overwritten
// (the launcher zeroes them on the stream first).
void launch_sparsify24_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* h, bool keep_all,
                            s24_layout layout, void* packed, int32_t* col_counts, int64_t* totals,
                            cudaStream_t stream);

void launch_compress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dense, s24_layout layout,
                       void* packed, cudaStream_t stream);
void launch_decompress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* packed, s24_layout layout,
                         void* dense, cudaStream_t stream);
void launch_masked_grad24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dy, const void* y_packed,
                          s24_layout layout, void* dh_packed, cudaStream_t stream);

void launch_select_dense_features(int64_t features, const int32_t* counts, int64_t k, int32_t* dense_idx,
                                  uint8_t* is_dense, cudaStream_t stream);

void launch_sparsify24_cols_split(s24_dtype dtype, int64_t tokens, int64_t features, const void* src_packed,
                                  s24_layout in_layout, const int32_t* perm, const uint8_t* is_dense,
                                  const int32_t* dense_idx, int64_t k, s24_layout out_layout, void* t_packed,
                                  void* dense_cols, int64_t* totals, cudaStream_t stream);

// masked_grad24 and sparsify24_cols_split of its result in one pass (grad_split24.cu), where
// grad_split24_fits: y in the CUSPARSELT layout, dy / y / dh 16-byte aligned. variant < 0: the tuned
// default; 0 .. grad_split24_variant_count() - 1 pick a tuning variant (benchmarks).
bool grad_split24_fits(s24_layout in_layout, int64_t tokens, int64_t features, const void* dy, const void* y_packed,
                       const void* dh_packed);
int grad_split24_variant_count();
const char* grad_split24_variant_name(int variant);
void launch_grad_split24(s24_dtype dtype, int64_t tokens, int64_t features, const void* dy, const void* y_packed,
                         void* dh_packed, const int32_t* perm, const uint8_t* is_dense, const int32_t* dense_idx,
                         int64_t k, s24_layout out_layout, void* t_packed, void* dense_cols, int64_t* totals,
                         cudaStream_t stream, int variant = -1);

void launch_gather_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* in, const int32_t* perm,
                        void* out, cudaStream_t stream);
void launch_scatter_cols(s24_dtype dtype, int64_t rows, int64_t k, const void* src, const int32_t* idx,
                         int64_t dst_cols, void* dst, cudaStream_t stream);
void launch_scatter_rows(s24_dtype dtype, int64_t k, int64_t cols, const void* src, const int32_t* idx, void* dst,
                         cudaStream_t stream);
// out [cols, rows] = in [rows, cols]^T (used where a GEMM cannot write the layout asked for).
void launch_transpose(s24_dtype dtype, int64_t rows, int64_t cols, const void* in, void* out, cudaStream_t stream);
void launch_token_permutation(uint64_t seed, int64_t step, int64_t tokens, int32_t* perm, cudaStream_t stream);

}  // namespace cuda
}  // namespace s24
