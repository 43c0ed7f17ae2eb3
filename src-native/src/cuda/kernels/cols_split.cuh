// The feature-wise split along tokens shared by sparsify24_cols_split (a packed source) and grad_split24
// (the dH words it computes from dy and Yhat): tiling, arguments and the phases of the band loop.
//
// Tiling: a block (8 warps, 256 threads) owns 128 output tokens (lane l: the 4 tokens of output group
// tile*32 + l, i.e. 4 source rows perm[i]) and walks a range of feature bands of 128 (warp w: features
// band*128 + 16 w .. +15). For each band a lane holds, for its 4 source rows, the 16 features' packed words
// and the metadata word; it unpacks them and, for each of the 16 features, selects 2 of its 4 tokens. A
// warp then stores one row segment per feature (32 lanes x 2 values) and its 16x128 piece of metadata
// (one 64-byte slab row of four 64x32 cuSPARSELt blocks) through a small shared-memory stage.
// dense_cols: dense_idx is sorted, so the block finds its first dense feature once (block-wide search)
// and then advances by the number of dense features of each band; the band's first 32 dense columns are
// staged in shared memory and written as row segments, any further ones go straight out.
//
// Arguments: each kernel has its own struct (field order kept: it is the kernel's parameter layout) with
// the common fields perm, is_dense, dense_idx, out, dense_cols, totals, T, F, k, out_cols, tok_tiles,
// n_bands, band_splits, flags; the phases take it as a template.
// WHOLE_GROUPS: tokens % 4 == 0 is known (grad_split24), so no token of a lane's group needs a bound check.
#pragma once

#include "cuda/kernel_utils.cuh"

#include <climits>
#include <cstddef>
#include <string>
#include <type_traits>

