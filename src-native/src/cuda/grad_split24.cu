// grad_split24: the backward's masked gradient and the feature-wise split of its result in one pass
// (sparse24.h, s24_grad_split24): dH = dYhat * 2 sqrt(Yhat) on Yhat's 2:4 mask, written packed like
// Yhat, and t = the split of dH (exactly what sparsify24_cols_split writes for that packed dH), without
// writing dH and reading it back.
//
// Fast path (grad_split24_fits): Yhat in the CUSPARSELT layout (tokens, features multiples of 64),
// dy / y / dh 16-byte aligned. The tiling and the split's phases are sparsify24_cols_split's
// (kernels/cols_split.cuh): a block of 8 warps owns 128 output tokens (lane l: the 4 source rows perm[i]
// of output group tile*32 + l) and walks 128-feature bands (warp w: features 16w .. 16w+15 of the band).
// Per band and row a lane loads Yhat's 16 bytes of packed values, dy's 32 bytes and the row's 8-byte
// metadata word, and then
//   masked_grad_row:  dH's 4 packed words of the row (same float expression as masked_grad24), stored
//                     as one 16-byte segment; the metadata word is copied once (by the even warp's lane
//                     that holds the word's low row, r % 16 < 8);
//   the split:        unpack, select 2 of 4 tokens per feature, store t and its metadata, dense_cols
//                     (split_band and store_band_end, on dH's words).
// Bytes: dy 2 + Yhat 1.125 + dH 1.125 + t 1.125 bytes per element (dense features: t rows zero, their
// values go to dense_cols instead). Status: correct (byte-identical to the two kernels) but slower than
// them on an H200 (37% of copy bandwidth vs 59%): the dy reads become 32-byte gathers from permuted rows
// and the work per band (~2000 instructions a lane) leaves it latency bound. The FFN uses the two
// kernels unless s24_ffn_options.fused_grad_split = 1.
#include "cuda/cuda_util.h"
#include "cuda/kernels.h"
#include "cuda/kernels/cols_split.cuh"

#include <string>

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

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

