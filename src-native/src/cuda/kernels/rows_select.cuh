// The row-wise 2:4 selection shared by sparsify24_rows (score relu(h), values relu(h)^2, counts) and
// compress24 (score |v|, values kept as they are): the kernel bodies and the host-side arguments.
//
// Fast path (16-byte aligned pointers): a block of 256 threads walks "units" of 64 rows x 128 columns.
// Thread t takes column chunk cc = t % 16 (8 columns = 2 groups = one 16-byte load) of rows
//   16 * (q / 4) + 2 * (q % 4) + {0, 1, 8, 9},  q = t / 16,
// so that each warp load instruction reads two full 256-byte row segments (coalesced), and each thread
// holds rows r and r + 8 of a 16-row slab: the two nibbles of a cuSPARSELt metadata byte. Four
// neighbouring threads (one 64x32 metadata block) then assemble rows (r, r+1) of that block with two
// shuffles and write 16 contiguous bytes: no shared-memory staging, no read-modify-write.
// Units are ordered column stripe first; each block takes a contiguous range of units (one wave of
// resident blocks), so per-column counts stay in registers for a whole stripe segment and are flushed
// with one atomicAdd per column per segment. The next unit's loads are issued before the current one is
// computed (register double buffer).
//
// Generic path (any alignment): one thread per metadata byte, scalar loads, shared.h's select24.
#pragma once

#include "cuda/kernel_utils.cuh"

