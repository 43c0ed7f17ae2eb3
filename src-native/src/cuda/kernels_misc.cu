// Small kernels: select_dense_features (one-block radix select + ordered compaction), row gathers and
// scatters, column scatter, transpose, token permutation.
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

#include <algorithm>

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

// ---- select_dense_features ------------------------------------------------------------------------------
// Keys: counts as int32 ordered through u = bits ^ 0x80000000 (signed order as unsigned order).
// 1. min/max of u; bits above the highest differing bit are common to all keys.
// 2. MSB-first radix select, 8 bits a pass, over the remaining bits: u* = the k-th largest key, and
//    gt = #{u > u*} < k <= #{u >= u*}.
// 3. One pass in index order with a block-wide scan: feature i is chosen iff u > u*, or u == u* and it
//    is among the first k - gt such features; its position in dense_idx is
//    #{chosen before i} = #{gt before i} + min(#{eq before i}, k - gt). Deterministic, ascending.
constexpr int kSelThreads = 1024;
constexpr int kSelWarps = kSelThreads / 32;
constexpr int kSelItems = 16;  // per thread per chunk of the ordered pass (chunk counts < 2^16)

__device__ __forceinline__ uint32_t sel_key(const int32_t* counts, int64_t i) {
    return (uint32_t)__ldg(counts + i) ^ 0x80000000u;
}

// Inclusive block scan of v (1024 threads); returns the inclusive prefix, *total the block sum.
__device__ __forceinline__ uint32_t block_scan(uint32_t v, uint32_t* s_warp, uint32_t* total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const uint32_t n = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += n;
    }
    if (lane == 31) s_warp[warp] = v;
    __syncthreads();
    if (warp == 0) {
        uint32_t w = s_warp[lane];
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const uint32_t n = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += n;
        }
        s_warp[lane] = w;  // inclusive warp prefixes
    }
    __syncthreads();
    if (warp > 0) v += s_warp[warp - 1];
    *total = s_warp[kSelWarps - 1];
    __syncthreads();  // s_warp reusable
    return v;
}

