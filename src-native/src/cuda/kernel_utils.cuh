// Helpers shared by the CUDA kernels (kernels/*.cu): run-time to compile-time dispatch, launch checks and
// grids, block totals, 16-bit float bit tricks and the 2:4 selection network on packed integer keys.
//
// The selection rule is shared.h's select24 (keep the 2 largest scores, ties to the lower index, NaN
// above everything). On the GPU it runs on integer keys that order exactly like select24's scores:
//   kk  = a 16-bit "badness": INF + 1 - bits(score) for a non-NaN score >= 0 (scores are relu(h) or |v|,
//         both >= 0, and their bit patterns order like their values), 0 for NaN;
//   key = kk << 16 | i << KSH   (i = position 0..3 in the group: equal kk -> lower index is better).
// The 4 keys are distinct, so "the two smallest keys" is exactly select24's choice. The network returns
// the byte offset of a [4][4] lookup table entry (first best position, second best position), which
// holds everything derived from the choice (nibble, byte-permute selectors, kept mask).
// S24_BENCH_PLAIN_RANK_KEYS (the CMake option of that name; benchmark builds only, never a release): the
// badness without its NaN handling, as before NaN ranked highest (INF - bits(score); NaN scores 0 for relu
// and ranks below every score for |x|), to time what the NaN handling costs. NaN inputs then give other
// results than select24.
#pragma once

#include "backend.h"
#include "cuda/cuda_util.h"
#include "shared.h"
#include "sparse24.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace s24 {
namespace cuda {
namespace detail {

// ---- host side --------------------------------------------------------------------------------------

// After a kernel launch: throws S24_ERROR_CUDA naming the launcher if the launch failed.
inline void check_launch(const char* what) { check_cuda(cudaGetLastError(), what); }

// Multiprocessors of the current device.
inline int device_sms(const char* what) {
    int dev = 0, sms = 0;
    check_cuda(cudaGetDevice(&dev), what);
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), what);
    return sms > 0 ? sms : 1;
}

// Resident blocks per multiprocessor of `kernel` (at least 1).
template <class Kernel>
inline int blocks_per_sm(Kernel kernel, int threads, size_t smem, const char* what) {
    int n = 0;
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem), what);
    return n > 0 ? n : 1;
}

constexpr int kMaxDevices = 64;  // devices whose occupancy is cached

// Blocks of `Kernel` (`threads` each) resident on the whole current device at once: one wave of a
// persistent kernel. The occupancy is looked up once per device and kernel.
template <auto Kernel>
int64_t wave_blocks(int threads, const char* what) {
    static std::atomic<int> cache[kMaxDevices];
    int dev = 0;
    check_cuda(cudaGetDevice(&dev), what);
    int per_sm = dev < kMaxDevices ? cache[dev].load(std::memory_order_relaxed) : 0;
    if (per_sm == 0) {
        per_sm = blocks_per_sm(Kernel, threads, 0, what);
        if (dev < kMaxDevices) cache[dev].store(per_sm, std::memory_order_relaxed);
    }
    return (int64_t)per_sm * device_sms(what);
}

// Launches a persistent kernel over `units` work units: one wave of resident blocks (or fewer, one unit
// each at least).
template <auto Kernel, class Args>
void launch_persistent(const Args& args, int64_t units, int threads, cudaStream_t stream, const char* what) {
    const int64_t grid = std::min<int64_t>(units, wave_blocks<Kernel>(threads, what));
    Kernel<<<(int)grid, threads, 0, stream>>>(args);
    check_launch(what);
}

// Blocks of a grid-stride loop over n items: ceil(n / threads), at least 1, at most max_blocks.
inline int stride_grid(int64_t n, int threads, int64_t max_blocks) {
    return (int)std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, threads), max_blocks));
}

// ---- run-time choices as template arguments -------------------------------------------------------------
// One generic lambda instead of a ladder per kernel: body receives std::true_type / std::false_type (or
// std::integral_constant<int, layout>) and instantiates the matching kernel.

template <class Body>
void with_bools(Body&& body) {
    body();
}
// body(std::bool_constant<b0>{}, std::bool_constant<b1>{}, ...) for run-time bools b0, b1, ...
template <class Body, class... Rest>
void with_bools(Body&& body, bool first, Rest... rest) {
    if (first) with_bools([&](auto... later) { body(std::true_type{}, later...); }, rest...);
    else with_bools([&](auto... later) { body(std::false_type{}, later...); }, rest...);
}

