// Row-wise 2:4 kernels: sparsify24_rows (the forward's fused relu^2 + 2:4 + counts), compress24,
// decompress24, masked_grad24.
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
// with one atomicAdd per column per segment.
//
// Generic path (any alignment): one thread per metadata byte, scalar loads, shared.h's select24.
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

#include <algorithm>
#include <atomic>

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kMaxDevices = 64;
constexpr int kUnitRows = 64;
constexpr int kUnitCols = 128;
constexpr int kChunks = kUnitCols / 8;  // 16 column chunks of 8 per unit
#ifndef S24_ROWS_PREFETCH
#define S24_ROWS_PREFETCH 1
#endif
constexpr bool kPrefetch = S24_ROWS_PREFETCH != 0;  // load the next unit while computing this one
// Minimum resident blocks per SM for the select kernel's register budget (tuning; default: the
// compiler's choice, about 70 registers: 3 blocks of 256 threads).
#ifdef S24_ROWS_MIN_BLOCKS
#define S24_ROWS_BOUNDS __launch_bounds__(kThreads, S24_ROWS_MIN_BLOCKS)
#else
#define S24_ROWS_BOUNDS __launch_bounds__(kThreads)
#endif

enum RowOp { OP_RELU2 = 0, OP_ABS = 1 };

struct RowArgs {
    const uint16_t* in;   // h or dense [rows, cols]
    uint8_t* out;         // packed or dense output
    int64_t rows, cols;
    int32_t* col_counts;  // may be null
    unsigned long long* totals;  // may be null
    int64_t row_tiles, units;
};

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