namespace s24 {
namespace cuda {
namespace detail {

constexpr int kRowThreads = 256;
constexpr int kUnitRows = 64;
constexpr int kUnitCols = 128;
constexpr int kChunks = kUnitCols / 8;  // 16 column chunks of 8 per unit

enum RowOp { OP_RELU2 = 0, OP_ABS = 1 };

struct RowArgs {
    const uint16_t* in;   // h or dense [rows, cols]
    uint8_t* out;         // packed or dense output
    int64_t rows, cols;
    int32_t* col_counts;  // may be null
    unsigned long long* totals;  // may be null
    int64_t row_tiles, units;
};

inline RowArgs row_args(int64_t rows, int64_t cols, const void* in, void* out, int32_t* col_counts, int64_t* totals) {
    RowArgs a;
    a.in = static_cast<const uint16_t*>(in);
    a.out = static_cast<uint8_t*>(out);
    a.rows = rows;
    a.cols = cols;
    a.col_counts = col_counts;
    a.totals = reinterpret_cast<unsigned long long*>(totals);
    a.row_tiles = ceil_div(rows, kUnitRows);
    a.units = a.row_tiles * ceil_div(cols, kUnitCols);
    return a;
}

// Row of slot k (0..3) for thread quad q, relative to the unit's first row.
__device__ __forceinline__ int unit_row(int q, int k) { return 16 * (q >> 2) + 2 * (q & 3) + (k & 1) + 8 * (k >> 1); }

template <int KSH>
__device__ __forceinline__ void fill_sel_table(uint32_t* table) {
    if (threadIdx.x < 16) {
        const uint4 e = make_sel_entry((int)threadIdx.x);
        if constexpr (KSH == 3) {
            reinterpret_cast<uint2*>(table)[threadIdx.x] = make_uint2(e.x, e.y);
        } else {
            reinterpret_cast<uint4*>(table)[threadIdx.x] = e;
        }
    }
}

// ---- phases of the fast path ---------------------------------------------------------------------------

// Load: 4 rows (unit rows of quad q, from rb) x 8 columns (col..col+7; 4 when only the first group exists).
template <bool VEC16>
__device__ __forceinline__ void load_chunk_rows(uint32_t (&w)[4][4], const uint16_t* in, int64_t rb, int q, int64_t rows,
                                                int64_t cols, int64_t col, bool cvalid, bool bvalid) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int64_t r = rb + unit_row(q, k);
        w[k][0] = w[k][1] = w[k][2] = w[k][3] = 0u;
        if (r < rows && cvalid) {
            const uint16_t* p = in + r * cols + col;
            if constexpr (VEC16) {
                const uint4 v = ld_stream16(p);
                w[k][0] = v.x; w[k][1] = v.y; w[k][2] = v.z; w[k][3] = v.w;
            } else {
                const uint2 v = ld_stream8(p);
                w[k][0] = v.x; w[k][1] = v.y;
                if (bvalid) {
                    const uint2 v2 = ld_stream8(p + 4);
                    w[k][2] = v2.x; w[k][3] = v2.y;
                }
            }
        }
    }
}

// Select: one group (words w01, w23) -> its nibble, the kept pair `val` (packed layouts), the pruned
// group d01, d23 (DENSE); counts (sparsify24_rows): non-zeros before the 2:4 into zc_total, kept ones
// as byte counters into cnt.
template <bool BF16, int OP, int LAYOUT, bool KEEP_ALL, bool COUNT>
__device__ __forceinline__ void select_group(uint32_t w01, uint32_t w23, const uint32_t* s_sel, uint32_t& nib,
                                             uint32_t& val, uint32_t& d01, uint32_t& d23, uint32_t& zc_total,
                                             uint32_t& cnt) {
    constexpr int KSH = LAYOUT == S24_LAYOUT_DENSE ? 4 : 3;
    constexpr uint32_t INF2 = Fmt<BF16>::SCORE_BASE * 0x10001u;  // score bits = INF2 - badness
    if constexpr (OP == OP_RELU2) {
        const uint32_t kk01 = badness_relu<BF16>(w01), kk23 = badness_relu<BF16>(w23);
        const uint32_t s01 = INF2 - kk01, s23 = INF2 - kk23;  // relu scores
        if constexpr (KEEP_ALL) {
            d01 = square_pair<BF16>(s01);
            d23 = square_pair<BF16>(s23);
            nib = 0;
            val = 0;
            if constexpr (COUNT) {
                const uint32_t zb = above_bytes(s01, s23, Fmt<BF16>::SQ_ZERO_MAX);
                zc_total += (uint32_t)__popc(zb);
                cnt += zb;
            }
        } else {
            const uint32_t off = select_offset<KSH>(key_lo<KSH>(kk01, 0), key_hi<KSH>(kk01, 1),
                                                    key_lo<KSH>(kk23, 2), key_hi<KSH>(kk23, 3));
            const uint4 e = sel_lookup<KSH>(s_sel, off);
            const uint32_t sq = square_pair<BF16>(prmt(s01, s23, e.x));
            nib = (e.y >> 4) & 0xfu;
            val = sq;
            if constexpr (LAYOUT == S24_LAYOUT_DENSE) {
                d01 = prmt(sq, 0u, e.z);
                d23 = prmt(sq, 0u, e.w);
            }
            if constexpr (COUNT) {
                const uint32_t zb = above_bytes(s01, s23, Fmt<BF16>::SQ_ZERO_MAX);
                zc_total += (uint32_t)__popc(zb);
                cnt += e.y & zb;
            }
        }
    } else {  // OP_ABS: compress24, keep the original values
        const uint32_t kk01 = badness_abs<BF16>(w01), kk23 = badness_abs<BF16>(w23);
        const uint32_t off = select_offset<KSH>(key_lo<KSH>(kk01, 0), key_hi<KSH>(kk01, 1),
                                                key_lo<KSH>(kk23, 2), key_hi<KSH>(kk23, 3));
        const uint4 e = sel_lookup<KSH>(s_sel, off);
        const uint32_t p = prmt(w01, w23, e.x);
        nib = (e.y >> 4) & 0xfu;
        val = p;
        if constexpr (LAYOUT == S24_LAYOUT_DENSE) {
            d01 = prmt(p, 0u, e.z);
            d23 = prmt(p, 0u, e.w);
        }
    }
}

// Store values: row r's chunk c0 (columns col = 8 c0 ..): DENSE the pruned groups d, packed layouts the
// kept pairs val (ROW: and the metadata byte of the two groups).
template <int LAYOUT, bool VEC16>
__device__ __forceinline__ void store_chunk_row(uint8_t* out, uint8_t* meta, int64_t r, int64_t cols, int64_t c0,
                                                int64_t row_stride, bool bvalid, const uint32_t (&nib)[2],
                                                const uint32_t (&val)[2], const uint32_t (&d)[4]) {
    const int64_t col = 8 * c0;
    if constexpr (LAYOUT == S24_LAYOUT_DENSE) {
        uint16_t* p = reinterpret_cast<uint16_t*>(out) + r * cols + col;
        if constexpr (VEC16) {
            st16(p, d[0], d[1], d[2], d[3]);
        } else {
            st8(p, d[0], d[1]);
            if (bvalid) st8(p + 4, d[2], d[3]);
        }
    } else {
        uint8_t* p = out + r * cols + col;  // element r*cols/2 + 4*c0, 2 bytes each
        if constexpr (VEC16) {
            st8(p, val[0], val[1]);
        } else {
            *reinterpret_cast<uint32_t*>(p) = val[0];
            if (bvalid) *reinterpret_cast<uint32_t*>(p + 4) = val[1];
        }
        if constexpr (LAYOUT == S24_LAYOUT_ROW) {
            meta[r * row_stride + c0] = (uint8_t)(nib[0] | (bvalid ? nib[1] << 4 : 0u));
        }
    }
}

// Store metadata (CUSPARSELT): rows r8a, r8a+1 (nibbles of k = 0, 1 low, k = 2, 3 high) of the 64x32
// block (at slab * 64 + r8a * 8 = cusparselt_meta_in_block(16 * slab + r8a)); bytes at
// cusparselt_meta_pos(g % 8) of each row's 8: the groups 2j, 2j+1 of quad position j = cc % 4 land at
// {0,2}, {4,6}, {1,3}, {5,7} for j = 0..3. Every lane of the warp calls it (shuffles).
__device__ __forceinline__ void store_cusparselt_meta(const uint32_t (&nib)[4][2], int q, bool cvalid, uint8_t* meta,
                                                      int64_t rbase, int64_t c0, int64_t cols) {
    const int j = threadIdx.x & 3;
    const uint32_t ya = (nib[0][0] | nib[2][0] << 4) | (nib[0][1] | nib[2][1] << 4) << 16;
    const uint32_t yb = (nib[1][0] | nib[3][0] << 4) | (nib[1][1] | nib[3][1] << 4) << 16;
    const uint32_t za = ya | __shfl_xor_sync(0xffffffffu, ya, 2) << 8;  // j=0: bytes 0-3, j=1: 4-7
    const uint32_t zb = yb | __shfl_xor_sync(0xffffffffu, yb, 2) << 8;
    const uint32_t ha = __shfl_xor_sync(0xffffffffu, za, 1);
    const uint32_t hb = __shfl_xor_sync(0xffffffffu, zb, 1);
    if (j == 0 && cvalid) {
        const int slab = q >> 2, r8a = 2 * (q & 3);
        uint8_t* p = meta + cusparselt_meta_block(rbase / 64, c0 / 4, cols) + slab * 64 + r8a * 8;
        st16(p, za, ha, zb, hb);
    }
}

// Reduce column counts of a stripe (columns first .. first + 127): the 16 row-threads of each column
// chunk (lanes cc and cc+16, then the 8 warps), one atomicAdd per non-zero column. All threads call it.
__device__ __forceinline__ void add_column_counts(int32_t (&ccount)[8], int (*s_red)[kUnitCols], int64_t first,
                                                  int64_t cols, int32_t* col_counts) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, cc = tid & 15;
#pragma unroll
    for (int i = 0; i < 8; ++i) ccount[i] += __shfl_xor_sync(0xffffffffu, ccount[i], 16);
    if (lane < 16) {
#pragma unroll
        for (int i = 0; i < 8; ++i) s_red[warp][cc * 8 + i] = ccount[i];
    }
    __syncthreads();
    if (tid < kUnitCols) {
        int sum = 0;
#pragma unroll
        for (int w8 = 0; w8 < kRowThreads / 32; ++w8) sum += s_red[w8][tid];
        const int64_t c = first + tid;
        if (c < cols && sum != 0) atomicAdd(col_counts + c, sum);
    }
    __syncthreads();
}

