// sparsify24_cols_split: the backward's feature-wise split (sparse24.h).
//
// Output t [features, tokens] (2:4 along tokens, column i = source token perm[i]); dense features'
// rows zero; dense_cols [tokens, k] = the source's dense features, rows in permuted order.
//
// Tiling: a block (8 warps, 256 threads) owns 128 output tokens (lane l: the 4 tokens of output group
// tile*32 + l, i.e. 4 source rows perm[i]) and walks a range of feature bands of 128 (warp w: features
// band*128 + 16 w .. +15). The transpose happens in registers: for each band a lane loads, from its 4
// source rows, the 16 features' packed values (16 bytes) and the metadata word (8 bytes of a cuSPARSELt
// block row), unpacks them and, for each of the 16 features, selects 2 of its 4 tokens. A warp then
// stores one 128-byte row segment per feature (32 lanes x 2 values) and its 16x128 piece of metadata
// (one 64-byte slab row of four 64x32 cuSPARSELt blocks) through a small shared-memory stage.
// The next band's loads are issued before the current band is computed (register double buffer), so
// every warp keeps loads in flight. Blocks with the same band range run together and walk the bands in
// step: the metadata sectors a lane reads only in part (rows t and t+8 share bytes) are used by the
// other token tiles of the same band while still in L2.
// dense_cols: dense_idx is sorted, so the block finds its first dense feature once (block-wide search)
// and then advances by the number of dense features of each band; the band's first 32 dense columns
// are staged in shared memory and written as row segments, any further ones go straight out.
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

#include <climits>

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kLaneFeatures = 16;
constexpr int kBand = kWarps * kLaneFeatures;  // 128 features per band
constexpr int kTileTokens = 128;
constexpr int kStageCols = 32;                 // dense columns staged per band
constexpr int kStagePitch = kTileTokens + 4;   // uint16 elements per staged column
constexpr int kMetaChunk = 72;                 // 64 bytes + 8 padding (bank spread, 8-byte aligned)
constexpr int kMinBlocks = 2;                  // per SM: 128 registers (3 blocks spill, at half the speed)

enum : int {
    F_SRC_VEC = 1,     // features % 16 == 0 and a 16-byte aligned source: the VEC kernel
    F_SRC_META = 2,    // ROW source: 2-byte metadata loads allowed
    F_OUT_W4 = 4,      // packed output: 4-byte value stores (CUSPARSELT: and 8-byte metadata stores)
    F_OUT_DENSE8 = 8,  // DENSE output: 8-byte stores of 4 tokens allowed
};

struct SplitArgs {
    const uint8_t* src;
    const int32_t* perm;
    const uint8_t* is_dense;
    const int32_t* dense_idx;
    uint8_t* out;
    uint16_t* dense_cols;
    unsigned long long* totals;
    int64_t T, F, k;
    int64_t out_cols;  // columns of t: tokens rounded up to 4 for ROW, else tokens
    int64_t tok_tiles, n_bands, band_splits;
    int flags;
};

// One band of one lane's source values: packed words P[token][group] (DENSE: words of 2 features), the
// is_dense byte of feature f0 + lane, and a dense_idx candidate (thread t: entry j0 + t). The metadata
// (mostly L2 hits) is loaded separately, at the end of the previous band, to keep registers down.
template <int IN>
struct Band {
    uint32_t P[4][IN == S24_LAYOUT_DENSE ? 8 : 4];
    uint32_t zbyte;
    int32_t dcand;
};

// ---- phases of the kernel that work on whole bands ---------------------------------------------------------

// Dense features below feature fb: a block-wide lower bound in the sorted dense_idx [k] (256-way search).
// Every thread of the block calls it.
__device__ __forceinline__ int64_t dense_before(const int32_t* dense_idx, int64_t k, int64_t fb) {
    const int tid = threadIdx.x;
    int64_t lo = 0, hi = k;
    while (hi > lo) {
        const int64_t step = (hi - lo + kThreads - 1) / kThreads;
        const int64_t pos = lo + step * (tid + 1) - 1;
        const int pred = (pos < hi) && (int64_t)__ldg(dense_idx + pos) < fb;
        const int c = __syncthreads_count(pred);
        const int64_t nlo = lo + step * c;
        hi = min(hi, lo + step * (c + 1) - 1);
        lo = nlo;
    }
    return lo;
}

