// grad_split24: the backward's masked gradient and the feature-wise split of its result in one pass
// (sparse24.h, s24_grad_split24): dH = dYhat * 2 sqrt(Yhat) on Yhat's 2:4 mask, written packed like
// Yhat, and t = the split of dH (exactly what sparsify24_cols_split writes for that packed dH), without
// writing dH and reading it back.
//
// Fast path (grad_split24_fits): Yhat in the CUSPARSELT layout (tokens, features multiples of 64),
// dy / y / dh 16-byte aligned. The tiling is the split kernel's (kernels_split.cu; the pieces needed
// are copied here until the shared layout helpers exist): a block of 8 warps owns 128 output tokens
// (lane l: the 4 source rows perm[i] of output group tile*32 + l) and walks 128-feature bands (warp w:
// features 16w .. 16w+15 of the band). Per band and row a lane loads Yhat's 16 bytes of packed values,
// dy's 32 bytes and the row's 8-byte metadata word, and then
//   masked_grad_row:  dH's 4 packed words of the row (same float expression as masked_grad24), stored
//                     as one 16-byte segment; the metadata word is copied once (by the even warp's lane
//                     that holds the word's low row, r % 16 < 8);
//   the split:        unpack, select 2 of 4 tokens per feature, store t and its metadata, dense_cols
//                     (as in kernels_split.cu, on dH's words).
// Bytes: dy 2 + Yhat 1.125 + dH 1.125 + t 1.125 bytes per element (dense features: t rows zero, their
// values go to dense_cols instead). Status: correct (byte-identical to the two kernels) but slower than
// them on an H200 (37% of copy bandwidth vs 59%): the dy reads become 32-byte gathers from permuted rows
// and the work per band (~2000 instructions a lane) leaves it latency bound. The FFN uses the two
// kernels unless s24_ffn_options.fused_grad_split = 1.
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

#include <algorithm>
#include <atomic>
#include <climits>
#include <string>

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
constexpr int kMaxDevices = 64;

enum : int {
    F_OUT_W4 = 4,      // packed output: 4-byte value stores (CUSPARSELT: and 8-byte metadata stores)
    F_OUT_DENSE8 = 8,  // DENSE output: 8-byte stores of 4 tokens allowed
};

struct GradSplitArgs {
    const uint8_t* y;      // Yhat [T, F], CUSPARSELT
    const uint16_t* dy;    // [T, F]
    uint8_t* dh;           // dH [T, F], CUSPARSELT (Yhat's metadata)
    const int32_t* perm;
    const uint8_t* is_dense;
    const int32_t* dense_idx;
    uint8_t* out;          // t [F, out_cols]
    uint16_t* dense_cols;  // [T, k] or null
    unsigned long long* totals;
    int64_t T, F, k;
    int64_t out_cols;
    int64_t tok_tiles, n_bands, band_splits;
    int flags;
};

// Tuning variants: minimum resident blocks per SM (register budget); what of the next band is loaded
// during the current one (register double buffer; the rest is loaded at the top of its own band):
// PF_ALL Yhat and dy, PF_VALUES Yhat only, PF_NONE nothing; whether the row loads ask L2 to fetch the
// whole band segment of the row (dy 256 B, Yhat 128 B: the other warps of the block read the rest of
// it) instead of 32-byte sectors. sm_90a, ptxas: PF_ALL 214 registers (1 block/SM); PF_VALUES 128 + 52
// bytes of spills for 2 blocks; PF_NONE 123 (2 blocks). H200, 16384x16384 bf16 (two kernels: 0.710 ms):
// 2 blocks PF_VALUES + L2 0.950 ms, without L2 0.979; 1 block PF_ALL 1.142 (+ L2 1.128), PF_VALUES 1.118.
// Variants other than the default are built for the CUSPARSELT output only.
enum Prefetch : int { PF_NONE = 0, PF_VALUES = 1, PF_ALL = 2 };
struct Variant {
    int min_blocks;
    int prefetch;
    bool l2_segment;
    const char* name;
};
constexpr Variant kVariants[] = {
    {2, PF_VALUES, true, "2 blocks/SM, prefetch y, L2 seg"},
    {2, PF_VALUES, false, "2 blocks/SM, prefetch y"},
    {2, PF_NONE, true, "2 blocks/SM, no prefetch, L2 seg"},
    {2, PF_NONE, false, "2 blocks/SM, no prefetch"},
    {1, PF_ALL, false, "1 block/SM, prefetch y+dy"},
};
constexpr int kVariantCount = (int)(sizeof(kVariants) / sizeof(kVariants[0]));
constexpr int kDefaultVariant = 0;