// The kernels' 16-bit dtypes: true for BF16, false for FP16.
template <class Body>
void with_bf16(s24_dtype dtype, Body&& body) {
    with_bools(body, dtype == S24_BF16);
}

template <class Body>
void with_layout(s24_layout layout, Body&& body) {
    switch (layout) {
        case S24_LAYOUT_CUSPARSELT: body(std::integral_constant<int, S24_LAYOUT_CUSPARSELT>{}); break;
        case S24_LAYOUT_ROW: body(std::integral_constant<int, S24_LAYOUT_ROW>{}); break;
        default: body(std::integral_constant<int, S24_LAYOUT_DENSE>{}); break;
    }
}

// ---- device side ------------------------------------------------------------------------------------

// Bit patterns of +infinity, and the largest relu score whose square rounds to 0 (checked exhaustively:
// bf16 s*s rounds to 0 iff bits(s) <= 0x1e00 (s <= 2^-67); fp16 iff bits(s) <= 0x09a8).
template <bool BF16>
struct Fmt {
    static constexpr uint32_t INF = BF16 ? 0x7f80u : 0x7c00u;
    static constexpr uint32_t SQ_ZERO_MAX = BF16 ? 0x1e00u : 0x09a8u;
#if defined(S24_BENCH_PLAIN_RANK_KEYS)
    static constexpr uint32_t SCORE_BASE = INF;  // bits(score) = SCORE_BASE - badness
#else
    static constexpr uint32_t SCORE_BASE = INF + 1u;
#endif
};