// The dense features of the band starting at feature fb (dcand: thread t's candidate dense_idx entry):
// dmask (bit fl: feature 16 warp + fl of the band is dense), dbase (dense features of the lower warps);
// returns the band's count. Every thread of the block calls it.
__device__ __forceinline__ int band_dense_mask(int64_t dcand, int64_t fb, uint32_t* s_dmask, uint32_t& dmask,
                                               int& dbase) {
    const int tid = threadIdx.x, warp = tid >> 5;
    if (tid < kWarps) s_dmask[tid] = 0u;
    __syncthreads();
    const int64_t v = dcand;
    const bool member = v < fb + kBand;  // and >= fb: dense_idx is sorted, j0 counts those below
    if (member) atomicOr(&s_dmask[(v - fb) / kLaneFeatures], 1u << ((v - fb) % kLaneFeatures));
    const int n_dense = __syncthreads_count(member);
    dmask = s_dmask[warp];
    for (int w = 0; w < warp; ++w) dbase += __popc(s_dmask[w]);
    return n_dense;
}

// Unpack: group q (features f0 + 4q ..) of the lane's 4 tokens from the band's words P and nibbles * 8
// mm8: d[j][h] holds features 4q + 2h (low half) and 4q + 2h + 1 of token j.
template <int IN, int NP>
__device__ __forceinline__ void unpack_group(const uint32_t (&P)[4][NP], const uint32_t (&mm8)[4], const uint8_t* s_tab,
                                             int q, uint32_t (&d)[4][2]) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if constexpr (IN != S24_LAYOUT_DENSE) {
            const int pos = IN == S24_LAYOUT_CUSPARSELT ? (q == 0 ? 0 : q == 1 ? 16 : q == 2 ? 8 : 24) : 4 * q;
            const uint32_t n8 = (mm8[j] >> pos) & 0x78u;  // nibble * 8
            const uint2 e = *reinterpret_cast<const uint2*>(s_tab + n8);
            d[j][0] = prmt(P[j][q], 0u, e.x);
            d[j][1] = prmt(P[j][q], 0u, e.y);
        } else {
            d[j][0] = P[j][2 * q];
            d[j][1] = P[j][2 * q + 1];
        }
    }
}

// Dense features of group q (bits qd of the band's dmask; qz: is_dense): their 4 tokens go to dense_cols
// (the band's first 32 through the stage), then they are zeroed in d (a zero row and nibble 0x4 is what
// the selection gives for zeros) and leave the count `before`.
__device__ __forceinline__ void take_dense_features(uint32_t (&d)[4][2], int q, uint32_t qz, uint32_t qd, uint32_t dmask,
                                                    int dbase, bool lane_active, int64_t tg, int64_t T, int64_t k,
                                                    int64_t j0, uint16_t* dense_cols, uint16_t (*s_stage)[kStagePitch],
                                                    uint32_t& before) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int p = 0; p < 4; ++p) {
        const int fl = 4 * q + p, h = p >> 1;
        const uint32_t gsel = (p & 1) ? 0x7632u : 0x5410u;
        const uint32_t w01 = __byte_perm(d[0][h], d[1][h], gsel), w23 = __byte_perm(d[2][h], d[3][h], gsel);
        if ((qd >> p) & 1u) {
            const int rank = dbase + __popc(dmask & ((1u << fl) - 1u));
            if (rank < kStageCols) {
                *reinterpret_cast<uint2*>(&s_stage[rank][4 * lane]) = make_uint2(w01, w23);  // shared memory
            } else if (lane_active) {
                const uint32_t vv[2] = {w01, w23};
#pragma unroll
                for (int jt = 0; jt < 4; ++jt) {
                    const int64_t i = 4 * tg + jt;
                    if (i < T) dense_cols[i * k + j0 + rank] = (uint16_t)(vv[jt >> 1] >> (16 * (jt & 1)));
                }
            }
        }
        if ((qz >> p) & 1u) {
            before -= (uint32_t)(nonzero2(w01) + nonzero2(w23));
            const uint32_t keep = (p & 1) ? 0x0000ffffu : 0xffff0000u;
#pragma unroll
            for (int j = 0; j < 4; ++j) d[j][h] &= keep;
        }
    }
}