namespace s24 {
namespace cuda {
namespace detail {

constexpr int kSplitThreads = 256;
constexpr int kSplitWarps = kSplitThreads / 32;
constexpr int kLaneFeatures = 16;
constexpr int kBand = kSplitWarps * kLaneFeatures;  // 128 features per band
constexpr int kTileTokens = 128;
constexpr int kStageCols = 32;                      // dense columns staged per band
constexpr int kStagePitch = kTileTokens + 4;        // uint16 elements per staged column
constexpr int kMetaChunk = 72;                      // 64 bytes + 8 padding (bank spread, 8-byte aligned)

enum : int {
    F_SRC_VEC = 1,     // sparsify24_cols_split: features % 16 == 0 and a 16-byte aligned source
    F_SRC_META = 2,    // sparsify24_cols_split: ROW source, 2-byte metadata loads allowed
    F_OUT_W4 = 4,      // packed output: 4-byte value stores (CUSPARSELT: and 8-byte metadata stores)
    F_OUT_DENSE8 = 8,  // DENSE output: 8-byte stores of 4 tokens allowed
};

// One band of one lane's source values: packed words P[token][group] (DENSE: words of 2 features), the
// is_dense byte of feature f0 + lane, and a dense_idx candidate (thread t: entry j0 + t).
template <int IN>
struct SplitBand {
    uint32_t P[4][IN == S24_LAYOUT_DENSE ? 8 : 4];
    uint32_t zbyte;
    int32_t dcand;
};

// A lane's place: its block's band range and its output group tg (g0: lane 0's).
struct SplitLane {
    int64_t band_begin, band_end, g0, tg, n_groups;
    bool lane_active;  // tg is a group of the output
};

template <bool WHOLE_GROUPS, class Args>
__device__ __forceinline__ SplitLane split_lane(const Args& a, int lane) {
    SplitLane l;
    const int64_t tile = blockIdx.x % a.tok_tiles, split = blockIdx.x / a.tok_tiles;
    l.band_begin = split * a.n_bands / a.band_splits;
    l.band_end = (split + 1) * a.n_bands / a.band_splits;
    l.g0 = tile * (kTileTokens / 4);
    l.tg = l.g0 + lane;
    l.n_groups = WHOLE_GROUPS ? a.T / 4 : (a.T + 3) / 4;
    l.lane_active = l.tg < l.n_groups;
    return l;
}

// Features of a warp's slice of a band (its first feature f0): 16, fewer at the end of F, 0 past F.
__device__ __forceinline__ int band_lane_features(int64_t f0, int64_t F) {
    return f0 < F ? (int)(F - f0 < kLaneFeatures ? F - f0 : kLaneFeatures) : 0;
}

// Output state of the band loop, fixed for the kernel.
struct SplitOut {
    uint8_t* meta;            // t's metadata
    int64_t row_meta_stride;  // ROW: metadata bytes per row of t
    bool w4, dense8;          // F_OUT_W4, F_OUT_DENSE8
    uint32_t kc1, kc2, kc3;   // key index constants i << KSH, kept in registers (one LOP3 per key)
};

template <int KSH, class Args>
__device__ __forceinline__ SplitOut split_out(const Args& a) {
    SplitOut o;
    o.row_meta_stride = row_layout_meta_stride(a.out_cols);
    o.meta = a.out + packed16_values_bytes(a.F, a.out_cols);
    o.w4 = (a.flags & F_OUT_W4) != 0;
    o.dense8 = (a.flags & F_OUT_DENSE8) != 0;
    uint32_t kc1 = 1u << KSH, kc2 = 2u << KSH, kc3 = 3u << KSH;
    asm volatile("" : "+r"(kc1), "+r"(kc2), "+r"(kc3));  // opaque to the compiler
    o.kc1 = kc1;
    o.kc2 = kc2;
    o.kc3 = kc3;
    return o;
}

// ---- phases ---------------------------------------------------------------------------------------------

// Lookup tables, indexed by byte offsets: s_tab [0, 128) unpack (uint2 per nibble), [128, 384) selection;
// s_gsel (a uint32_t[16], or nullptr for none): per nibble, the selector gathering dy at the kept positions.
template <int KSH, class Gsel>
__device__ __forceinline__ void fill_split_tables(uint8_t* s_tab, Gsel s_gsel) {
    const int tid = threadIdx.x;
    if (tid < 16) {
        const uint4 e = make_sel_entry(tid);
        if constexpr (KSH == 3) reinterpret_cast<uint2*>(s_tab + 128)[tid] = make_uint2(e.x, e.y);
        else reinterpret_cast<uint4*>(s_tab + 128)[tid] = e;
    } else if (tid < 32) {
        const uint4 e = make_unpack_entry(tid - 16);
        reinterpret_cast<uint2*>(s_tab)[tid - 16] = make_uint2(e.x, e.y);
        if constexpr (!std::is_same_v<Gsel, std::nullptr_t>) s_gsel[tid - 16] = e.z;
    }
}

// The lane's 4 source rows, fixed for the block; -1 past the last token.
template <bool WHOLE_GROUPS>
__device__ __forceinline__ void split_source_rows(int32_t (&rows)[4], const int32_t* perm, const SplitLane& l,
                                                  int64_t T) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int64_t i = 4 * l.tg + j;
        const bool valid = WHOLE_GROUPS ? l.lane_active : i < T;
        rows[j] = valid ? (perm ? __ldg(perm + i) : (int32_t)i) : -1;
    }
}

// Dense features below feature fb: a block-wide lower bound in the sorted dense_idx [k] (256-way search).
// Every thread of the block calls it.
__device__ __forceinline__ int64_t dense_before(const int32_t* dense_idx, int64_t k, int64_t fb) {
    const int tid = threadIdx.x;
    int64_t lo = 0, hi = k;
    while (hi > lo) {
        const int64_t step = (hi - lo + kSplitThreads - 1) / kSplitThreads;
        const int64_t pos = lo + step * (tid + 1) - 1;
        const int pred = (pos < hi) && (int64_t)__ldg(dense_idx + pos) < fb;
        const int c = __syncthreads_count(pred);
        const int64_t nlo = lo + step * c;
        hi = min(hi, lo + step * (c + 1) - 1);
        lo = nlo;
    }
    return lo;
}

// The is_dense byte of feature f0 + lane (read: is_dense is given and the feature exists) and the
// dense_idx candidate of a band.
template <int IN, class Args>
__device__ __forceinline__ void load_band_dense_info(SplitBand<IN>& b, const Args& a, int64_t f0, bool read,
                                                     int64_t j0, bool need_dense) {
    const int tid = threadIdx.x, lane = tid & 31;
    b.zbyte = read ? (uint32_t)__ldg(a.is_dense + f0 + lane) : 0u;
    b.dcand = INT_MAX;
    if (need_dense && tid < kBand && j0 + tid < a.k) b.dcand = __ldg(a.dense_idx + j0 + tid);
}

// Metadata of a band (features f0 .., nf of them) for the lane's 4 rows: CUSPARSELT: the 8 bytes of the row
// in the 64x32 block (M[j][0..1]; VEC: one 8-byte load); ROW: the 2 bytes of the lane's 4 groups (M[j][0];
// a.flags & F_SRC_META: one 2-byte load for a whole slice).
template <int IN, bool VEC, class Args>
__device__ __forceinline__ void load_band_meta(uint32_t (&M)[4][2], const Args& a, const uint8_t* meta_base,
                                               const int32_t (&rows)[4], int64_t f0, int nf, int64_t F) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        M[j][0] = M[j][1] = 0u;
        if (IN == S24_LAYOUT_DENSE || nf == 0 || rows[j] < 0) continue;
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
}