// ---- the fast path: this block's units --------------------------------------------------------------------
template <bool BF16, int OP, int LAYOUT, bool VEC16, bool KEEP_ALL, bool COUNT>
__device__ __forceinline__ void select_rows(const RowArgs& a) {
    constexpr int KSH = LAYOUT == S24_LAYOUT_DENSE ? 4 : 3;
    __shared__ __align__(16) uint32_t s_sel[64];
    __shared__ int s_red[kRowThreads / 32][kUnitCols];
    __shared__ unsigned long long s_tot[kRowThreads / 32][2];

    fill_sel_table<KSH>(s_sel);
    __syncthreads();

    const int tid = threadIdx.x;
    const int cc = tid & 15, q = tid >> 4;
    const int64_t rows = a.rows, cols = a.cols;
    uint8_t* const meta = a.out + packed16_values_bytes(rows, cols);
    const int64_t row_stride = row_layout_meta_stride(cols);

    const int64_t ub = (int64_t)blockIdx.x * a.units / gridDim.x;
    const int64_t ue = ((int64_t)blockIdx.x + 1) * a.units / gridDim.x;

    uint32_t zc_total = 0, kc_total = 0;  // non-zeros before 2:4, kept non-zeros (this thread)

    for (int64_t seg = ub; seg < ue;) {
        const int64_t stripe = seg / a.row_tiles;
        const int64_t seg_end = min(ue, (stripe + 1) * a.row_tiles);
        const int64_t c0 = stripe * kChunks + cc;  // chunk index: columns 8*c0 .. 8*c0+7
        const int64_t col = 8 * c0;
        const bool cvalid = col < cols;
        const bool bvalid = col + 4 < cols;  // second group of the chunk exists
        int32_t ccount[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) ccount[i] = 0;
        uint32_t cnt_a = 0, cnt_b = 0;  // byte counters, flushed every 63 units
        int since_flush = 0;

        auto flush = [&]() {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int32_t va = (int32_t)((cnt_a >> (8 * i)) & 0xffu), vb = (int32_t)((cnt_b >> (8 * i)) & 0xffu);
                ccount[i] += va;
                ccount[4 + i] += vb;
                kc_total += (uint32_t)(va + vb);
            }
            cnt_a = cnt_b = 0;
            since_flush = 0;
        };

        auto load_unit = [&](uint32_t (&w)[4][4], int64_t u) {
            load_chunk_rows<VEC16>(w, a.in, (u - stripe * a.row_tiles) * kUnitRows, q, rows, cols, col, cvalid, bvalid);
        };
        uint32_t w[4][4], wn[4][4];
        load_unit(w, seg);
        for (int64_t u = seg; u < seg_end; ++u) {
            const int64_t rbase = (u - stripe * a.row_tiles) * kUnitRows;
            if (u + 1 < seg_end) load_unit(wn, u + 1);  // next unit's loads in flight during this one
            uint32_t nib[4][2];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                uint32_t val[2], d[4];
#pragma unroll
                for (int g = 0; g < 2; ++g) {
                    select_group<BF16, OP, LAYOUT, KEEP_ALL, COUNT>(w[k][2 * g], w[k][2 * g + 1], s_sel, nib[k][g], val[g],
                                                                   d[2 * g], d[2 * g + 1], zc_total, g == 0 ? cnt_a : cnt_b);
                }
                const int64_t r = rbase + unit_row(q, k);
                if (r < rows && cvalid) store_chunk_row<LAYOUT, VEC16>(a.out, meta, r, cols, c0, row_stride, bvalid, nib[k], val, d);
            }
            if constexpr (LAYOUT == S24_LAYOUT_CUSPARSELT) store_cusparselt_meta(nib, q, cvalid, meta, rbase, c0, cols);
            if constexpr (COUNT) {
                if (++since_flush == 63) flush();
            }
#pragma unroll
            for (int k = 0; k < 4; ++k)
#pragma unroll
                for (int i = 0; i < 4; ++i) w[k][i] = wn[k][i];
        }

        if constexpr (COUNT) {
            flush();
            if (a.col_counts) add_column_counts(ccount, s_red, stripe * kUnitCols, cols, a.col_counts);
        }
        seg = seg_end;
    }

    if constexpr (COUNT) {
        if (a.totals) add_block_totals<kRowThreads / 32>(zc_total, kc_total, s_tot, a.totals);
    }
}