// One 64x128 unit of sparsify24_rows (OP_RELU2) or compress24 (OP_ABS).
template <bool BF16, int OP, int LAYOUT, bool VEC16, bool KEEP_ALL, bool COUNT>
__global__ void S24_ROWS_BOUNDS rowwise_select_kernel(RowArgs a) {
    constexpr int KSH = LAYOUT == S24_LAYOUT_DENSE ? 4 : 3;
    constexpr uint32_t INF2 = (Fmt<BF16>::INF + 1u) * 0x10001u;  // score bits = INF2 - badness
    __shared__ __align__(16) uint32_t s_sel[64];
    __shared__ int s_red[kThreads / 32][kUnitCols];
    __shared__ unsigned long long s_tot[kThreads / 32][2];

    fill_sel_table<KSH>(s_sel);
    __syncthreads();

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int cc = tid & 15, q = tid >> 4;
    const int j = cc & 3;  // position of this thread in its metadata quad
    const int64_t rows = a.rows, cols = a.cols;
    uint8_t* const meta = a.out + rows * cols;  // values: rows * cols/2 elements of 2 bytes
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

        // ---- load 4 rows x 8 columns of unit u
        auto load_unit = [&](uint32_t (&w)[4][4], int64_t u) {
            const int64_t rb = (u - stripe * a.row_tiles) * kUnitRows;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int64_t r = rb + unit_row(q, k);
                w[k][0] = w[k][1] = w[k][2] = w[k][3] = 0u;
                if (r < rows && cvalid) {
                    const uint16_t* p = a.in + r * cols + col;
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
        };
        uint32_t w[4][4], wn[4][4];
        if (kPrefetch) load_unit(w, seg);
        for (int64_t u = seg; u < seg_end; ++u) {
            const int64_t rbase = (u - stripe * a.row_tiles) * kUnitRows;
            if (kPrefetch) {
                if (u + 1 < seg_end) load_unit(wn, u + 1);  // next unit's loads in flight during this one
            } else {
                load_unit(w, u);
            }
            // ---- select, square, count, store values
            uint32_t nib[4][2];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                uint32_t val[2], d[4];
#pragma unroll
                for (int g = 0; g < 2; ++g) {
                    const uint32_t w01 = w[k][2 * g], w23 = w[k][2 * g + 1];
                    if constexpr (OP == OP_RELU2) {
                        const uint32_t kk01 = badness_relu<BF16>(w01), kk23 = badness_relu<BF16>(w23);
                        const uint32_t s01 = INF2 - kk01, s23 = INF2 - kk23;  // relu scores
                        if constexpr (KEEP_ALL) {
                            d[2 * g] = square_pair<BF16>(s01);
                            d[2 * g + 1] = square_pair<BF16>(s23);
                            nib[k][g] = 0;
                            val[g] = 0;
                            if constexpr (COUNT) {
                                const uint32_t zb = above_bytes(s01, s23, Fmt<BF16>::SQ_ZERO_MAX);
                                zc_total += (uint32_t)__popc(zb);
                                if (g == 0) cnt_a += zb; else cnt_b += zb;
                            }
                        } else {
                            const uint32_t off = select_offset<KSH>(key_lo<KSH>(kk01, 0), key_hi<KSH>(kk01, 1),
                                                                    key_lo<KSH>(kk23, 2), key_hi<KSH>(kk23, 3));
                            const uint4 e = sel_lookup<KSH>(s_sel, off);
                            const uint32_t sq = square_pair<BF16>(prmt(s01, s23, e.x));
                            nib[k][g] = (e.y >> 4) & 0xfu;
                            val[g] = sq;
                            if constexpr (LAYOUT == S24_LAYOUT_DENSE) {
                                d[2 * g] = prmt(sq, 0u, e.z);
                                d[2 * g + 1] = prmt(sq, 0u, e.w);
                            }
                            if constexpr (COUNT) {
                                const uint32_t zb = above_bytes(s01, s23, Fmt<BF16>::SQ_ZERO_MAX);
                                zc_total += (uint32_t)__popc(zb);
                                if (g == 0) cnt_a += e.y & zb; else cnt_b += e.y & zb;
                            }
                        }
                    } else {  // OP_ABS: compress24, keep the original values
                        const uint32_t kk01 = badness_abs<BF16>(w01), kk23 = badness_abs<BF16>(w23);
                        const uint32_t off = select_offset<KSH>(key_lo<KSH>(kk01, 0), key_hi<KSH>(kk01, 1),
                                                                key_lo<KSH>(kk23, 2), key_hi<KSH>(kk23, 3));
                        const uint4 e = sel_lookup<KSH>(s_sel, off);
                        const uint32_t p = prmt(w01, w23, e.x);
                        nib[k][g] = (e.y >> 4) & 0xfu;
                        val[g] = p;
                        if constexpr (LAYOUT == S24_LAYOUT_DENSE) {
                            d[2 * g] = prmt(p, 0u, e.z);
                            d[2 * g + 1] = prmt(p, 0u, e.w);
                        }
                    }
                }
                const int64_t r = rbase + unit_row(q, k);
                if (r < rows && cvalid) {
                    if constexpr (LAYOUT == S24_LAYOUT_DENSE) {
                        uint16_t* p = reinterpret_cast<uint16_t*>(a.out) + r * cols + col;
                        if constexpr (VEC16) {
                            st16(p, d[0], d[1], d[2], d[3]);
                        } else {
                            st8(p, d[0], d[1]);
                            if (bvalid) st8(p + 4, d[2], d[3]);
                        }
                    } else {
                        uint8_t* p = a.out + r * cols + col;  // element r*cols/2 + 4*c0, 2 bytes each
                        if constexpr (VEC16) {
                            st8(p, val[0], val[1]);
                        } else {
                            *reinterpret_cast<uint32_t*>(p) = val[0];
                            if (bvalid) *reinterpret_cast<uint32_t*>(p + 4) = val[1];
                        }
                        if constexpr (LAYOUT == S24_LAYOUT_ROW) {
                            meta[r * row_stride + c0] = (uint8_t)(nib[k][0] | (bvalid ? nib[k][1] << 4 : 0u));
                        }
                    }
                }
            }
            // ---- cuSPARSELT metadata: rows r8a, r8a+1 (nibbles of k = 0, 1 low, k = 2, 3 high) of the
            // 64x32 block; bytes at positions (g%4)*2 + (g%8)/4 of each row's 8: this thread's groups
            // 2j, 2j+1 land at {0,2}, {4,6}, {1,3}, {5,7} for j = 0..3.
            if constexpr (LAYOUT == S24_LAYOUT_CUSPARSELT) {
                const uint32_t ya = (nib[0][0] | nib[2][0] << 4) | (nib[0][1] | nib[2][1] << 4) << 16;
                const uint32_t yb = (nib[1][0] | nib[3][0] << 4) | (nib[1][1] | nib[3][1] << 4) << 16;
                const uint32_t za = ya | __shfl_xor_sync(0xffffffffu, ya, 2) << 8;  // j=0: bytes 0-3, j=1: 4-7
                const uint32_t zb = yb | __shfl_xor_sync(0xffffffffu, yb, 2) << 8;
                const uint32_t ha = __shfl_xor_sync(0xffffffffu, za, 1);
                const uint32_t hb = __shfl_xor_sync(0xffffffffu, zb, 1);
                if (j == 0 && cvalid) {
                    const int slab = q >> 2, r8a = 2 * (q & 3);
                    uint8_t* p = meta + (rbase / 64) * 8 * cols + (c0 / 4) * 256 + slab * 64 + r8a * 8;
                    st16(p, za, ha, zb, hb);
                }
            }
            if constexpr (COUNT) {
                if (++since_flush == 63) flush();
            }
            if (kPrefetch) {
#pragma unroll
                for (int k = 0; k < 4; ++k)
#pragma unroll
                    for (int i = 0; i < 4; ++i) w[k][i] = wn[k][i];
            }
        }

        if constexpr (COUNT) {
            flush();
            if (a.col_counts) {
                // Reduce the 16 row-threads of each column chunk: lanes cc and cc+16, then the 8 warps.
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
                    for (int w8 = 0; w8 < kThreads / 32; ++w8) sum += s_red[w8][tid];
                    const int64_t c = stripe * kUnitCols + tid;
                    if (c < cols && sum != 0) atomicAdd(a.col_counts + c, sum);
                }
                __syncthreads();
            }
        }
        seg = seg_end;
    }

    if constexpr (COUNT) {
        if (a.totals) {
            unsigned long long z = zc_total, kc = kc_total;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                z += __shfl_xor_sync(0xffffffffu, z, o);
                kc += __shfl_xor_sync(0xffffffffu, kc, o);
            }
            if (lane == 0) {
                s_tot[warp][0] = z;
                s_tot[warp][1] = kc;
            }
            __syncthreads();
            if (tid == 0) {
                unsigned long long zs = 0, ks = 0;
                for (int w8 = 0; w8 < kThreads / 32; ++w8) {
                    zs += s_tot[w8][0];
                    ks += s_tot[w8][1];
                }
                if (zs) atomicAdd(a.totals, zs);
                if (ks) atomicAdd(a.totals + 1, ks);
            }
        }
    }
}

