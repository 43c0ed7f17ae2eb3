// sparsify24_cols_split: the backward's feature-wise split (sparse24.h).
//
// Output t [features, tokens] (2:4 along tokens, column i = source token perm[i]); dense features'
// rows zero; dense_cols [tokens, k] = the source's dense features, rows in permuted order.
//
// Tiling and phases: cols_split.cuh. Per band a lane loads, from its 4 source rows, the 16 features'
// packed values (16 bytes) and the metadata word (8 bytes of a cuSPARSELt block row). The next band's
// loads are issued before the current band is computed (register double buffer), so every warp keeps
// loads in flight. Blocks with the same band range run together and walk the bands in step: the metadata
// sectors a lane reads only in part (rows t and t+8 share bytes) are used by the other token tiles of the
// same band while still in L2.
#include "cuda/kernels.h"
#include "cuda/kernels/cols_split.cuh"

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

constexpr int kMinBlocks = 2;  // per SM: 128 registers (3 blocks spill, at half the speed)

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

// VEC: features % 16 == 0 and the source aligned for whole-chunk vector loads (every warp's chunk is
// complete or empty); otherwise element-wise loads with tails.
template <bool BF16, int IN, int OUT, bool VEC>
__global__ void __launch_bounds__(kSplitThreads, kMinBlocks) sparsify24_cols_split_kernel(SplitArgs a) {
    constexpr int KSH = OUT == S24_LAYOUT_DENSE ? 4 : 3;
    constexpr bool PACKED_IN = IN != S24_LAYOUT_DENSE;
    __shared__ __align__(16) uint8_t s_tab[128 + 256];  // fill_split_tables
    __shared__ __align__(16) uint8_t s_meta[kSplitWarps][4 * kMetaChunk];
    __shared__ __align__(16) uint16_t s_stage[kStageCols][kStagePitch];
    __shared__ uint32_t s_dmask[kSplitWarps];
    __shared__ unsigned long long s_tot[kSplitWarps][2];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t T = a.T, F = a.F;
    const SplitLane l = split_lane<false>(a, lane);
    const bool need_dense = a.dense_cols != nullptr && a.k > 0;

    fill_split_tables<KSH>(s_tab, nullptr);
    int32_t rows[4];
    split_source_rows<false>(rows, a.perm, l, T);
    const uint8_t* const meta_base = a.src + (PACKED_IN ? packed16_values_bytes(T, F) : 0);

    auto load_band = [&](SplitBand<IN>& b, int64_t band, int64_t j0) {
        const int64_t f0 = band * kBand + kLaneFeatures * warp;
        const int nf = band_lane_features(f0, F);
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
        load_band_dense_info(b, a, f0, a.is_dense && lane < nf, j0, need_dense);
    };
    // Metadata (mostly L2 hits) is loaded at the end of the previous band, to keep registers down.
    auto load_meta = [&](uint32_t (&M)[4][2], int64_t band) {
        const int64_t f0 = band * kBand + kLaneFeatures * warp;
        load_band_meta<IN, VEC>(M, a, meta_base, rows, f0, band_lane_features(f0, F), F);
    };

    // ---- first band: the dense features before it
    int64_t j0 = need_dense && l.band_begin < l.band_end ? dense_before(a.dense_idx, a.k, l.band_begin * kBand) : 0;

    SplitBand<IN> cur, nxt;
    uint32_t M[4][2];
    if (l.band_begin < l.band_end) {
        load_band(cur, l.band_begin, j0);
        load_meta(M, l.band_begin);
    }
    __syncthreads();  // tables

    uint32_t before = 0, kept = 0;
    const SplitOut o = split_out<KSH>(a);
    const int hsel = warp & 1;  // this warp's half of a 32-feature metadata block

    for (int64_t band = l.band_begin; band < l.band_end; ++band) {
        const int64_t fb = band * kBand;
        const int64_t f0 = fb + kLaneFeatures * warp;
        const int nf = band_lane_features(f0, F);  // multiple of 4

        // ---- dense features of this band (dense_cols)
        uint32_t dmask = 0u;
        int dbase = 0, n_dense = 0;
        if (need_dense) n_dense = band_dense_mask(cur.dcand, fb, s_dmask, dmask, dbase);
        const int64_t j0_next = j0 + n_dense;

        // ---- prefetch the next band
        if (band + 1 < l.band_end) load_band(nxt, band + 1, j0_next);

        // ---- select and store
        const uint32_t zmask = count_band(cur.P, cur.zbyte, nf, before);
        uint32_t mm8[4], BW[2];
        band_nibbles8<IN>(mm8, M, rows, hsel);
        split_band<BF16, IN, OUT, false>(a, cur.P, mm8, f0, nf, l, zmask, dmask, dbase, j0, o, s_tab, s_stage, BW, before,
                                         kept);

        if (band + 1 < l.band_end) load_meta(M, band + 1);
        store_band_end<OUT>(a, BW, s_meta[warp], f0, nf, l, o, need_dense, s_stage, n_dense, j0);

        j0 = j0_next;
        if (band + 1 < l.band_end) cur = nxt;
    }

    if (a.totals) add_block_totals<kSplitWarps>(before, kept, s_tot, a.totals);
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
    set_split_args(a, tokens, features, perm, is_dense, dense_idx, k, out_layout, t_packed, dense_cols, totals);
    if (aligned(src_packed, 16) && features % 16 == 0) a.flags |= F_SRC_VEC;
    if (in_layout == S24_LAYOUT_ROW && aligned(src_packed, 2) && row_layout_meta_stride(features) % 2 == 0)
        a.flags |= F_SRC_META;
    with_bf16(dtype, [&](auto bf16) {
        with_layout(in_layout, [&](auto in) {
            with_layout(out_layout, [&](auto out) {
                with_bools([&](auto vec) { launch_band_split<sparsify24_cols_split_kernel<bf16, in, out, vec>>(a, stream, what); },
                           (a.flags & F_SRC_VEC) != 0);
            });
        });
    });
}

}  // namespace cuda
}  // namespace s24