// Store metadata (CUSPARSELT output): the warp's 16 features f0.. x 128 tokens, i.e. one 64-byte slab row
// of four 64x32 blocks, from the lanes' bytes BW (r8 = fl % 8 of group g0 + lane) through the stage st.
__device__ __forceinline__ void store_cusparselt_meta_band(const uint32_t (&BW)[2], uint8_t* st, uint8_t* out_meta,
                                                           int64_t f0, int64_t g0, int64_t n_groups, int64_t out_cols,
                                                           bool w8) {
    const int lane = threadIdx.x & 31;
    const int c = lane / 8, g8 = lane % 8;
    __syncwarp();  // the previous band's reads of the stage are done
#pragma unroll
    for (int r8 = 0; r8 < 8; ++r8) st[c * kMetaChunk + r8 * 8 + cusparselt_meta_pos(g8)] = (uint8_t)(BW[r8 / 4] >> (8 * (r8 % 4)));
    __syncwarp();
    const uint2 v = *reinterpret_cast<const uint2*>(st + c * kMetaChunk + g8 * 8);
    const int64_t group = g0 + 8 * c;  // first group of this lane's 64x32 block
    if (group < n_groups) {
        // rows f0 + g8: cusparselt_meta_in_block(f0) + g8 * 8, f0 % 16 == 0
        uint8_t* p = out_meta + cusparselt_meta_block(f0 / 64, group / 8, out_cols) + ((f0 % 64) / 16) * 64 + g8 * 8;
        if (w8) {
            st8(p, v.x, v.y);
        } else {
#pragma unroll
            for (int by = 0; by < 8; ++by) p[by] = (uint8_t)((by < 4 ? v.x : v.y) >> (8 * (by % 4)));
        }
    }
}

// Store the band's staged dense columns (the first min(n_dense, 32)): rows 4 g0 .. 4 g0 + 127 of
// dense_cols [T, k], columns j0.., as row segments. Every thread of the block calls it.
__device__ __forceinline__ void store_staged_dense_cols(const uint16_t (*s_stage)[kStagePitch], int n_dense, int64_t g0,
                                                        int64_t T, int64_t k, int64_t j0, uint16_t* dense_cols) {
    const int tid = threadIdx.x;
    const int ns = min(n_dense, kStageCols);
    // e / ns as a multiply-shift: exact for e < 2^12 (error < 2^-8, fraction <= 31/32)
    const uint32_t recip = ns > 0 ? ((1u << 20) + (uint32_t)ns - 1u) / (uint32_t)ns : 0u;
    for (int e = tid; e < kTileTokens * ns; e += kThreads) {
        const int i = (int)(((uint32_t)e * recip) >> 20), r = e - i * ns;
        const int64_t row = 4 * g0 + i;
        if (row < T) dense_cols[row * k + j0 + r] = s_stage[r][i];
    }
}