// ---- generic path: any alignment, one thread per metadata byte ----------------------------------------
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
__global__ void __launch_bounds__(kThreads) rowwise_generic_kernel(const uint16_t* __restrict__ in, uint8_t* out,
                                                                   int64_t rows, int64_t cols, s24_layout layout,
                                                                   bool keep_all, int32_t* col_counts,
                                                                   unsigned long long* totals, int64_t n) {
    unsigned long long zc = 0, kc = 0;
    const int64_t groups = cols / 4;
    uint16_t* vals = reinterpret_cast<uint16_t*>(out);
    uint8_t* meta = out + rows * cols;
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

// ---- consumers: decompress24, masked_grad24 (packed layouts), fast path -----------------------------------
struct ConsumerArgs {
    const uint8_t* packed;  // y (grad) or the packed source (decompress)
    const uint16_t* dy;     // grad only
    uint8_t* out;           // dense (decompress) or dh packed (grad)
    int64_t rows, cols, row_tiles, units;
};

// One thread's data of a unit: packed values, metadata (ROW: the byte of each row; CUSPARSELT: the
// two words of rows r8a, r8a + 1 holding this thread's nibbles), dy (grad).
template <bool GRAD>
struct ConsumerData {
    uint32_t v[4][2];
    uint32_t m[4];
    uint32_t dyw[GRAD ? 4 : 1][4];
};

template <bool BF16, int LAYOUT, bool VEC16, bool GRAD>
__global__ void __launch_bounds__(kThreads) consumer_kernel(ConsumerArgs a) {
    __shared__ __align__(16) uint4 s_unpack[16];
    if (threadIdx.x < 16) s_unpack[threadIdx.x] = make_unpack_entry((int)threadIdx.x);
    __syncthreads();

    const int tid = threadIdx.x, cc = tid & 15, q = tid >> 4, j = cc & 3;
    const int slab = q >> 2, r8a = 2 * (q & 3);
    const int64_t rows = a.rows, cols = a.cols;
    const uint8_t* const meta = a.packed + rows * cols;
    uint8_t* const out_meta = a.out + rows * cols;
    const int64_t row_stride = row_layout_meta_stride(cols);
    const int64_t ub = (int64_t)blockIdx.x * a.units / gridDim.x;
    const int64_t ue = ((int64_t)blockIdx.x + 1) * a.units / gridDim.x;

    // CUSPARSELT: word (j & 1) of row r8a + kp's 8 metadata bytes holds this thread's groups at bytes
    // j >> 1 and (j >> 1) + 2; low nibbles row r8a + kp (k = kp), high nibbles row + 8 (k = kp + 2).
    auto meta_off = [&](int64_t rbase, int64_t c0, int kp) -> int64_t {
        return (rbase / 64) * 8 * cols + (c0 / 4) * 256 + slab * 64 + (r8a + kp) * 8 + (j & 1) * 4;
    };
    auto load_unit = [&](ConsumerData<GRAD>& x, int64_t u) {
        const int64_t rbase = (u % a.row_tiles) * kUnitRows;
        const int64_t c0 = (u / a.row_tiles) * kChunks + cc, col = 8 * c0;
        const bool cvalid = col < cols, bvalid = col + 4 < cols;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const int64_t r = rbase + unit_row(q, k);
            x.v[k][0] = x.v[k][1] = 0u;
            x.m[k] = 0u;
            if constexpr (GRAD) x.dyw[k][0] = x.dyw[k][1] = x.dyw[k][2] = x.dyw[k][3] = 0u;
            if (r < rows && cvalid) {
                const uint8_t* p = a.packed + r * cols + col;
                if constexpr (VEC16) {
                    const uint2 t = ld_stream8(p);
                    x.v[k][0] = t.x; x.v[k][1] = t.y;
                } else {
                    x.v[k][0] = ld_stream4(p);
                    if (bvalid) x.v[k][1] = ld_stream4(p + 4);
                }
                if constexpr (LAYOUT == S24_LAYOUT_ROW) x.m[k] = __ldcs(meta + r * row_stride + c0);
                if constexpr (GRAD) {
                    const uint16_t* pd = a.dy + r * cols + col;
                    if constexpr (VEC16) {
                        const uint4 t = ld_stream16(pd);
                        x.dyw[k][0] = t.x; x.dyw[k][1] = t.y; x.dyw[k][2] = t.z; x.dyw[k][3] = t.w;
                    } else {
                        const uint2 t = ld_stream8(pd);
                        x.dyw[k][0] = t.x; x.dyw[k][1] = t.y;
                        if (bvalid) {
                            const uint2 t2 = ld_stream8(pd + 4);
                            x.dyw[k][2] = t2.x; x.dyw[k][3] = t2.y;
                        }
                    }
                }
            }
        }
        if constexpr (LAYOUT == S24_LAYOUT_CUSPARSELT) {
            if (cvalid) {
#pragma unroll
                for (int kp = 0; kp < 2; ++kp)
                    x.m[kp] = __ldcs(reinterpret_cast<const unsigned int*>(meta + meta_off(rbase, c0, kp)));
            }
        }
    };

    ConsumerData<GRAD> cur, nxt;
    if (ub < ue) load_unit(cur, ub);
    for (int64_t u = ub; u < ue; ++u) {
        if (u + 1 < ue) load_unit(nxt, u + 1);  // the next unit's loads are in flight during this one
        const int64_t stripe = u / a.row_tiles;
        const int64_t rbase = (u % a.row_tiles) * kUnitRows;
        const int64_t c0 = stripe * kChunks + cc, col = 8 * c0;
        const bool cvalid = col < cols, bvalid = col + 4 < cols;

        uint32_t nib[4][2];
        if constexpr (LAYOUT == S24_LAYOUT_CUSPARSELT) {
            const int sh = 8 * (j >> 1);
#pragma unroll
            for (int kp = 0; kp < 2; ++kp) {
                const uint32_t wd = cur.m[kp];
                const uint32_t ba = (wd >> sh) & 0xffu, bb = (wd >> (sh + 16)) & 0xffu;
                nib[kp][0] = ba & 0xfu;
                nib[kp + 2][0] = ba >> 4;
                nib[kp][1] = bb & 0xfu;
                nib[kp + 2][1] = bb >> 4;
                if constexpr (GRAD) {
                    if (j < 2 && cvalid) *reinterpret_cast<uint32_t*>(out_meta + meta_off(rbase, c0, kp)) = wd;
                }
            }
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                nib[k][0] = cur.m[k] & 0xfu;
                nib[k][1] = (cur.m[k] >> 4) & 0xfu;
                if constexpr (GRAD) {
                    const int64_t r = rbase + unit_row(q, k);
                    if (r < rows && cvalid) out_meta[r * row_stride + c0] = (uint8_t)cur.m[k];
                }
            }
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const int64_t r = rbase + unit_row(q, k);
            if (!(r < rows && cvalid)) continue;
            if constexpr (GRAD) {
                uint32_t dh[2];
#pragma unroll
                for (int g = 0; g < 2; ++g) {
                    const uint32_t gs = s_unpack[nib[k][g]].z;
                    const uint32_t dyp = prmt(cur.dyw[k][2 * g], cur.dyw[k][2 * g + 1], gs);  // dy at the kept positions
                    const float y0 = lo_float<BF16>(cur.v[k][g]), y1 = hi_float<BF16>(cur.v[k][g]);
                    const float g0 = lo_float<BF16>(dyp) * 2.f * sqrtf(y0);
                    const float g1 = hi_float<BF16>(dyp) * 2.f * sqrtf(y1);
                    dh[g] = pack_rn<BF16>(g0, g1);
                }
                uint8_t* p = a.out + r * cols + col;
                if constexpr (VEC16) {
                    st8(p, dh[0], dh[1]);
                } else {
                    *reinterpret_cast<uint32_t*>(p) = dh[0];
                    if (bvalid) *reinterpret_cast<uint32_t*>(p + 4) = dh[1];
                }
            } else {
                uint32_t d[4];
#pragma unroll
                for (int g = 0; g < 2; ++g) {
                    const uint4 e = s_unpack[nib[k][g]];
                    d[2 * g] = prmt(cur.v[k][g], 0u, e.x);
                    d[2 * g + 1] = prmt(cur.v[k][g], 0u, e.y);
                }
                uint16_t* p = reinterpret_cast<uint16_t*>(a.out) + r * cols + col;
                if constexpr (VEC16) {
                    st16(p, d[0], d[1], d[2], d[3]);
                } else {
                    st8(p, d[0], d[1]);
                    if (bvalid) st8(p + 4, d[2], d[3]);
                }
            }
        }
        if (u + 1 < ue) cur = nxt;
    }
}