// ---- generic path: any alignment, one thread per metadata byte (n of them, select_rows_generic_items) -----
// ROW: byte (r, m) holds groups 2m, 2m+1 of row r. CUSPARSELT: byte holds group g of rows r and r+8
// (r % 16 < 8). DENSE: one group. Elements are read and written as single 16-bit values.
template <bool BF16, int OP>
__device__ __forceinline__ unsigned generic_group(const uint16_t* in, uint16_t* vals, uint16_t* dense_out,
                                                  int64_t r, int64_t g, int64_t cols, bool keep_all,
                                                  unsigned long long* zc, unsigned long long* kc, int32_t* col_counts) {
    uint16_t raw[4];
    float score[4];
    uint16_t outv[4];
    for (int i = 0; i < 4; ++i) {
        raw[i] = in[r * cols + 4 * g + i];
        const float x = to_float<BF16>(raw[i]);
        if (OP == OP_RELU2) {
            score[i] = x > 0.f || x != x ? x : 0.f;  // relu, NaN kept
            outv[i] = round_one<BF16>(score[i] * score[i]);
        } else {
            score[i] = fabsf(x);
            outv[i] = raw[i];
        }
    }
    if (OP == OP_RELU2 && keep_all) {
        for (int i = 0; i < 4; ++i) {
            dense_out[r * cols + 4 * g + i] = outv[i];
            if ((outv[i] & 0x7fffu) != 0) {
                ++*zc;
                ++*kc;
                if (col_counts) atomicAdd(col_counts + 4 * g + i, 1);
            }
        }
        return 0;
    }
    const unsigned nib = select24(score[0], score[1], score[2], score[3]);
    const int first = nib & 3, second = (nib >> 2) & 3;
    if (OP == OP_RELU2) {
        for (int i = 0; i < 4; ++i) *zc += (outv[i] & 0x7fffu) != 0;
        for (int t = 0; t < 2; ++t) {
            const int i = t == 0 ? first : second;
            if ((outv[i] & 0x7fffu) != 0) {
                ++*kc;
                if (col_counts) atomicAdd(col_counts + 4 * g + i, 1);
            }
        }
    }
    if (dense_out) {
        for (int i = 0; i < 4; ++i)
            dense_out[r * cols + 4 * g + i] = (i == second || i == first) ? outv[i] : (uint16_t)0;
    } else {
        vals[r * (cols / 2) + 2 * g] = outv[first];
        vals[r * (cols / 2) + 2 * g + 1] = outv[second];
    }
    return nib;
}