// VEC: features % 16 == 0 and the source aligned for whole-chunk vector loads (every warp's chunk is
// complete or empty); otherwise element-wise loads with tails.
template <bool BF16, int IN, int OUT, bool VEC>
__global__ void __launch_bounds__(kThreads, kMinBlocks) sparsify24_cols_split_kernel(SplitArgs a) {
    constexpr int KSH = OUT == S24_LAYOUT_DENSE ? 4 : 3;
    constexpr bool PACKED_IN = IN != S24_LAYOUT_DENSE;
    // lookup tables, indexed by byte offsets: [0, 128) unpack (uint2 per nibble), [128, 384) selection
    __shared__ __align__(16) uint8_t s_tab[128 + 256];
    __shared__ __align__(16) uint8_t s_meta[kWarps][4 * kMetaChunk];
    __shared__ __align__(16) uint16_t s_stage[kStageCols][kStagePitch];
    __shared__ uint32_t s_dmask[kWarps];
    __shared__ unsigned long long s_tot[kWarps][2];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t T = a.T, F = a.F;
    const int64_t tile = blockIdx.x % a.tok_tiles, split = blockIdx.x / a.tok_tiles;
    const int64_t band_begin = split * a.n_bands / a.band_splits;
    const int64_t band_end = (split + 1) * a.n_bands / a.band_splits;
    const int64_t g0 = tile * (kTileTokens / 4);  // output group of lane 0
    const int64_t tg = g0 + lane;                 // this lane's output group
    const int64_t n_groups = (T + 3) / 4;
    const bool lane_active = tg < n_groups;
    const bool need_dense = a.dense_cols != nullptr && a.k > 0;

    if (tid < 16) {
        const uint4 e = make_sel_entry(tid);
        if constexpr (KSH == 3) reinterpret_cast<uint2*>(s_tab + 128)[tid] = make_uint2(e.x, e.y);
        else reinterpret_cast<uint4*>(s_tab + 128)[tid] = e;
    } else if (tid < 32) {
        const uint4 e = make_unpack_entry(tid - 16);
        reinterpret_cast<uint2*>(s_tab)[tid - 16] = make_uint2(e.x, e.y);
    }

    // ---- this lane's 4 source rows (fixed for the block; -1 past the last token)
    int32_t rows[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int64_t i = 4 * tg + j;
        rows[j] = i < T ? (a.perm ? __ldg(a.perm + i) : (int32_t)i) : -1;
    }
    const uint8_t* const meta_base = a.src + (PACKED_IN ? packed16_values_bytes(T, F) : 0);

    auto load_band = [&](Band<IN>& b, int64_t band, int64_t j0) {
        const int64_t f0 = band * kBand + kLaneFeatures * warp;
        const int nf = f0 < F ? (int)(F - f0 < kLaneFeatures ? F - f0 : kLaneFeatures) : 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
            for (int w = 0; w < (PACKED_IN ? 4 : 8); ++w) b.P[j][w] = 0u;
            if (nf == 0 || rows[j] < 0) continue;
            const int64_t r = rows[j];
            if constexpr (PACKED_IN) {
                const uint8_t* v = a.src + r * F + f0;  // element r*F/2 + f0/2, 2 bytes each
                if constexpr (VEC) {
                    const uint4 x = ld_stream16(v);
                    b.P[j][0] = x.x; b.P[j][1] = x.y; b.P[j][2] = x.z; b.P[j][3] = x.w;
                } else {
                    const uint16_t* v16 = reinterpret_cast<const uint16_t*>(v);
#pragma unroll
                    for (int q = 0; q < 4; ++q)
                        if (4 * q < nf) b.P[j][q] = (uint32_t)v16[2 * q] | (uint32_t)v16[2 * q + 1] << 16;
                }
            } else {
                const uint16_t* row = reinterpret_cast<const uint16_t*>(a.src) + r * F + f0;
                if constexpr (VEC) {
                    const uint4 x = ld_stream16(row), y = ld_stream16(row + 8);
                    b.P[j][0] = x.x; b.P[j][1] = x.y; b.P[j][2] = x.z; b.P[j][3] = x.w;
                    b.P[j][4] = y.x; b.P[j][5] = y.y; b.P[j][6] = y.z; b.P[j][7] = y.w;
                } else {
#pragma unroll
                    for (int w = 0; w < 8; ++w)
                        if (2 * w < nf) b.P[j][w] = (uint32_t)row[2 * w] | (uint32_t)row[2 * w + 1] << 16;
                }
            }
        }
        b.zbyte = (a.is_dense && lane < nf) ? (uint32_t)__ldg(a.is_dense + f0 + lane) : 0u;
        b.dcand = INT_MAX;
        if (need_dense && tid < kBand && j0 + tid < a.k) b.dcand = __ldg(a.dense_idx + j0 + tid);
    };

    // Metadata of a band: CUSPARSELT: the 8 bytes of the row in the 64x32 block (M[j][0..1]); ROW: the
    // 2 bytes of the lane's 4 groups (M[j][0]).
    auto load_meta = [&](uint32_t (&M)[4][2], int64_t band) {
        const int64_t f0 = band * kBand + kLaneFeatures * warp;
        const int nf = f0 < F ? (int)(F - f0 < kLaneFeatures ? F - f0 : kLaneFeatures) : 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            M[j][0] = M[j][1] = 0u;
            if (!PACKED_IN || nf == 0 || rows[j] < 0) continue;
            const int64_t r = rows[j];
            if constexpr (IN == S24_LAYOUT_CUSPARSELT) {
                const uint8_t* m = meta_base + cusparselt_meta_block(r / 64, f0 / 32, F) + cusparselt_meta_in_block(r);
                if constexpr (VEC) {
                    const uint2 x = __ldg(reinterpret_cast<const uint2*>(m));
                    M[j][0] = x.x;
                    M[j][1] = x.y;
                } else {
#pragma unroll
                    for (int by = 0; by < 8; ++by) M[j][by / 4] |= (uint32_t)m[by] << (8 * (by % 4));
                }
            } else if constexpr (IN == S24_LAYOUT_ROW) {  // 2 bytes, groups f0/4 .. f0/4+3
                const uint8_t* m = meta_base + r * row_layout_meta_stride(F) + f0 / 8;
                if (nf == kLaneFeatures && (a.flags & F_SRC_META)) {
                    M[j][0] = __ldg(reinterpret_cast<const unsigned short*>(m));
                } else {
                    M[j][0] = m[0];
                    if (nf > 8) M[j][0] |= (uint32_t)m[1] << 8;
                }
            }
        }
    };

    // ---- first band: the dense features before it
    int64_t j0 = need_dense && band_begin < band_end ? dense_before(a.dense_idx, a.k, band_begin * kBand) : 0;

    Band<IN> cur, nxt;
    uint32_t M[4][2];
    if (band_begin < band_end) {
        load_band(cur, band_begin, j0);
        load_meta(M, band_begin);
    }
    __syncthreads();  // tables

    uint32_t before = 0, kept = 0;
    const int64_t row_meta_stride = row_layout_meta_stride(a.out_cols);
    uint8_t* const out_meta = a.out + packed16_values_bytes(F, a.out_cols);
    const int hsel = warp & 1;                         // this warp's half of a 32-feature metadata block
    const bool out_w4 = (a.flags & F_OUT_W4) != 0, out_dense8 = (a.flags & F_OUT_DENSE8) != 0;
    // key index constants (i << KSH) kept in registers, opaque to the compiler
    uint32_t kc1 = 1u << KSH, kc2 = 2u << KSH, kc3 = 3u << KSH;
    asm volatile("" : "+r"(kc1), "+r"(kc2), "+r"(kc3));

    for (int64_t band = band_begin; band < band_end; ++band) {
        const int64_t fb = band * kBand;
        const int64_t f0 = fb + kLaneFeatures * warp;
        const int nf = f0 < F ? (int)(F - f0 < kLaneFeatures ? F - f0 : kLaneFeatures) : 0;  // multiple of 4

        // ---- dense features of this band (dense_cols)
        uint32_t dmask = 0u;
        int dbase = 0, n_dense = 0;
        if (need_dense) n_dense = band_dense_mask(cur.dcand, fb, s_dmask, dmask, dbase);
        const int64_t j0_next = j0 + n_dense;

        // ---- prefetch the next band
        if (band + 1 < band_end) load_band(nxt, band + 1, j0_next);

        // ---- select
        const uint32_t zmask = __ballot_sync(0xffffffffu, cur.zbyte != 0u);  // bit fl: feature f0 + fl dense
        if (nf > 0) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
#pragma unroll
                for (int w = 0; w < (PACKED_IN ? 4 : 8); ++w) before += (uint32_t)nonzero2(cur.P[j][w]);
            }
        }
        uint32_t mm8[4];  // nibbles * 8 of the lane's 4 groups: CUSPARSELT q at bits {0, 16, 8, 24} + 3; ROW 4q + 3
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if constexpr (IN == S24_LAYOUT_CUSPARSELT) {
                const int sh = 8 * hsel + ((rows[j] >> 1) & 4);  // + 4 for rows r % 16 >= 8
                mm8[j] = (((M[j][0] >> sh) & 0x000f000fu) << 3) | (((M[j][1] >> sh) & 0x000f000fu) << 11);
            } else {
                mm8[j] = M[j][0] << 3;  // 16 bits of nibbles: fits
            }
        }
        uint32_t BW[2] = {0u, 0u};  // cuSPARSELt bytes r8 = fl % 8 (low nibble fl < 8, high fl >= 8)
        // output row pointer, advanced one feature row at a time (keeps one pointer live)
        uint8_t* pv = OUT == S24_LAYOUT_DENSE ? a.out + (f0 * T + 4 * tg) * 2 : a.out + f0 * a.out_cols + 4 * tg;
        const int64_t pv_step = OUT == S24_LAYOUT_DENSE ? 2 * T : a.out_cols;
        uint8_t* pm = out_meta + f0 * row_meta_stride + tg / 2;