// 16-byte streaming load; SEG > 0: L2 fetches the aligned SEG-byte segment holding it (prefetch size hint).
template <int SEG>
__device__ __forceinline__ uint4 ld_row16(const void* p) {
    if constexpr (SEG == 0) {
        return ld_stream16(p);
    } else {
        uint4 v;
        if constexpr (SEG == 256)
            asm("ld.global.cs.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
        else
            asm("ld.global.cs.L2::128B.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
        return v;
    }
}

// Byte position of group q (0..7) inside a cuSPARSELt metadata row of 8 bytes.
__host__ __device__ constexpr int cpos(int q) { return (q % 4) * 2 + q / 4; }

// Byte offset of the 8-byte metadata word of row r for the 32-feature block holding f0 (CUSPARSELT,
// [rows, F]): groups of the block for rows r (low nibbles) and r ^ 8 (high nibbles) when r % 16 < 8.
__device__ __forceinline__ int64_t meta_word(int64_t r, int64_t f0, int64_t F) {
    return (r / 64) * 8 * F + (f0 / 32) * 256 + ((r % 64) / 16) * 64 + (r % 8) * 8;
}

// One band of one lane's Yhat values: packed words P[row][group], the is_dense byte of feature
// f0 + lane and a dense_idx candidate (thread t: entry j0 + t).
struct Band {
    uint32_t P[4][4];
    uint32_t zbyte;
    int32_t dcand;
};

// The 4 packed dH words of one row (groups q = 0..3 of the lane's 16 features): dy gathered at Yhat's
// kept positions (gather selector of the group's nibble) times 2 sqrt(Yhat), rounded once: the same
// expression as masked_grad24, so the same bits.
template <bool BF16>
__device__ __forceinline__ void masked_grad_row(const uint32_t (&P)[4], const uint32_t (&D)[8], uint32_t mm8,
                                                const uint32_t* gsel, uint32_t (&DH)[4]) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const int pos = q == 0 ? 0 : q == 1 ? 16 : q == 2 ? 8 : 24;
        const uint32_t n = (mm8 >> (pos + 3)) & 0xfu;
        const uint32_t dyp = prmt(D[2 * q], D[2 * q + 1], gsel[n]);
        const float g0 = lo_float<BF16>(dyp) * 2.f * sqrtf(lo_float<BF16>(P[q]));
        const float g1 = hi_float<BF16>(dyp) * 2.f * sqrtf(hi_float<BF16>(P[q]));
        DH[q] = pack_rn<BF16>(g0, g1);
    }
}

// Block-wide: adds the block's {before, kept} to totals (one atomic each).
__device__ __forceinline__ void add_totals(unsigned long long* totals, uint32_t before, uint32_t kept,
                                           unsigned long long (&s_tot)[kWarps][2]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned long long b = before, kc = kept;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        b += __shfl_xor_sync(0xffffffffu, b, o);
        kc += __shfl_xor_sync(0xffffffffu, kc, o);
    }
    if (lane == 0) {
        s_tot[warp][0] = b;
        s_tot[warp][1] = kc;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long bs = 0, ks = 0;
        for (int w = 0; w < kWarps; ++w) {
            bs += s_tot[w][0];
            ks += s_tot[w][1];
        }
        if (bs) atomicAdd(totals, bs);
        if (ks) atomicAdd(totals + 1, ks);
    }
}