// Byte permute {b:a} by a run-time selector (4 nibbles, each < 8). Raw PTX: __byte_perm masks a
// run-time selector first (an extra instruction); every selector used here is already in range.
// Compile-time selectors use __byte_perm (folded into the instruction).
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}
// ~a | b in one instruction.
__device__ __forceinline__ uint32_t not_or(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, 0, 0xCF;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

// Low / high 16-bit element of a word as float (exact).
template <bool BF16>
__device__ __forceinline__ float lo_float(uint32_t w) {
    if constexpr (BF16) return __uint_as_float(w << 16);
    else return __half2float(__ushort_as_half((unsigned short)(w & 0xffffu)));
}
template <bool BF16>
__device__ __forceinline__ float hi_float(uint32_t w) {
    if constexpr (BF16) return __uint_as_float(w & 0xffff0000u);
    else return __half2float(__ushort_as_half((unsigned short)(w >> 16)));
}
// Two floats rounded (nearest even) to the dtype, packed lo | hi << 16.
template <bool BF16>
__device__ __forceinline__ uint32_t pack_rn(float lo, float hi) {
    uint32_t r;
    if constexpr (BF16) {
        const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        memcpy(&r, &v, 4);
    } else {
        const __half2 v = __floats2half2_rn(lo, hi);
        memcpy(&r, &v, 4);
    }
    return r;
}
// One float rounded to the dtype (raw 16 bits).
template <bool BF16>
__device__ __forceinline__ uint16_t round_one(float x) {
    if constexpr (BF16) return __bfloat16_as_ushort(__float2bfloat16_rn(x));
    else return __half_as_ushort(__float2half_rn(x));
}
template <bool BF16>
__device__ __forceinline__ float to_float(uint16_t bits) {
    if constexpr (BF16) return __uint_as_float((uint32_t)bits << 16);
    else return __half2float(__ushort_as_half(bits));
}

// Rounded squares of the two elements of a word of non-negative scores.
template <bool BF16>
__device__ __forceinline__ uint32_t square_pair(uint32_t w) {
    const float a = lo_float<BF16>(w), b = hi_float<BF16>(w);
    return pack_rn<BF16>(a * a, b * b);
}

// Badness pairs (16 bits each, see the top of this file) of two elements packed in a word.
// 0xffff in each 16-bit half that holds a NaN (either sign).
template <bool BF16>
__device__ __forceinline__ uint32_t nan_halves(uint32_t w) {
    return __vcmpgtu2(w & 0x7fff7fffu, Fmt<BF16>::INF * 0x10001u);
}
// Forward score relu(x): NaN -> 0 (it outranks everything and squares to NaN); bits in [1, INF]
// (positive) -> INF + 1 - bits; zeros and negatives score 0 -> INF + 1. Computed per 16-bit half as
// min(~bits + INF + 1, INF) + 1 (wrapping add), NaN halves cleared. The score's bits are INF + 1 - kk
// (a NaN pattern for NaN).
template <bool BF16>
__device__ __forceinline__ uint32_t badness_relu(uint32_t w) {
    constexpr uint32_t INF = Fmt<BF16>::INF;
#if defined(S24_BENCH_PLAIN_RANK_KEYS)
    return __viaddmin_u16x2(~w, (INF + 1u) * 0x10001u, INF * 0x10001u);  // INF - bits, NaN -> INF (score 0)
#else
    return (__viaddmin_u16x2(~w, (INF + 1u) * 0x10001u, INF * 0x10001u) + 0x10001u) & ~nan_halves<BF16>(w);
#endif
}
// Score |x|: NaN -> 0, non-NaN -> INF + 1 - |bits|. (min(~|bits| + INF + 1, INF + 1) + 1), NaN halves cleared.
template <bool BF16>
__device__ __forceinline__ uint32_t badness_abs(uint32_t w) {
    constexpr uint32_t INF = Fmt<BF16>::INF;
#if defined(S24_BENCH_PLAIN_RANK_KEYS)
    return __viaddmin_u16x2(not_or(w, 0x80008000u), (INF + 1u) * 0x10001u, (INF + 1u) * 0x10001u);  // NaN -> INF + 1
#else
    return (__viaddmin_u16x2(not_or(w, 0x80008000u), (INF + 1u) * 0x10001u, (INF + 1u) * 0x10001u) + 0x10001u) &
           ~nan_halves<BF16>(w);
#endif
}

// Keys of the low / high element of a badness pair, position i in the group.
template <int KSH>
__device__ __forceinline__ uint32_t key_lo(uint32_t kk, uint32_t i) { return (kk << 16) | (i << KSH); }
template <int KSH>
__device__ __forceinline__ uint32_t key_hi(uint32_t kk, uint32_t i) { return (kk & 0xffff0000u) | (i << KSH); }

// Byte offset (entries of 1 << KSH bytes, [best][second best]) of the LUT entry for 4 distinct keys.
template <int KSH>
__device__ __forceinline__ uint32_t select_offset(uint32_t k0, uint32_t k1, uint32_t k2, uint32_t k3) {
    const uint32_t lo1 = min(k0, k1), hi1 = max(k0, k1), lo2 = min(k2, k3), hi2 = max(k2, k3);
    const uint32_t m1 = min(lo1, lo2);                        // best
    const uint32_t m2 = min(max(lo1, lo2), min(hi1, hi2));    // second best
    return ((m1 << 2) | m2) & (0xfu << KSH);                  // best * 4 + second, scaled
}

// 1 in each byte whose element (of 4, from two words of 2) is above `thr`. Needs elements <= 0x7fff
// + thr (true for scores <= INF): a per-half add that sets bit 15 without carrying into bit 16.
__device__ __forceinline__ uint32_t above_bytes(uint32_t w01, uint32_t w23, uint32_t thr) {
    const uint32_t add = (0x7fffu - thr) * 0x10001u;
    return (__byte_perm(w01 + add, w23 + add, 0x7531) >> 7) & 0x01010101u;
}
// Number of non-zero elements (value != 0: +-0 are zero, NaN is not) in a word of two.
__device__ __forceinline__ int nonzero2(uint32_t w) {
    return __popc(((w & 0x7fff7fffu) + 0x7fff7fffu) & 0x80008000u);
}

// ---- lookup tables ------------------------------------------------------------------------------------
// Selection LUT, entry [a][b] for best position a and second best b (a != b); lo = min, hi = max:
//   x: byte-permute selector taking elements lo, hi of {w01, w23} into one word (lo in the low half)
//   y: kept mask (bit 8*lo and 8*hi) | nibble << 4   (nibble = lo | hi << 2)
//   z, w: selectors placing that pair back at positions lo, hi of a zeroed group (w01', w23')
//         when permuting {pair, 0}: dense output of a pruned group.
// Packed outputs use the 8-byte table {x, y} (KSH = 3: 16 entries fill the 32 banks once, so a warp's
// lookups never conflict); dense outputs the 16-byte one (KSH = 4).
__device__ __forceinline__ uint4 make_sel_entry(int idx) {
    int a = idx >> 2, b = idx & 3;
    if (a == b) b = (a + 1) & 3;  // never looked up
    const int lo = a < b ? a : b, hi = a < b ? b : a;
    uint4 e;
    e.x = (uint32_t)((2 * lo) | (2 * lo + 1) << 4 | (2 * hi) << 8 | (2 * hi + 1) << 12);
    e.y = (1u << (8 * lo)) | (1u << (8 * hi)) | ((uint32_t)(lo | hi << 2) << 4);
    uint32_t code[4];
#pragma unroll
    for (int p = 0; p < 4; ++p) code[p] = p == lo ? 0x10u : p == hi ? 0x32u : 0x54u;
    e.z = code[0] | code[1] << 8;
    e.w = code[2] | code[3] << 8;
    return e;
}
// Unpack LUT, entry per nibble n (first a = n & 3, second b = n >> 2; the second wins if a == b, like
// the CPU reference): x, y: selectors expanding a packed pair word p into the group's {w01, w23} when
// permuting {p, 0}; z: selector gathering elements a, b of {w01, w23} into one word (a low).
__device__ __forceinline__ uint4 make_unpack_entry(int n) {
    const int a = n & 3, b = n >> 2;
    uint32_t code[4];
#pragma unroll
    for (int p = 0; p < 4; ++p) code[p] = p == b ? 0x32u : p == a ? 0x10u : 0x54u;
    uint4 e;
    e.x = code[0] | code[1] << 8;
    e.y = code[2] | code[3] << 8;
    e.z = (uint32_t)((2 * a) | (2 * a + 1) << 4 | (2 * b) << 8 | (2 * b + 1) << 12);
    e.w = 0;
    return e;
}

// Entry of a selection table at byte offset `off` (select_offset<KSH>).
template <int KSH>
__device__ __forceinline__ uint4 sel_lookup(const void* table, uint32_t off) {
    if constexpr (KSH == 3) {
        const uint2 v = *reinterpret_cast<const uint2*>(static_cast<const char*>(table) + off);
        return make_uint4(v.x, v.y, 0u, 0u);
    } else {
        return *reinterpret_cast<const uint4*>(static_cast<const char*>(table) + off);
    }
}

// ---- block reductions -------------------------------------------------------------------------------------

// Adds the block's sums of a and b to totals[0] and totals[1] (one 64-bit atomic each, none for 0).
// Every thread of the block (WARPS warps) calls it; s_tot is [WARPS][2] shared memory.
template <int WARPS>
__device__ __forceinline__ void add_block_totals(unsigned long long a, unsigned long long b,
                                                 unsigned long long (*s_tot)[2], unsigned long long* totals) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, o);
        b += __shfl_xor_sync(0xffffffffu, b, o);
    }
    if (lane == 0) {
        s_tot[warp][0] = a;
        s_tot[warp][1] = b;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long as = 0, bs = 0;
        for (int w = 0; w < WARPS; ++w) {
            as += s_tot[w][0];
            bs += s_tot[w][1];
        }
        if (as) atomicAdd(totals, as);
        if (bs) atomicAdd(totals + 1, bs);
    }
}

// ---- memory access ---------------------------------------------------------------------------------------
// Vector stores as single instructions (the compiler may otherwise split a store of a vector whose
// parts come from inline assembly). p must be aligned to the vector size.
__device__ __forceinline__ void st16(void* p, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(a), "r"(b), "r"(c), "r"(d));
}
__device__ __forceinline__ void st8(void* p, uint32_t a, uint32_t b) {
    asm volatile("st.global.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(a), "r"(b));
}
__device__ __forceinline__ uint4 ld_stream16(const void* p) { return __ldcs(reinterpret_cast<const uint4*>(p)); }
__device__ __forceinline__ uint2 ld_stream8(const void* p) { return __ldcs(reinterpret_cast<const uint2*>(p)); }
__device__ __forceinline__ uint32_t ld_stream4(const void* p) {
    return __ldcs(reinterpret_cast<const unsigned int*>(p));
}

}  // namespace detail
}  // namespace cuda
}  // namespace s24