#pragma unroll
        for (int q = 0; q < 4; ++q) {
            if (4 * q >= nf) break;  // warp-uniform
            uint32_t d[4][2];  // the 4 tokens' group q: d[j][h] holds features 4q + 2h (low half), 4q + 2h + 1
            unpack_group<IN>(cur.P, mm8, s_tab, q, d);
            // dense features of this group (rare): dense_cols, then zero them
            const uint32_t qz = (zmask >> (4 * q)) & 0xfu, qd = (dmask >> (4 * q)) & 0xfu;
            if ((qz | qd) != 0u)
                take_dense_features(d, q, qz, qd, dmask, dbase, lane_active, tg, T, a.k, j0, a.dense_cols, s_stage, before);
            uint32_t kk[4][2];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                kk[j][0] = badness_abs<BF16>(d[j][0]);
                kk[j][1] = badness_abs<BF16>(d[j][1]);
            }
#pragma unroll
            for (int p = 0; p < 4; ++p) {
                const int fl = 4 * q + p, h = p >> 1;
                const bool hi_half = (p & 1) != 0;
                const uint32_t gsel = hi_half ? 0x7632u : 0x5410u;
                const uint32_t w01 = __byte_perm(d[0][h], d[1][h], gsel), w23 = __byte_perm(d[2][h], d[3][h], gsel);
                uint32_t k0, k1, k2, k3;
                if (hi_half) {  // (kk & 0xffff0000) | index: one LOP3 each with the index in a register
                    k0 = kk[0][h] & 0xffff0000u;
                    k1 = (kk[1][h] & 0xffff0000u) | kc1;
                    k2 = (kk[2][h] & 0xffff0000u) | kc2;
                    k3 = (kk[3][h] & 0xffff0000u) | kc3;
                } else {
                    k0 = key_lo<KSH>(kk[0][h], 0); k1 = key_lo<KSH>(kk[1][h], 1);
                    k2 = key_lo<KSH>(kk[2][h], 2); k3 = key_lo<KSH>(kk[3][h], 3);
                }
                const uint32_t off = select_offset<KSH>(k0, k1, k2, k3);
                uint4 e;
                if constexpr (KSH == 3) {
                    const uint2 v = *reinterpret_cast<const uint2*>(s_tab + 128 + off);
                    e = make_uint4(v.x, v.y, 0u, 0u);
                } else {
                    e = *reinterpret_cast<const uint4*>(s_tab + 128 + off);
                }
                const uint32_t val = prmt(w01, w23, e.x);
                kept += (uint32_t)nonzero2(val);
                // values
                if (lane_active) {
                    if constexpr (OUT == S24_LAYOUT_DENSE) {
                        const uint32_t o01 = prmt(val, 0u, e.z), o23 = prmt(val, 0u, e.w);
                        uint16_t* row = reinterpret_cast<uint16_t*>(pv);
                        if (out_dense8) {
                            st8(row, o01, o23);
                        } else {
                            const int64_t left = T - 4 * tg;
                            row[0] = (uint16_t)o01;
                            if (left > 1) row[1] = (uint16_t)(o01 >> 16);
                            if (left > 2) row[2] = (uint16_t)o23;
                            if (left > 3) row[3] = (uint16_t)(o23 >> 16);
                        }
                    } else {
                        if (out_w4) {
                            *reinterpret_cast<uint32_t*>(pv) = val;
                        } else {
                            reinterpret_cast<uint16_t*>(pv)[0] = (uint16_t)val;
                            reinterpret_cast<uint16_t*>(pv)[1] = (uint16_t)(val >> 16);
                        }
                    }
                }
                pv += pv_step;
                // metadata (the nibble is bits 4-7 of e.y)
                if constexpr (OUT == S24_LAYOUT_CUSPARSELT) {
                    const int shift = 8 * (fl % 4) + 4 * (fl / 8);
                    const uint32_t nb = e.y & 0xf0u;
                    BW[(fl % 8) / 4] |= shift >= 4 ? nb << (shift - 4) : nb >> 4;
                } else if constexpr (OUT == S24_LAYOUT_ROW) {
                    const uint32_t mine = lane_active ? (e.y >> 4) & 0xfu : 0u;  // padding groups read as 0
                    const uint32_t next = __shfl_down_sync(0xffffffffu, mine, 1);
                    if (lane_active && (lane & 1) == 0) *pm = (uint8_t)(mine | next << 4);
                    pm += row_meta_stride;
                }
            }
        }

        if (band + 1 < band_end) load_meta(M, band + 1);

        // ---- cuSPARSELt metadata: 4 chunks (one per 8 groups) of this warp's 64-byte slab rows
        if constexpr (OUT == S24_LAYOUT_CUSPARSELT) {
            if (nf > 0) store_cusparselt_meta_band(BW, s_meta[warp], out_meta, f0, g0, n_groups, a.out_cols,
                                                   (a.flags & F_OUT_W4) != 0);
        }

        // ---- staged dense columns: rows of up to 32 contiguous elements
        if (need_dense) {
            __syncthreads();
            store_staged_dense_cols(s_stage, n_dense, g0, a.T, a.k, j0, a.dense_cols);
        }

        j0 = j0_next;
        if (band + 1 < band_end) cur = nxt;
    }

    if (a.totals) add_block_totals<kWarps>(before, kept, s_tot, a.totals);
}

