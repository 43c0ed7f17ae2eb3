// select_dense_features: the k features with the most non-zeros, ascending (one block of 1024 threads).
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

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

// Phase 1: min and max of the keys over the block (every thread gets both).
__device__ __forceinline__ void key_range(const int32_t* counts, int64_t n, uint32_t* s_min, uint32_t* s_max,
                                          uint32_t& mn, uint32_t& mx) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    mn = 0xffffffffu;
    mx = 0u;
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
}

// Phase 2: radix select of the k-th largest key u* (returned); gt = #{u > u*}.
__device__ __forceinline__ uint32_t radix_select(const int32_t* counts, int64_t n, int64_t k, uint32_t mn, uint32_t mx,
                                                 uint32_t (*s_hist)[256], uint32_t* s_total, uint32_t* s_digit,
                                                 uint32_t* s_above, uint32_t& gt) {
    const int tid = threadIdx.x, warp = tid >> 5;
    // prefix holds the known bits of u*, above `shift + 8`
    uint32_t prefix = mx;
    uint32_t need = (uint32_t)k;  // rank of u* among the keys matching the known bits (1 = largest)
    gt = 0;                       // keys known to be above u*
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
                    *s_digit = (uint32_t)tid;
                    *s_above = above;
                }
            }
            __syncthreads();
            const uint32_t d = *s_digit, above = *s_above;
            prefix = known | (d << shift);
            need -= above;
            gt += above;
            __syncthreads();
        }
    }
    return prefix;
}

// Phase 3: the ordered pass: dense_idx (ascending) and is_dense from u* and the keys above it.
__device__ __forceinline__ void write_selection(const int32_t* counts, int64_t n, uint32_t ustar, uint32_t need_eq,
                                                int32_t* dense_idx, uint8_t* is_dense, uint32_t* s_warp) {
    const int tid = threadIdx.x;
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

__global__ void __launch_bounds__(kSelThreads) select_dense_features_kernel(const int32_t* __restrict__ counts, int64_t n,
                                                                            int64_t k, int32_t* __restrict__ dense_idx,
                                                                            uint8_t* __restrict__ is_dense) {
    __shared__ uint32_t s_hist[kSelWarps][256];
    __shared__ uint32_t s_total[256];
    __shared__ uint32_t s_warp[kSelWarps];
    __shared__ uint32_t s_min[kSelWarps], s_max[kSelWarps];
    __shared__ uint32_t s_digit, s_above;

    if (k <= 0 || k >= n) {  // nothing or everything
        const bool all = k >= n;
        for (int64_t i = threadIdx.x; i < n; i += kSelThreads) {
            if (all) dense_idx[i] = (int32_t)i;
            if (is_dense) is_dense[i] = all ? 1 : 0;
        }
        return;
    }
    uint32_t mn, mx, gt;
    key_range(counts, n, s_min, s_max, mn, mx);
    const uint32_t ustar = radix_select(counts, n, k, mn, mx, s_hist, s_total, &s_digit, &s_above, gt);
    write_selection(counts, n, ustar, (uint32_t)k - gt, dense_idx, is_dense, s_warp);  // k - gt >= 1
}

}  // namespace

void launch_select_dense_features(int64_t features, const int32_t* counts, int64_t k, int32_t* dense_idx,
                                  uint8_t* is_dense, cudaStream_t stream) {
    const char* what = "launch_select_dense_features";
    if (features <= 0) return;
    select_dense_features_kernel<<<1, kSelThreads, 0, stream>>>(counts, features, k, dense_idx, is_dense);
    check_launch(what);
}

}  // namespace cuda
}  // namespace s24