__global__ void __launch_bounds__(kSelThreads) select_dense_kernel(const int32_t* __restrict__ counts, int64_t n,
                                                                   int64_t k, int32_t* __restrict__ dense_idx,
                                                                   uint8_t* __restrict__ is_dense) {
    __shared__ uint32_t s_hist[kSelWarps][256];
    __shared__ uint32_t s_total[256];
    __shared__ uint32_t s_warp[kSelWarps];
    __shared__ uint32_t s_min[kSelWarps], s_max[kSelWarps];
    __shared__ uint32_t s_digit, s_above;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    if (k <= 0 || k >= n) {  // nothing or everything
        const bool all = k >= n;
        for (int64_t i = tid; i < n; i += kSelThreads) {
            if (all) dense_idx[i] = (int32_t)i;
            if (is_dense) is_dense[i] = all ? 1 : 0;
        }
        return;
    }

    // 1. min / max
    uint32_t mn = 0xffffffffu, mx = 0u;
    for (int64_t i = tid; i < n; i += kSelThreads) {
        const uint32_t u = sel_key(counts, i);
        mn = min(mn, u);
        mx = max(mx, u);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        mn = min(mn, __shfl_xor_sync(0xffffffffu, mn, o));
        mx = max(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    }
    if (lane == 0) {
        s_min[warp] = mn;
        s_max[warp] = mx;
    }
    __syncthreads();
    mn = s_min[0];
    mx = s_max[0];
    for (int w = 1; w < kSelWarps; ++w) {
        mn = min(mn, s_min[w]);
        mx = max(mx, s_max[w]);
    }

    // 2. radix select: prefix holds the known bits of u*, above `shift + 8`
    uint32_t prefix = mx;
    uint32_t need = (uint32_t)k;  // rank of u* among the keys matching the known bits (1 = largest)
    uint32_t gt = 0;              // keys known to be above u*
    const uint32_t diff = mn ^ mx;
    if (diff != 0) {
        const int top = 31 - __clz(diff);
        for (int shift = (top / 8) * 8; shift >= 0; shift -= 8) {
            const uint64_t known_mask = ~((uint64_t(1) << (shift + 8)) - 1) & 0xffffffffull;
            const uint32_t known = (uint32_t)((uint64_t)prefix & known_mask);
            for (int b = tid; b < kSelWarps * 256; b += kSelThreads) (&s_hist[0][0])[b] = 0u;
            __syncthreads();
            for (int64_t i = tid; i < n; i += kSelThreads) {
                const uint32_t u = sel_key(counts, i);
                if (((uint64_t)u & known_mask) == known) atomicAdd(&s_hist[warp][(u >> shift) & 0xffu], 1u);
            }
            __syncthreads();
            if (tid < 256) {
                uint32_t s = 0;
                for (int w = 0; w < kSelWarps; ++w) s += s_hist[w][tid];
                s_total[tid] = s;
            }
            __syncthreads();
            if (tid < 256) {
                // suffix sums: above = keys with a larger digit; the digit d has above < need <= above + count
                uint32_t above = 0;
                for (int b = 255; b > tid; --b) above += s_total[b];
                if (above < need && need <= above + s_total[tid]) {
                    s_digit = (uint32_t)tid;
                    s_above = above;
                }
            }
            __syncthreads();
            const uint32_t d = s_digit, above = s_above;
            prefix = known | (d << shift);
            need -= above;
            gt += above;
            __syncthreads();
        }
    }
    const uint32_t ustar = prefix;
    const uint32_t need_eq = (uint32_t)k - gt;  // >= 1

    // 3. ordered pass
    uint32_t gt_run = 0, eq_run = 0;
    const int64_t chunk = (int64_t)kSelThreads * kSelItems;
    for (int64_t base = 0; base < n; base += chunk) {
        const int64_t first = base + (int64_t)tid * kSelItems;
        uint32_t lg = 0, le = 0;
        uint32_t keys[kSelItems];
#pragma unroll
        for (int it = 0; it < kSelItems; ++it) {
            const int64_t i = first + it;
            keys[it] = i < n ? sel_key(counts, i) : 0u;
            if (i < n) {
                lg += keys[it] > ustar;
                le += keys[it] == ustar;
            }
        }
        uint32_t total;
        const uint32_t incl = block_scan(lg << 16 | le, s_warp, &total);
        uint32_t gb = gt_run + ((incl >> 16) - lg), eb = eq_run + ((incl & 0xffffu) - le);
#pragma unroll
        for (int it = 0; it < kSelItems; ++it) {
            const int64_t i = first + it;
            if (i >= n) break;
            const bool is_gt = keys[it] > ustar, is_eq = keys[it] == ustar;
            const bool chosen = is_gt || (is_eq && eb < need_eq);
            if (chosen) dense_idx[gb + min(eb, need_eq)] = (int32_t)i;
            if (is_dense) is_dense[i] = chosen ? 1 : 0;
            gb += is_gt;
            eb += is_eq;
        }
        gt_run += total >> 16;
        eq_run += total & 0xffffu;
    }
}

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

// ---- transpose: out [cols, rows] = in [rows, cols]^T, 32x32 tiles ------------------------------------------
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

// ---- token permutation ---------------------------------------------------------------------------------
__global__ void __launch_bounds__(256) permutation_kernel(Permutation p, int64_t tokens, int32_t* __restrict__ perm) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < tokens; i += stride)
        perm[i] = (int32_t)permute_index(p, (uint32_t)i);
}

int flat_grid(int64_t n) { return (int)std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, 256), 16384)); }

}  // namespace

size_t select_dense_features_workspace(int64_t /*features*/) { return 0; }

void launch_select_dense_features(int64_t features, const int32_t* counts, int64_t k, int32_t* dense_idx,
                                  uint8_t* is_dense, void* /*workspace*/, cudaStream_t stream) {
    const char* what = "launch_select_dense_features";
    if (features <= 0) return;
    select_dense_kernel<<<1, kSelThreads, 0, stream>>>(counts, features, k, dense_idx, is_dense);
    check_launch(what);
}

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
    scatter_cols_kernel<<<flat_grid(rows * k), 256, 0, stream>>>(static_cast<const uint16_t*>(src), idx,
                                                                  static_cast<uint16_t*>(dst), rows, k, dst_cols);
    check_launch(what);
}

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

void launch_token_permutation(uint64_t seed, int64_t step, int64_t tokens, int32_t* perm, cudaStream_t stream) {
    const char* what = "launch_token_permutation";
    if (tokens <= 0) return;
    const Permutation p = make_permutation(seed, step, tokens);
    permutation_kernel<<<flat_grid(tokens), 256, 0, stream>>>(p, tokens, perm);
    check_launch(what);
}

}  // namespace cuda
}  // namespace s24