// Nibbles * 8 of the lane's 4 groups per row from the band's metadata M: CUSPARSELT group q at bits
// {0, 16, 8, 24} + 3 (hsel: the warp's half of a 32-feature block); ROW group q at bits 4q + 3.
template <int IN>
__device__ __forceinline__ void band_nibbles8(uint32_t (&mm8)[4], const uint32_t (&M)[4][2], const int32_t (&rows)[4],
                                              int hsel) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if constexpr (IN == S24_LAYOUT_CUSPARSELT) {
            const int sh = 8 * hsel + ((rows[j] >> 1) & 4);  // + 4 for rows r % 16 >= 8
            mm8[j] = (((M[j][0] >> sh) & 0x000f000fu) << 3) | (((M[j][1] >> sh) & 0x000f000fu) << 11);
        } else {
            mm8[j] = M[j][0] << 3;  // 16 bits of nibbles: fits
        }
    }
}

// The dense features of the band starting at feature fb (dcand: thread t's candidate dense_idx entry):
// dmask (bit fl: feature 16 warp + fl of the band is dense), dbase (dense features of the lower warps);
// returns the band's count. Every thread of the block calls it.
__device__ __forceinline__ int band_dense_mask(int64_t dcand, int64_t fb, uint32_t* s_dmask, uint32_t& dmask,
                                               int& dbase) {
    const int tid = threadIdx.x, warp = tid >> 5;
    if (tid < kSplitWarps) s_dmask[tid] = 0u;
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
template <bool WHOLE_GROUPS>
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
                    if (WHOLE_GROUPS || i < T) dense_cols[i * k + j0 + rank] = (uint16_t)(vv[jt >> 1] >> (16 * (jt & 1)));
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

// Select and store group q of the lane's 4 tokens (d, after take_dense_features): per feature the 2 kept
// tokens (values at pv, one row of t per feature, advanced by pv_step), the nibble into BW (CUSPARSELT,
// bytes r8 = fl % 8: low nibble fl < 8, high fl >= 8) or straight to pm (ROW, advanced by one row).
template <bool BF16, int OUT, bool WHOLE_GROUPS>
__device__ __forceinline__ void select_store_group(const uint32_t (&d)[4][2], int q, const SplitOut& o,
                                                   const uint8_t* s_tab, bool lane_active, int64_t tg, int64_t T,
                                                   uint8_t*& pv, int64_t pv_step, uint8_t*& pm, uint32_t (&BW)[2],
                                                   uint32_t& kept) {
    constexpr int KSH = OUT == S24_LAYOUT_DENSE ? 4 : 3;
    const int lane = threadIdx.x & 31;
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
            k1 = (kk[1][h] & 0xffff0000u) | o.kc1;
            k2 = (kk[2][h] & 0xffff0000u) | o.kc2;
            k3 = (kk[3][h] & 0xffff0000u) | o.kc3;
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
                if (o.dense8) {
                    st8(row, o01, o23);
                } else {
                    const int64_t left = T - 4 * tg;
                    row[0] = (uint16_t)o01;
                    if (WHOLE_GROUPS || left > 1) row[1] = (uint16_t)(o01 >> 16);
                    if (WHOLE_GROUPS || left > 2) row[2] = (uint16_t)o23;
                    if (WHOLE_GROUPS || left > 3) row[3] = (uint16_t)(o23 >> 16);
                }
            } else {
                if (o.w4) {
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
            pm += o.row_meta_stride;
        }
    }
}

// Before the split of a band: the lane's non-zeros of its words P (features f0 .., nf of them) into
// `before`; returns the warp's is_dense mask (bit fl: feature f0 + fl dense; zbyte: the lane's byte).
template <int NP>
__device__ __forceinline__ uint32_t count_band(const uint32_t (&P)[4][NP], uint32_t zbyte, int nf, uint32_t& before) {
    const uint32_t zmask = __ballot_sync(0xffffffffu, zbyte != 0u);
    if (nf > 0) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
            for (int w = 0; w < NP; ++w) before += (uint32_t)nonzero2(P[j][w]);
        }
    }
    return zmask;
}