template <bool BF16, int OP>
__device__ __forceinline__ void select_rows_generic(const uint16_t* __restrict__ in, uint8_t* out, int64_t rows,
                                                    int64_t cols, s24_layout layout, bool keep_all,
                                                    int32_t* col_counts, unsigned long long* totals, int64_t n) {
    unsigned long long zc = 0, kc = 0;
    const int64_t groups = cols / 4;
    uint16_t* vals = reinterpret_cast<uint16_t*>(out);
    uint8_t* meta = out + packed16_values_bytes(rows, cols);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        if (layout == S24_LAYOUT_DENSE) {
            const int64_t r = i / groups, g = i % groups;
            generic_group<BF16, OP>(in, nullptr, vals, r, g, cols, keep_all, &zc, &kc, col_counts);
        } else if (layout == S24_LAYOUT_ROW) {
            const int64_t stride = row_layout_meta_stride(cols);
            const int64_t r = i / stride, m = i % stride;
            unsigned byte = generic_group<BF16, OP>(in, vals, nullptr, r, 2 * m, cols, false, &zc, &kc, col_counts);
            if (2 * m + 1 < groups)
                byte |= generic_group<BF16, OP>(in, vals, nullptr, r, 2 * m + 1, cols, false, &zc, &kc, col_counts) << 4;
            meta[i] = (uint8_t)byte;
        } else {
            // i enumerates (row pair, group): r = 16 * (i / (8 * groups)) + (i / groups) % 8, g = i % groups
            const int64_t g = i % groups, rp = i / groups;
            const int64_t r = 16 * (rp / 8) + rp % 8;
            const unsigned lo = generic_group<BF16, OP>(in, vals, nullptr, r, g, cols, false, &zc, &kc, col_counts);
            const unsigned hi = generic_group<BF16, OP>(in, vals, nullptr, r + 8, g, cols, false, &zc, &kc, col_counts);
            meta[cusparselt_meta_byte(r, g, cols)] = (uint8_t)(lo | hi << 4);
        }
    }
    if (OP == OP_RELU2 && totals) {
        if (zc) atomicAdd(totals, zc);
        if (kc) atomicAdd(totals + 1, kc);
    }
}