// Generic consumer: one thread per group, scalar accesses (any alignment); grad copies the metadata
// bytes in a separate loop.
template <bool BF16, bool GRAD>
__global__ void __launch_bounds__(kThreads) consumer_generic_kernel(const uint8_t* packed, const uint16_t* dy,
                                                                    uint8_t* out, int64_t rows, int64_t cols,
                                                                    s24_layout layout, int64_t meta_bytes) {
    const int64_t groups = cols / 4, n = rows * groups;
    const uint8_t* meta = packed + rows * cols;
    const uint16_t* vals = reinterpret_cast<const uint16_t*>(packed);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / groups, g = i % groups;
        const unsigned nib = layout == S24_LAYOUT_ROW
                                 ? (meta[row_layout_meta_byte(r, g, cols)] >> row_layout_meta_shift(r, g)) & 0xfu
                                 : (meta[cusparselt_meta_byte(r, g, cols)] >> cusparselt_meta_shift(r, g)) & 0xfu;
        const int first = nib & 3, second = (nib >> 2) & 3;
        const uint16_t v0 = vals[r * (cols / 2) + 2 * g], v1 = vals[r * (cols / 2) + 2 * g + 1];
        if (GRAD) {
            uint16_t* dh = reinterpret_cast<uint16_t*>(out);
            const float d0 = to_float<BF16>(dy[r * cols + 4 * g + first]);
            const float d1 = to_float<BF16>(dy[r * cols + 4 * g + second]);
            dh[r * (cols / 2) + 2 * g] = round_one<BF16>(d0 * 2.f * sqrtf(to_float<BF16>(v0)));
            dh[r * (cols / 2) + 2 * g + 1] = round_one<BF16>(d1 * 2.f * sqrtf(to_float<BF16>(v1)));
        } else {
            uint16_t* d = reinterpret_cast<uint16_t*>(out) + r * cols + 4 * g;
            for (int p = 0; p < 4; ++p) d[p] = p == second ? v1 : p == first ? v0 : (uint16_t)0;
        }
    }
    if (GRAD) {
        uint8_t* out_meta = out + rows * cols;
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < meta_bytes;
             i += (int64_t)gridDim.x * blockDim.x)
            out_meta[i] = meta[i];
    }
}