// Launch with enough band splits to fill the machine with one wave of resident blocks.
template <auto Kernel>
void launch_split(SplitArgs a, cudaStream_t stream, const char* what) {
    const int64_t target = wave_blocks<Kernel>(kThreads, what);
    a.band_splits = std::max<int64_t>(1, std::min<int64_t>(a.n_bands, target / a.tok_tiles));
    const int64_t blocks = a.tok_tiles * a.band_splits;
    if (blocks > 0x7fffffffLL) throw Error(S24_ERROR_NOT_SUPPORTED, std::string(what) + ": too many tokens");
    Kernel<<<(unsigned)blocks, kThreads, 0, stream>>>(a);
    check_launch(what);
}

}  // namespace

void launch_sparsify24_cols_split(s24_dtype dtype, int64_t tokens, int64_t features, const void* src_packed,
                                  s24_layout in_layout, const int32_t* perm, const uint8_t* is_dense,
                                  const int32_t* dense_idx, int64_t k, s24_layout out_layout, void* t_packed,
                                  void* dense_cols, int64_t* totals, cudaStream_t stream) {
    const char* what = "launch_sparsify24_cols_split";
    if (totals) check_cuda(cudaMemsetAsync(totals, 0, 2 * sizeof(int64_t), stream), what);
    if (tokens <= 0 || features <= 0) return;
    SplitArgs a;
    a.src = static_cast<const uint8_t*>(src_packed);
    a.perm = perm;
    a.is_dense = is_dense;
    a.dense_idx = dense_idx;
    a.out = static_cast<uint8_t*>(t_packed);
    a.dense_cols = (k > 0 && dense_idx) ? static_cast<uint16_t*>(dense_cols) : nullptr;
    a.totals = reinterpret_cast<unsigned long long*>(totals);
    a.T = tokens;
    a.F = features;
    a.k = k;
    a.out_cols = split_out_cols(out_layout, tokens);
    a.tok_tiles = ceil_div(tokens, kTileTokens);
    a.n_bands = ceil_div(features, kBand);
    a.band_splits = 1;
    int flags = 0;
    if (aligned(src_packed, 16) && features % 16 == 0) flags |= F_SRC_VEC;
    if (in_layout == S24_LAYOUT_ROW && aligned(src_packed, 2) && row_layout_meta_stride(features) % 2 == 0)
        flags |= F_SRC_META;
    if (out_layout == S24_LAYOUT_CUSPARSELT) {
        if (aligned(t_packed, 8)) flags |= F_OUT_W4;
    } else if (out_layout == S24_LAYOUT_ROW) {
        if (aligned(t_packed, 4)) flags |= F_OUT_W4;
    } else {
        if (aligned(t_packed, 8) && tokens % 4 == 0) flags |= F_OUT_DENSE8;
    }
    a.flags = flags;
    with_bf16(dtype, [&](auto bf16) {
        with_layout(in_layout, [&](auto in) {
            with_layout(out_layout, [&](auto out) {
                with_bools([&](auto vec) { launch_split<sparsify24_cols_split_kernel<bf16, in, out, vec>>(a, stream, what); },
                           (flags & F_SRC_VEC) != 0);
            });
        });
    });
}

}  // namespace cuda
}  // namespace s24