template <bool BF16, int OUT, int MINB, int PF, bool L2SEG>
__global__ void __launch_bounds__(kThreads, MINB) grad_split_kernel(GradSplitArgs a) {
    constexpr int KSH = OUT == S24_LAYOUT_DENSE ? 4 : 3;
    // lookup tables, indexed by byte offsets: [0, 128) unpack (uint2 per nibble), [128, 384) selection
    __shared__ __align__(16) uint8_t s_tab[128 + 256];
    __shared__ uint32_t s_gsel[16];  // per nibble: selector gathering dy at the kept positions
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
    const int64_t n_groups = T / 4;
    const bool lane_active = tg < n_groups;
    const bool need_dense = a.dense_cols != nullptr && a.k > 0;

    if (tid < 16) {
        const uint4 e = make_sel_entry(tid);
        if constexpr (KSH == 3) reinterpret_cast<uint2*>(s_tab + 128)[tid] = make_uint2(e.x, e.y);
        else reinterpret_cast<uint4*>(s_tab + 128)[tid] = e;
    } else if (tid < 32) {
        const uint4 e = make_unpack_entry(tid - 16);
        reinterpret_cast<uint2*>(s_tab)[tid - 16] = make_uint2(e.x, e.y);
        s_gsel[tid - 16] = e.z;
    }

    // ---- this lane's 4 source rows (fixed for the block; -1 past the last token)
    int32_t rows[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int64_t i = 4 * tg + j;
        rows[j] = lane_active ? (a.perm ? __ldg(a.perm + i) : (int32_t)i) : -1;
    }
    const uint8_t* const y_meta = a.y + T * F;
    uint8_t* const dh_meta = a.dh + T * F;

    // features of this warp in a band: 16 or 0 (F % 64 == 0)
    auto band_f0 = [&](int64_t band) { return band * kBand + kLaneFeatures * warp; };

    auto load_band = [&](Band& b, int64_t band, int64_t j0) {
        const int64_t f0 = band_f0(band);
        const bool have = f0 < F;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            b.P[j][0] = b.P[j][1] = b.P[j][2] = b.P[j][3] = 0u;
            if (!have || rows[j] < 0) continue;
            const uint4 x = ld_row16<L2SEG ? 128 : 0>(a.y + rows[j] * F + f0);  // element r*F/2 + f0/2, 2 bytes each
            b.P[j][0] = x.x; b.P[j][1] = x.y; b.P[j][2] = x.z; b.P[j][3] = x.w;
        }
        b.zbyte = (a.is_dense && have && lane < kLaneFeatures) ? (uint32_t)__ldg(a.is_dense + f0 + lane) : 0u;
        b.dcand = INT_MAX;
        if (need_dense && tid < kBand && j0 + tid < a.k) b.dcand = __ldg(a.dense_idx + j0 + tid);
    };
    auto load_dy = [&](uint32_t (&D)[4][8], int64_t band) {
        const int64_t f0 = band_f0(band);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
            for (int w = 0; w < 8; ++w) D[j][w] = 0u;
            if (f0 >= F || rows[j] < 0) continue;
            const uint16_t* row = a.dy + rows[j] * F + f0;
            const uint4 x = ld_row16<L2SEG ? 256 : 0>(row), z = ld_stream16(row + 8);
            D[j][0] = x.x; D[j][1] = x.y; D[j][2] = x.z; D[j][3] = x.w;
            D[j][4] = z.x; D[j][5] = z.y; D[j][6] = z.z; D[j][7] = z.w;
        }
    };
    // Yhat's metadata word of each row for the band (mostly L2 hits: rows r and r ^ 8 share it)
    auto load_meta = [&](uint32_t (&M)[4][2], int64_t band) {
        const int64_t f0 = band_f0(band);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            M[j][0] = M[j][1] = 0u;
            if (f0 >= F || rows[j] < 0) continue;
            const uint2 x = __ldg(reinterpret_cast<const uint2*>(y_meta + meta_word(rows[j], f0, F)));
            M[j][0] = x.x;
            M[j][1] = x.y;
        }
    };

    // ---- first band: the dense features before it (block-wide lower bound in sorted dense_idx)
    int64_t j0 = 0;
    if (need_dense && band_begin < band_end) {
        const int64_t fb = band_begin * kBand;
        int64_t lo = 0, hi = a.k;
        while (hi > lo) {
            const int64_t step = (hi - lo + kThreads - 1) / kThreads;
            const int64_t pos = lo + step * (tid + 1) - 1;
            const int pred = (pos < hi) && (int64_t)__ldg(a.dense_idx + pos) < fb;
            const int c = __syncthreads_count(pred);
            const int64_t nlo = lo + step * c;
            hi = min(hi, lo + step * (c + 1) - 1);
            lo = nlo;
        }
        j0 = lo;
    }

    constexpr bool PREFETCH_DY = PF == PF_ALL;
    Band cur, nxt;
    uint32_t D[4][8], Dn[PREFETCH_DY ? 4 : 1][PREFETCH_DY ? 8 : 1];
    uint32_t M[4][2];
    if (band_begin < band_end) {
        if constexpr (PF != PF_NONE) load_band(cur, band_begin, j0);
        if constexpr (PREFETCH_DY) load_dy(D, band_begin);
        load_meta(M, band_begin);
    }
    __syncthreads();  // tables

    uint32_t before = 0, kept = 0;
    const int64_t row_meta_stride = row_layout_meta_stride(a.out_cols);
    uint8_t* const out_meta = a.out + F * a.out_cols;  // F rows of out_cols/2 values, 2 bytes each
    const int hsel = warp & 1;                         // this warp's half of a 32-feature metadata block
    const bool out_w4 = (a.flags & F_OUT_W4) != 0, out_dense8 = (a.flags & F_OUT_DENSE8) != 0;
    // key index constants (i << KSH) kept in registers, opaque to the compiler
    uint32_t kc1 = 1u << KSH, kc2 = 2u << KSH, kc3 = 3u << KSH;
    asm volatile("" : "+r"(kc1), "+r"(kc2), "+r"(kc3));

    for (int64_t band = band_begin; band < band_end; ++band) {
        const int64_t fb = band * kBand;
        const int64_t f0 = band_f0(band);
        const bool have = f0 < F;  // warp-uniform
        if constexpr (PF == PF_NONE) load_band(cur, band, j0);
        if constexpr (!PREFETCH_DY) load_dy(D, band);

        // ---- dense features of this band (dense_cols)
        uint32_t dmask = 0u;
        int dbase = 0, n_dense = 0;
        if (need_dense) {
            if (tid < kWarps) s_dmask[tid] = 0u;
            __syncthreads();
            const int64_t v = cur.dcand;
            const bool member = v < fb + kBand;  // and >= fb: dense_idx is sorted, j0 counts those below
            if (member) atomicOr(&s_dmask[(v - fb) / kLaneFeatures], 1u << ((v - fb) % kLaneFeatures));
            n_dense = __syncthreads_count(member);
            dmask = s_dmask[warp];
            for (int w = 0; w < warp; ++w) dbase += __popc(s_dmask[w]);
        }
        const int64_t j0_next = j0 + n_dense;

        // ---- prefetch the next band
        if (band + 1 < band_end) {
            if constexpr (PF != PF_NONE) load_band(nxt, band + 1, j0_next);
            if constexpr (PREFETCH_DY) load_dy(Dn, band + 1);
        }

        // ---- nibbles * 8 of the lane's 4 groups per row: group q at bits {0, 16, 8, 24} + 3
        uint32_t mm8[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int sh = 8 * hsel + ((rows[j] >> 1) & 4);  // + 4 for rows r % 16 >= 8
            mm8[j] = (((M[j][0] >> sh) & 0x000f000fu) << 3) | (((M[j][1] >> sh) & 0x000f000fu) << 11);
        }

        // ---- masked gradient: dH rows (values + the metadata word, copied once)
        uint32_t DH[4][4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            masked_grad_row<BF16>(cur.P[j], D[j], mm8[j], s_gsel, DH[j]);
            if (have && rows[j] >= 0) {
                const int64_t r = rows[j];
                st16(a.dh + r * F + f0, DH[j][0], DH[j][1], DH[j][2], DH[j][3]);
                if (hsel == 0 && (r & 8) == 0) st8(dh_meta + meta_word(r, f0, F), M[j][0], M[j][1]);
            }
        }

        // ---- split of dH: select
        const uint32_t zmask = __ballot_sync(0xffffffffu, cur.zbyte != 0u);  // bit fl: feature f0 + fl dense
        if (have) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
#pragma unroll
                for (int w = 0; w < 4; ++w) before += (uint32_t)nonzero2(DH[j][w]);
            }
        }
        uint32_t BW[2] = {0u, 0u};  // cuSPARSELt bytes r8 = fl % 8 (low nibble fl < 8, high fl >= 8)
        // output row pointer, advanced one feature row at a time (keeps one pointer live)
        uint8_t* pv = OUT == S24_LAYOUT_DENSE ? a.out + (f0 * T + 4 * tg) * 2 : a.out + f0 * a.out_cols + 4 * tg;
        const int64_t pv_step = OUT == S24_LAYOUT_DENSE ? 2 * T : a.out_cols;
        uint8_t* pm = out_meta + f0 * row_meta_stride + tg / 2;