// DENSE masked_grad: dh = dy * 2 * sqrt(y) for every element; 4 elements per step when 8-byte aligned.
template <bool BF16, bool VEC>
__global__ void __launch_bounds__(kThreads) grad_dense_kernel(const uint16_t* dy, const uint16_t* y, uint16_t* dh,
                                                             int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if (VEC) {
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n / 4; i += stride) {
            const uint2 d = ld_stream8(dy + 4 * i), yy = ld_stream8(y + 4 * i);
            uint2 o;
            o.x = pack_rn<BF16>(lo_float<BF16>(d.x) * 2.f * sqrtf(lo_float<BF16>(yy.x)),
                                hi_float<BF16>(d.x) * 2.f * sqrtf(hi_float<BF16>(yy.x)));
            o.y = pack_rn<BF16>(lo_float<BF16>(d.y) * 2.f * sqrtf(lo_float<BF16>(yy.y)),
                                hi_float<BF16>(d.y) * 2.f * sqrtf(hi_float<BF16>(yy.y)));
            st8(dh + 4 * i, o.x, o.y);
        }
    } else {
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
            dh[i] = round_one<BF16>(to_float<BF16>(dy[i]) * 2.f * sqrtf(to_float<BF16>(y[i])));
    }
}

// ---- launch helpers ---------------------------------------------------------------------------------------