// Threads of the generic path: one per metadata byte (DENSE: one per group).
inline int64_t select_rows_generic_items(s24_layout layout, int64_t rows, int64_t cols) {
    return layout == S24_LAYOUT_DENSE ? rows * (cols / 4) : (int64_t)packed_meta_bytes(layout, rows, cols);
}

// ---- launch of a row op (sparsify24_rows, compress24, decompress24, masked_grad24) -------------------------

// A kernel as a type, for launch_rows' `pick`.
template <auto Kernel>
using kernel_c = std::integral_constant<decltype(Kernel), Kernel>;

// Dtype dispatch, then: pointers not 16-byte aligned (!fast): generic(bf16, grid) launches the grid-stride
// kernel over generic_items; else the persistent kernel that pick(bf16, layout, vec16, flags...) names as a
// kernel_c (vec16: a.cols % 8 == 0; flags: the op's other run-time bools) runs one wave over a.units.
// The launch is checked. A combination without a kernel (pick returns void, or CUSPARSELT without vec16,
// which its shapes never give) throws S24_ERROR_INTERNAL.
template <class Args, class Generic, class Pick, class... Flags>
void launch_rows(s24_dtype dtype, s24_layout layout, bool fast, const Args& a, int64_t generic_items,
                 cudaStream_t stream, const char* what, Generic&& generic, Pick&& pick, Flags... flags) {
    auto no_kernel = [&] { fail(S24_ERROR_INTERNAL, std::string(what) + ": no kernel for this layout and shape"); };
    with_bf16(dtype, [&](auto bf16) {
        if (!fast) {
            generic(bf16, stride_grid(generic_items, kRowThreads, 8192));
            check_launch(what);
            return;
        }
        with_layout(layout, [&](auto lay) {
            with_bools([&](auto vec, auto... more) {
                if constexpr (lay == S24_LAYOUT_CUSPARSELT && !vec) {
                    no_kernel();
                } else {
                    using K = decltype(pick(bf16, lay, vec, more...));
                    if constexpr (std::is_void_v<K>) no_kernel();
                    else launch_persistent<K::value>(a, a.units, kRowThreads, stream, what);
                }
            }, a.cols % 8 == 0, flags...);
        });
    });
}

}  // namespace detail
}  // namespace cuda
}  // namespace s24