#pragma unroll
        for (int q = 0; q < 4; ++q) {
            if (!have) break;  // warp-uniform
            // unpack the 4 tokens' group q: d[j][h] holds features 4q + 2h (low half), 4q + 2h + 1
            uint32_t d[4][2];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int pos = q == 0 ? 0 : q == 1 ? 16 : q == 2 ? 8 : 24;
                const uint32_t n8 = (mm8[j] >> pos) & 0x78u;  // nibble * 8
                const uint2 e = *reinterpret_cast<const uint2*>(s_tab + n8);
                d[j][0] = prmt(DH[j][q], 0u, e.x);
                d[j][1] = prmt(DH[j][q], 0u, e.y);
            }
            // dense features of this group (rare): dense_cols, then zero them (a zero row and nibble
            // 0x4 is what the selection gives for zeros; they leave the counts)
            const uint32_t qz = (zmask >> (4 * q)) & 0xfu, qd = (dmask >> (4 * q)) & 0xfu;
            if ((qz | qd) != 0u) {
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
                                a.dense_cols[i * a.k + j0 + rank] = (uint16_t)(vv[jt >> 1] >> (16 * (jt & 1)));
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
                            row[0] = (uint16_t)o01;
                            row[1] = (uint16_t)(o01 >> 16);
                            row[2] = (uint16_t)o23;
                            row[3] = (uint16_t)(o23 >> 16);
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
                    const uint32_t mine = lane_active ? (e.y >> 4) & 0xfu : 0u;
                    const uint32_t next = __shfl_down_sync(0xffffffffu, mine, 1);
                    if (lane_active && (lane & 1) == 0) *pm = (uint8_t)(mine | next << 4);
                    pm += row_meta_stride;
                }
            }
        }

        if (band + 1 < band_end) load_meta(M, band + 1);

        // ---- cuSPARSELt metadata of t: 4 chunks (one per 8 groups) of this warp's 64-byte slab rows
        if constexpr (OUT == S24_LAYOUT_CUSPARSELT) {
            if (have) {
                uint8_t* st = s_meta[warp];
                const int c = lane / 8, g8 = lane % 8;
                __syncwarp();  // the previous band's reads of the stage are done
#pragma unroll
                for (int r8 = 0; r8 < 8; ++r8) st[c * kMetaChunk + r8 * 8 + cpos(g8)] = (uint8_t)(BW[r8 / 4] >> (8 * (r8 % 4)));
                __syncwarp();
                const uint2 v = *reinterpret_cast<const uint2*>(st + c * kMetaChunk + g8 * 8);
                const int64_t group = g0 + 8 * c;  // first group of this lane's 64x32 block
                if (group < n_groups) {
                    uint8_t* p = out_meta + (f0 / 64) * 8 * a.out_cols + (group / 8) * 256 + ((f0 % 64) / 16) * 64 + g8 * 8;
                    if (out_w4) {
                        st8(p, v.x, v.y);
                    } else {
#pragma unroll
                        for (int by = 0; by < 8; ++by) p[by] = (uint8_t)((by < 4 ? v.x : v.y) >> (8 * (by % 4)));
                    }
                }
            }
        }

        // ---- staged dense columns: rows of up to 32 contiguous elements
        if (need_dense) {
            __syncthreads();
            const int ns = min(n_dense, kStageCols);
            // e / ns as a multiply-shift: exact for e < 2^12 (error < 2^-8, fraction <= 31/32)
            const uint32_t recip = ns > 0 ? ((1u << 20) + (uint32_t)ns - 1u) / (uint32_t)ns : 0u;
            for (int e = tid; e < kTileTokens * ns; e += kThreads) {
                const int i = (int)(((uint32_t)e * recip) >> 20), r = e - i * ns;
                const int64_t row = 4 * g0 + i;
                if (row < T) a.dense_cols[row * a.k + j0 + r] = s_stage[r][i];
            }
        }

        j0 = j0_next;
        if (band + 1 < band_end) {
            if constexpr (PF != PF_NONE) cur = nxt;
            if constexpr (PREFETCH_DY) {
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int w = 0; w < 8; ++w) D[j][w] = Dn[j][w];
            }
        }
    }

    if (a.totals) add_totals(a.totals, before, kept, s_tot);
}