// Blocks for a persistent kernel over `units`: one wave of resident blocks (or fewer units). The
// occupancy of each kernel is looked up once per device.
template <class Kernel>
int persistent_grid(Kernel kernel, int64_t units, std::atomic<int>* cache, const char* what) {
    int dev = 0;
    check(cudaGetDevice(&dev), what);
    int per_sm = dev < kMaxDevices ? cache[dev].load(std::memory_order_relaxed) : 0;
    if (per_sm == 0) {
        per_sm = blocks_per_sm(kernel, kThreads, 0, what);
        if (dev < kMaxDevices) cache[dev].store(per_sm, std::memory_order_relaxed);
    }
    return (int)std::min<int64_t>(units, (int64_t)per_sm * device_sms(what));
}

int generic_grid(int64_t n) { return (int)std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, kThreads), 8192)); }

template <bool BF16, int OP, int LAYOUT, bool VEC16, bool KEEP_ALL, bool COUNT>
void run_select(const RowArgs& a, cudaStream_t stream, const char* what) {
    static std::atomic<int> cache[kMaxDevices];
    auto kernel = rowwise_select_kernel<BF16, OP, LAYOUT, VEC16, KEEP_ALL, COUNT>;
    const int grid = persistent_grid(kernel, a.units, cache, what);
    kernel<<<grid, kThreads, 0, stream>>>(a);
    check_launch(what);
}