template <bool BF16, int OUT, int MINB, int PF, bool L2SEG>
__global__ void __launch_bounds__(kSplitThreads, MINB) grad_split_kernel(GradSplitArgs a) {
    constexpr int KSH = OUT == S24_LAYOUT_DENSE ? 4 : 3;
    constexpr int IN = S24_LAYOUT_CUSPARSELT;
    __shared__ __align__(16) uint8_t s_tab[128 + 256];  // fill_split_tables
    __shared__ uint32_t s_gsel[16];                     // per nibble: selector gathering dy at the kept positions
    __shared__ __align__(16) uint8_t s_meta[kSplitWarps][4 * kMetaChunk];
    __shared__ __align__(16) uint16_t s_stage[kStageCols][kStagePitch];
    __shared__ uint32_t s_dmask[kSplitWarps];
    __shared__ unsigned long long s_tot[kSplitWarps][2];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t T = a.T, F = a.F;
    const SplitLane l = split_lane<true>(a, lane);
    const bool need_dense = a.dense_cols != nullptr && a.k > 0;

    fill_split_tables<KSH>(s_tab, s_gsel);
    int32_t rows[4];
    split_source_rows<true>(rows, a.perm, l, T);
    const uint8_t* const y_meta = a.y + packed16_values_bytes(T, F);
    uint8_t* const dh_meta = a.dh + packed16_values_bytes(T, F);

    // features of this warp in a band: 16 or 0 (F % 64 == 0)
    auto band_f0 = [&](int64_t band) { return band * kBand + kLaneFeatures * warp; };

    auto load_band = [&](SplitBand<IN>& b, int64_t band, int64_t j0) {
        const int64_t f0 = band_f0(band);
        const int nf = f0 < F ? kLaneFeatures : 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            b.P[j][0] = b.P[j][1] = b.P[j][2] = b.P[j][3] = 0u;
            if (nf == 0 || rows[j] < 0) continue;
            const uint4 x = ld_row16<L2SEG ? 128 : 0>(a.y + rows[j] * F + f0);  // element r*F/2 + f0/2, 2 bytes each
            b.P[j][0] = x.x; b.P[j][1] = x.y; b.P[j][2] = x.z; b.P[j][3] = x.w;
        }
        load_band_dense_info(b, a, f0, a.is_dense && nf > 0 && lane < kLaneFeatures, j0, need_dense);
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
        load_band_meta<IN, true>(M, a, y_meta, rows, f0, f0 < F ? kLaneFeatures : 0, F);
    };

    // ---- first band: the dense features before it
    int64_t j0 = need_dense && l.band_begin < l.band_end ? dense_before(a.dense_idx, a.k, l.band_begin * kBand) : 0;

    constexpr bool PREFETCH_DY = PF == PF_ALL;
    SplitBand<IN> cur, nxt;
    uint32_t D[4][8], Dn[PREFETCH_DY ? 4 : 1][PREFETCH_DY ? 8 : 1];
    uint32_t M[4][2];
    if (l.band_begin < l.band_end) {
        if constexpr (PF != PF_NONE) load_band(cur, l.band_begin, j0);
        if constexpr (PREFETCH_DY) load_dy(D, l.band_begin);
        load_meta(M, l.band_begin);
    }
    __syncthreads();  // tables

    uint32_t before = 0, kept = 0;
    const SplitOut o = split_out<KSH>(a);
    const int hsel = warp & 1;  // this warp's half of a 32-feature metadata block

    for (int64_t band = l.band_begin; band < l.band_end; ++band) {
        const int64_t fb = band * kBand;
        const int64_t f0 = band_f0(band);
        const int nf = f0 < F ? kLaneFeatures : 0;  // warp-uniform
        if constexpr (PF == PF_NONE) load_band(cur, band, j0);
        if constexpr (!PREFETCH_DY) load_dy(D, band);

        // ---- dense features of this band (dense_cols)
        uint32_t dmask = 0u;
        int dbase = 0, n_dense = 0;
        if (need_dense) n_dense = band_dense_mask(cur.dcand, fb, s_dmask, dmask, dbase);
        const int64_t j0_next = j0 + n_dense;

        // ---- prefetch the next band
        if (band + 1 < l.band_end) {
            if constexpr (PF != PF_NONE) load_band(nxt, band + 1, j0_next);
            if constexpr (PREFETCH_DY) load_dy(Dn, band + 1);
        }

        // ---- masked gradient: dH rows (values + the metadata word, copied once)
        uint32_t mm8[4];
        band_nibbles8<IN>(mm8, M, rows, hsel);
        uint32_t DH[4][4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            masked_grad_row<BF16>(cur.P[j], D[j], mm8[j], s_gsel, DH[j]);
            if (nf > 0 && rows[j] >= 0) {
                const int64_t r = rows[j];
                st16(a.dh + r * F + f0, DH[j][0], DH[j][1], DH[j][2], DH[j][3]);
                if (hsel == 0 && (r & 8) == 0)
                    st8(dh_meta + cusparselt_meta_block(r / 64, f0 / 32, F) + cusparselt_meta_in_block(r), M[j][0], M[j][1]);
            }
        }

        // ---- split of dH
        const uint32_t zmask = count_band(DH, cur.zbyte, nf, before);
        uint32_t BW[2];
        split_band<BF16, IN, OUT, true>(a, DH, mm8, f0, nf, l, zmask, dmask, dbase, j0, o, s_tab, s_stage, BW, before,
                                        kept);

        if (band + 1 < l.band_end) load_meta(M, band + 1);
        store_band_end<OUT>(a, BW, s_meta[warp], f0, nf, l, o, need_dense, s_stage, n_dense, j0);

        j0 = j0_next;
        if (band + 1 < l.band_end) {
            if constexpr (PF != PF_NONE) cur = nxt;
            if constexpr (PREFETCH_DY) {
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int w = 0; w < 8; ++w) D[j][w] = Dn[j][w];
            }
        }
    }

    if (a.totals) add_block_totals<kSplitWarps>(before, kept, s_tot, a.totals);
}

template <bool BF16, int OUT, int V>
void launch_variant(const GradSplitArgs& a, cudaStream_t stream, const char* what) {
    constexpr Variant v = kVariants[V];
    launch_band_split<grad_split_kernel<BF16, OUT, v.min_blocks, v.prefetch, v.l2_segment>>(a, stream, what);
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
    set_split_args(a, tokens, features, perm, is_dense, dense_idx, k, out_layout, t_packed, dense_cols, totals);
    if (variant != kDefaultVariant && out_layout != S24_LAYOUT_CUSPARSELT)
        throw Error(S24_ERROR_NOT_SUPPORTED, std::string(what) + ": tuning variants write the CUSPARSELT layout only");
    static_assert(kVariantCount == 5 && kDefaultVariant == 0, "one case per variant");
    constexpr int C = S24_LAYOUT_CUSPARSELT;
    with_bf16(dtype, [&](auto bf16) {
        switch (variant) {
            case 0: with_layout(out_layout, [&](auto out) { launch_variant<bf16, out, 0>(a, stream, what); }); break;
            case 1: launch_variant<bf16, C, 1>(a, stream, what); break;
            case 2: launch_variant<bf16, C, 2>(a, stream, what); break;
            case 3: launch_variant<bf16, C, 3>(a, stream, what); break;
            default: launch_variant<bf16, C, 4>(a, stream, what); break;
        }
    });
}

}  // namespace cuda
}  // namespace s24