// Launch with enough band splits to fill the machine with one wave of resident blocks.
template <bool BF16, int OUT, int MINB, int PF, bool L2SEG>
void run(GradSplitArgs a, cudaStream_t stream, const char* what) {
    static std::atomic<int> cache[kMaxDevices];
    auto kernel = grad_split_kernel<BF16, OUT, MINB, PF, L2SEG>;
    int dev = 0;
    check_cuda(cudaGetDevice(&dev), what);
    int per_sm = dev < kMaxDevices ? cache[dev].load(std::memory_order_relaxed) : 0;
    if (per_sm == 0) {
        per_sm = blocks_per_sm(kernel, kThreads, 0, what);
        if (dev < kMaxDevices) cache[dev].store(per_sm, std::memory_order_relaxed);
    }
    const int64_t target = (int64_t)per_sm * device_sms(what);
    a.band_splits = std::max<int64_t>(1, std::min<int64_t>(a.n_bands, target / a.tok_tiles));
    const int64_t blocks = a.tok_tiles * a.band_splits;
    if (blocks > 0x7fffffffLL) throw Error(S24_ERROR_NOT_SUPPORTED, std::string(what) + ": too many tokens");
    kernel<<<(unsigned)blocks, kThreads, 0, stream>>>(a);
    check_launch(what);
}