template <bool BF16, int OP>
void dispatch_select(int64_t rows, int64_t cols, const void* in, bool keep_all, s24_layout layout, void* out,
                     int32_t* col_counts, int64_t* totals, cudaStream_t stream, const char* what) {
    RowArgs a;
    a.in = static_cast<const uint16_t*>(in);
    a.out = static_cast<uint8_t*>(out);
    a.rows = rows;
    a.cols = cols;
    a.col_counts = col_counts;
    a.totals = reinterpret_cast<unsigned long long*>(totals);
    a.row_tiles = ceil_div(rows, kUnitRows);
    a.units = a.row_tiles * ceil_div(cols, kUnitCols);
    const bool count = OP == OP_RELU2 && (col_counts || totals);
    const bool fast = aligned(in, 16) && aligned(out, 16);
    if (!fast) {
        int64_t n;
        if (layout == S24_LAYOUT_DENSE) n = rows * (cols / 4);
        else if (layout == S24_LAYOUT_ROW) n = rows * row_layout_meta_stride(cols);
        else n = rows / 2 * (cols / 4);
        rowwise_generic_kernel<BF16, OP><<<generic_grid(n), kThreads, 0, stream>>>(
            a.in, a.out, rows, cols, layout, keep_all, col_counts, a.totals, n);
        check_launch(what);
        return;
    }
    const bool vec16 = cols % 8 == 0;
    if constexpr (OP == OP_RELU2) {
        if (keep_all) {
            if (vec16) {
                if (count) run_select<BF16, OP, S24_LAYOUT_DENSE, true, true, true>(a, stream, what);
                else run_select<BF16, OP, S24_LAYOUT_DENSE, true, true, false>(a, stream, what);
            } else {
                if (count) run_select<BF16, OP, S24_LAYOUT_DENSE, false, true, true>(a, stream, what);
                else run_select<BF16, OP, S24_LAYOUT_DENSE, false, true, false>(a, stream, what);
            }
            return;
        }
    }
    constexpr bool C = OP == OP_RELU2;  // counting variants exist only for the forward
    switch (layout) {
        case S24_LAYOUT_CUSPARSELT:
            if (count) run_select<BF16, OP, S24_LAYOUT_CUSPARSELT, true, false, C>(a, stream, what);
            else run_select<BF16, OP, S24_LAYOUT_CUSPARSELT, true, false, false>(a, stream, what);
            break;
        case S24_LAYOUT_ROW:
            if (vec16) {
                if (count) run_select<BF16, OP, S24_LAYOUT_ROW, true, false, C>(a, stream, what);
                else run_select<BF16, OP, S24_LAYOUT_ROW, true, false, false>(a, stream, what);
            } else {
                if (count) run_select<BF16, OP, S24_LAYOUT_ROW, false, false, C>(a, stream, what);
                else run_select<BF16, OP, S24_LAYOUT_ROW, false, false, false>(a, stream, what);
            }
            break;
        default:
            if (vec16) {
                if (count) run_select<BF16, OP, S24_LAYOUT_DENSE, true, false, C>(a, stream, what);
                else run_select<BF16, OP, S24_LAYOUT_DENSE, true, false, false>(a, stream, what);
            } else {
                if (count) run_select<BF16, OP, S24_LAYOUT_DENSE, false, false, C>(a, stream, what);
                else run_select<BF16, OP, S24_LAYOUT_DENSE, false, false, false>(a, stream, what);
            }
            break;
    }
}

template <bool BF16, int LAYOUT, bool VEC16, bool GRAD>
void run_consumer(const ConsumerArgs& a, cudaStream_t stream, const char* what) {
    static std::atomic<int> cache[kMaxDevices];
    auto kernel = consumer_kernel<BF16, LAYOUT, VEC16, GRAD>;
    const int grid = persistent_grid(kernel, a.units, cache, what);
    kernel<<<grid, kThreads, 0, stream>>>(a);
    check_launch(what);
}

template <bool BF16, bool GRAD>
void dispatch_consumer(int64_t rows, int64_t cols, const void* packed, const void* dy, s24_layout layout, void* out,
                       cudaStream_t stream, const char* what) {
    ConsumerArgs a;
    a.packed = static_cast<const uint8_t*>(packed);
    a.dy = static_cast<const uint16_t*>(dy);
    a.out = static_cast<uint8_t*>(out);
    a.rows = rows;
    a.cols = cols;
    a.row_tiles = ceil_div(rows, kUnitRows);
    a.units = a.row_tiles * ceil_div(cols, kUnitCols);
    const bool fast = aligned(packed, 16) && aligned(out, 16) && (!GRAD || aligned(dy, 16));
    if (!fast) {
        const int64_t meta_bytes =
            layout == S24_LAYOUT_ROW ? rows * row_layout_meta_stride(cols) : rows * cols / 8;
        consumer_generic_kernel<BF16, GRAD><<<generic_grid(rows * (cols / 4)), kThreads, 0, stream>>>(
            a.packed, a.dy, a.out, rows, cols, layout, meta_bytes);
        check_launch(what);
        return;
    }
    if (layout == S24_LAYOUT_CUSPARSELT) {
        run_consumer<BF16, S24_LAYOUT_CUSPARSELT, true, GRAD>(a, stream, what);
    } else if (cols % 8 == 0) {
        run_consumer<BF16, S24_LAYOUT_ROW, true, GRAD>(a, stream, what);
    } else {
        run_consumer<BF16, S24_LAYOUT_ROW, false, GRAD>(a, stream, what);
    }
}

}  // namespace