// The split of one band: the lane's words P of its 4 tokens (nibbles * 8 mm8: band_nibbles8; features
// f0 .., nf of them; zmask: count_band; dmask, dbase: band_dense_mask) -> t's values and ROW metadata,
// dense_cols, BW (CUSPARSELT metadata bytes, for store_band_end), the counts before / kept.
template <bool BF16, int IN, int OUT, bool WHOLE_GROUPS, int NP, class Args>
__device__ __forceinline__ void split_band(const Args& a, const uint32_t (&P)[4][NP], const uint32_t (&mm8)[4],
                                           int64_t f0, int nf, const SplitLane& l, uint32_t zmask, uint32_t dmask,
                                           int dbase, int64_t j0, const SplitOut& o, const uint8_t* s_tab,
                                           uint16_t (*s_stage)[kStagePitch], uint32_t (&BW)[2], uint32_t& before,
                                           uint32_t& kept) {
    const int64_t T = a.T, tg = l.tg;
    BW[0] = BW[1] = 0u;
    // output row pointer, advanced one feature row at a time (keeps one pointer live)
    uint8_t* pv = OUT == S24_LAYOUT_DENSE ? a.out + (f0 * T + 4 * tg) * 2 : a.out + f0 * a.out_cols + 4 * tg;
    const int64_t pv_step = OUT == S24_LAYOUT_DENSE ? 2 * T : a.out_cols;
    uint8_t* pm = o.meta + f0 * o.row_meta_stride + tg / 2;

#pragma unroll
    for (int q = 0; q < 4; ++q) {
        if (4 * q >= nf) break;  // warp-uniform
        uint32_t d[4][2];  // the 4 tokens' group q: d[j][h] holds features 4q + 2h (low half), 4q + 2h + 1
        unpack_group<IN>(P, mm8, s_tab, q, d);
        // dense features of this group (rare): dense_cols, then zero them
        const uint32_t qz = (zmask >> (4 * q)) & 0xfu, qd = (dmask >> (4 * q)) & 0xfu;
        if ((qz | qd) != 0u)
            take_dense_features<WHOLE_GROUPS>(d, q, qz, qd, dmask, dbase, l.lane_active, tg, T, a.k, j0, a.dense_cols,
                                              s_stage, before);
        select_store_group<BF16, OUT, WHOLE_GROUPS>(d, q, o, s_tab, l.lane_active, tg, T, pv, pv_step, pm, BW, kept);
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
    for (int e = tid; e < kTileTokens * ns; e += kSplitThreads) {
        const int i = (int)(((uint32_t)e * recip) >> 20), r = e - i * ns;
        const int64_t row = 4 * g0 + i;
        if (row < T) dense_cols[row * k + j0 + r] = s_stage[r][i];
    }
}

// The end of a band: t's CUSPARSELT metadata (4 chunks, one per 8 groups, of the warp's 64-byte slab rows),
// then the staged dense columns (every thread of the block calls it).
template <int OUT, class Args>
__device__ __forceinline__ void store_band_end(const Args& a, const uint32_t (&BW)[2], uint8_t* s_meta_warp, int64_t f0,
                                               int nf, const SplitLane& l, const SplitOut& o, bool need_dense,
                                               const uint16_t (*s_stage)[kStagePitch], int n_dense, int64_t j0) {
    if constexpr (OUT == S24_LAYOUT_CUSPARSELT) {
        // the flag read again rather than o.w4: ptxas then spills less in sparsify24_cols_split's DENSE-source kernels
        if (nf > 0) store_cusparselt_meta_band(BW, s_meta_warp, o.meta, f0, l.g0, l.n_groups, a.out_cols,
                                                    (a.flags & F_OUT_W4) != 0);
    }
    // staged dense columns: rows of up to 32 contiguous elements
    if (need_dense) {
        __syncthreads();
        store_staged_dense_cols(s_stage, n_dense, l.g0, a.T, a.k, j0, a.dense_cols);
    }
}

// ---- host side ------------------------------------------------------------------------------------------

// The common fields of a split kernel's arguments; flags gets the output's F_OUT_* bits.
template <class Args>
void set_split_args(Args& a, int64_t tokens, int64_t features, const int32_t* perm, const uint8_t* is_dense,
                    const int32_t* dense_idx, int64_t k, s24_layout out_layout, void* t_packed, void* dense_cols,
                    int64_t* totals) {
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
    if (out_layout == S24_LAYOUT_CUSPARSELT) {
        if (aligned(t_packed, 8)) flags |= F_OUT_W4;
    } else if (out_layout == S24_LAYOUT_ROW) {
        if (aligned(t_packed, 4)) flags |= F_OUT_W4;
    } else {
        if (aligned(t_packed, 8) && tokens % 4 == 0) flags |= F_OUT_DENSE8;
    }
    a.flags = flags;
}

// Launch with enough band splits to fill the machine with one wave of resident blocks.
template <auto Kernel, class Args>
void launch_band_split(Args a, cudaStream_t stream, const char* what) {
    const int64_t target = wave_blocks<Kernel>(kSplitThreads, what);
    a.band_splits = std::max<int64_t>(1, std::min<int64_t>(a.n_bands, target / a.tok_tiles));
    const int64_t blocks = a.tok_tiles * a.band_splits;
    if (blocks > 0x7fffffffLL) throw Error(S24_ERROR_NOT_SUPPORTED, std::string(what) + ": too many tokens");
    Kernel<<<(unsigned)blocks, kSplitThreads, 0, stream>>>(a);
    check_launch(what);
}

}  // namespace detail
}  // namespace cuda
}  // namespace s24