template <bool BF16, int OUT, int V>
void run_variant(const GradSplitArgs& a, cudaStream_t stream, const char* what) {
    constexpr Variant v = kVariants[V];
    run<BF16, OUT, v.min_blocks, v.prefetch, v.l2_segment>(a, stream, what);
}

template <bool BF16>
void dispatch(const GradSplitArgs& a, s24_layout out_layout, int variant, cudaStream_t stream, const char* what) {
    if (variant == kDefaultVariant) {
        switch (out_layout) {
            case S24_LAYOUT_CUSPARSELT: run_variant<BF16, S24_LAYOUT_CUSPARSELT, kDefaultVariant>(a, stream, what); break;
            case S24_LAYOUT_ROW: run_variant<BF16, S24_LAYOUT_ROW, kDefaultVariant>(a, stream, what); break;
            default: run_variant<BF16, S24_LAYOUT_DENSE, kDefaultVariant>(a, stream, what); break;
        }
        return;
    }
    if (out_layout != S24_LAYOUT_CUSPARSELT)
        throw Error(S24_ERROR_NOT_SUPPORTED, std::string(what) + ": tuning variants write the CUSPARSELT layout only");
    static_assert(kVariantCount == 5, "one case per variant");
    constexpr s24_layout C = S24_LAYOUT_CUSPARSELT;
    switch (variant) {
        case 0: run_variant<BF16, C, 0>(a, stream, what); break;
        case 1: run_variant<BF16, C, 1>(a, stream, what); break;
        case 2: run_variant<BF16, C, 2>(a, stream, what); break;
        case 3: run_variant<BF16, C, 3>(a, stream, what); break;
        default: run_variant<BF16, C, 4>(a, stream, what); break;
    }
}

}  // namespace