void launch_sparsify24_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* h, bool keep_all,
                            s24_layout layout, void* packed, int32_t* col_counts, int64_t* totals,
                            cudaStream_t stream) {
    const char* what = "launch_sparsify24_rows";
    if (col_counts) check(cudaMemsetAsync(col_counts, 0, (size_t)cols * sizeof(int32_t), stream), what);
    if (totals) check(cudaMemsetAsync(totals, 0, 2 * sizeof(int64_t), stream), what);
    if (rows <= 0 || cols <= 0) return;
    if (keep_all) layout = S24_LAYOUT_DENSE;
    if (dtype == S24_BF16)
        dispatch_select<true, OP_RELU2>(rows, cols, h, keep_all, layout, packed, col_counts, totals, stream, what);
    else
        dispatch_select<false, OP_RELU2>(rows, cols, h, keep_all, layout, packed, col_counts, totals, stream, what);
}

void launch_compress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dense, s24_layout layout,
                       void* packed, cudaStream_t stream) {
    const char* what = "launch_compress24";
    if (rows <= 0 || cols <= 0) return;
    if (dtype == S24_BF16)
        dispatch_select<true, OP_ABS>(rows, cols, dense, false, layout, packed, nullptr, nullptr, stream, what);
    else
        dispatch_select<false, OP_ABS>(rows, cols, dense, false, layout, packed, nullptr, nullptr, stream, what);
}

void launch_decompress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* packed, s24_layout layout,
                         void* dense, cudaStream_t stream) {
    const char* what = "launch_decompress24";
    if (rows <= 0 || cols <= 0) return;
    if (layout == S24_LAYOUT_DENSE) {
        if (dense != packed)
            check(cudaMemcpyAsync(dense, packed, (size_t)(rows * cols) * 2, cudaMemcpyDeviceToDevice, stream), what);
        return;
    }
    if (dtype == S24_BF16) dispatch_consumer<true, false>(rows, cols, packed, nullptr, layout, dense, stream, what);
    else dispatch_consumer<false, false>(rows, cols, packed, nullptr, layout, dense, stream, what);
}

void launch_masked_grad24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dy, const void* y_packed,
                          s24_layout layout, void* dh_packed, cudaStream_t stream) {
    const char* what = "launch_masked_grad24";
    if (rows <= 0 || cols <= 0) return;
    if (layout == S24_LAYOUT_DENSE) {
        const int64_t n = rows * cols;
        const bool vec = aligned(dy, 8) && aligned(y_packed, 8) && aligned(dh_packed, 8) && n % 4 == 0;
        const int grid = generic_grid(vec ? n / 4 : n);
        const auto* d = static_cast<const uint16_t*>(dy);
        const auto* y = static_cast<const uint16_t*>(y_packed);
        auto* o = static_cast<uint16_t*>(dh_packed);
        if (dtype == S24_BF16) {
            if (vec) grad_dense_kernel<true, true><<<grid, kThreads, 0, stream>>>(d, y, o, n);
            else grad_dense_kernel<true, false><<<grid, kThreads, 0, stream>>>(d, y, o, n);
        } else {
            if (vec) grad_dense_kernel<false, true><<<grid, kThreads, 0, stream>>>(d, y, o, n);
            else grad_dense_kernel<false, false><<<grid, kThreads, 0, stream>>>(d, y, o, n);
        }
        check_launch(what);
        return;
    }
    if (dtype == S24_BF16) dispatch_consumer<true, true>(rows, cols, y_packed, dy, layout, dh_packed, stream, what);
    else dispatch_consumer<false, true>(rows, cols, y_packed, dy, layout, dh_packed, stream, what);
}

}  // namespace cuda
}  // namespace s24