bool grad_split24_fits(s24_layout in_layout, int64_t tokens, int64_t features, const void* dy, const void* y_packed,
                       const void* dh_packed) {
    return in_layout == S24_LAYOUT_CUSPARSELT && tokens % 64 == 0 && features % 64 == 0 && aligned(dy, 16) &&
           aligned(y_packed, 16) && aligned(dh_packed, 16);
}

int grad_split24_variant_count() { return kVariantCount; }
const char* grad_split24_variant_name(int variant) {
    return variant >= 0 && variant < kVariantCount ? kVariants[variant].name : "?";
}

void launch_grad_split24(s24_dtype dtype, int64_t tokens, int64_t features, const void* dy, const void* y_packed,
                         void* dh_packed, const int32_t* perm, const uint8_t* is_dense, const int32_t* dense_idx,
                         int64_t k, s24_layout out_layout, void* t_packed, void* dense_cols, int64_t* totals,
                         cudaStream_t stream, int variant) {
    const char* what = "launch_grad_split24";
    if (variant < 0) variant = kDefaultVariant;
    if (variant >= kVariantCount)
        throw Error(S24_ERROR_INVALID_ARGUMENT, std::string(what) + ": variant must be < " + std::to_string(kVariantCount));
    if (totals) check_cuda(cudaMemsetAsync(totals, 0, 2 * sizeof(int64_t), stream), what);
    if (tokens <= 0 || features <= 0) return;
    GradSplitArgs a;
    a.y = static_cast<const uint8_t*>(y_packed);
    a.dy = static_cast<const uint16_t*>(dy);
    a.dh = static_cast<uint8_t*>(dh_packed);
    a.perm = perm;
    a.is_dense = is_dense;
    a.dense_idx = dense_idx;
    a.out = static_cast<uint8_t*>(t_packed);
    a.dense_cols = (k > 0 && dense_idx) ? static_cast<uint16_t*>(dense_cols) : nullptr;
    a.totals = reinterpret_cast<unsigned long long*>(totals);
    a.T = tokens;
    a.F = features;
    a.k = k;
    a.out_cols = tokens;  // tokens % 64 == 0: no padding for any output layout
    a.tok_tiles = ceil_div(tokens, kTileTokens);
    a.n_bands = ceil_div(features, kBand);
    a.band_splits = 1;
    int flags = 0;
    if (out_layout == S24_LAYOUT_CUSPARSELT) {
        if (aligned(t_packed, 8)) flags |= F_OUT_W4;
    } else if (out_layout == S24_LAYOUT_ROW) {
        if (aligned(t_packed, 4)) flags |= F_OUT_W4;
    } else {
        if (aligned(t_packed, 8)) flags |= F_OUT_DENSE8;
    }
    a.flags = flags;
    if (dtype == S24_BF16) dispatch<true>(a, out_layout, variant, stream, what);
    else dispatch<false>(a, out_layout, variant, stream, what);
}

}  // namespace cuda
}  // namespace s24
