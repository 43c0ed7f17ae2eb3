// The row-wise unpacking shared by decompress24 (packed -> dense) and masked_grad24 (dh = dy * 2 sqrt(y)
// on y's kept positions, packed like y): the kernel bodies and their arguments.
//
// Fast path (16-byte aligned pointers): the unit / thread mapping of rows_select.cuh (64 x 128 units,
// rows r and r + 8 of a slab per thread), the next unit's loads in flight during this one. Each thread
// reads the 4-byte metadata word that holds its two groups for rows r and r+8 and expands each packed
// pair with one prmt from a nibble-indexed table (the second position wins on a malformed nibble, like
// the CPU), or gathers dy at the kept positions with one prmt; grad copies the metadata words it read.
// Generic path (any alignment): one thread per group, scalar accesses.
#pragma once

#include "cuda/kernels/rows_select.cuh"

namespace s24 {
namespace cuda {
namespace detail {

struct UnpackArgs {
    const uint8_t* packed;  // y (grad) or the packed source (decompress)
    const uint16_t* dy;     // grad only
    uint8_t* out;           // dense (decompress) or dh packed (grad)
    int64_t rows, cols, row_tiles, units;
};

// One thread's data of a unit: packed values, metadata (ROW: the byte of each row; CUSPARSELT: the
// two words of rows r8a, r8a + 1 holding this thread's nibbles), dy (grad).
template <bool GRAD>
struct UnpackData {
    uint32_t v[4][2];
    uint32_t m[4];
    uint32_t dyw[GRAD ? 4 : 1][4];
};

inline UnpackArgs unpack_args(int64_t rows, int64_t cols, const void* packed, const void* dy, void* out) {
    UnpackArgs a;
    a.packed = static_cast<const uint8_t*>(packed);
    a.dy = static_cast<const uint16_t*>(dy);
    a.out = static_cast<uint8_t*>(out);
    a.rows = rows;
    a.cols = cols;
    a.row_tiles = ceil_div(rows, kUnitRows);
    a.units = a.row_tiles * ceil_div(cols, kUnitCols);
    return a;
}

// Store (masked_grad24): dh of one row's chunk (2 groups) at the kept positions: dy gathered by the
// nibble, times 2 sqrt(y), rounded once.
template <bool BF16, bool VEC16>
__device__ __forceinline__ void store_masked_grad_row(uint8_t* p, const uint32_t (&nib)[2], const uint32_t (&v)[2],
                                                      const uint32_t (&dyw)[4], const uint4* s_unpack, bool bvalid) {
    uint32_t dh[2];
#pragma unroll
    for (int g = 0; g < 2; ++g) {
        const uint32_t gs = s_unpack[nib[g]].z;
        const uint32_t dyp = prmt(dyw[2 * g], dyw[2 * g + 1], gs);  // dy at the kept positions
        const float y0 = lo_float<BF16>(v[g]), y1 = hi_float<BF16>(v[g]);
        const float g0 = lo_float<BF16>(dyp) * 2.f * sqrtf(y0);
        const float g1 = hi_float<BF16>(dyp) * 2.f * sqrtf(y1);
        dh[g] = pack_rn<BF16>(g0, g1);
    }
    if constexpr (VEC16) {
        st8(p, dh[0], dh[1]);
    } else {
        *reinterpret_cast<uint32_t*>(p) = dh[0];
        if (bvalid) *reinterpret_cast<uint32_t*>(p + 4) = dh[1];
    }
}

// Store (decompress24): one row's chunk (2 groups) expanded to 8 dense elements.
template <bool VEC16>
__device__ __forceinline__ void store_decompressed_row(uint16_t* p, const uint32_t (&nib)[2], const uint32_t (&v)[2],
                                                       const uint4* s_unpack, bool bvalid) {
    uint32_t d[4];
#pragma unroll
    for (int g = 0; g < 2; ++g) {
        const uint4 e = s_unpack[nib[g]];
        d[2 * g] = prmt(v[g], 0u, e.x);
        d[2 * g + 1] = prmt(v[g], 0u, e.y);
    }
    if constexpr (VEC16) {
        st16(p, d[0], d[1], d[2], d[3]);
    } else {
        st8(p, d[0], d[1]);
        if (bvalid) st8(p + 4, d[2], d[3]);
    }
}

// ---- the fast path: this block's units --------------------------------------------------------------------
template <bool BF16, int LAYOUT, bool VEC16, bool GRAD>
__device__ __forceinline__ void unpack_rows(const UnpackArgs& a) {
    __shared__ __align__(16) uint4 s_unpack[16];
    if (threadIdx.x < 16) s_unpack[threadIdx.x] = make_unpack_entry((int)threadIdx.x);
    __syncthreads();

    const int tid = threadIdx.x, cc = tid & 15, q = tid >> 4, j = cc & 3;
    const int slab = q >> 2, r8a = 2 * (q & 3);
    const int64_t rows = a.rows, cols = a.cols;
    const uint8_t* const meta = a.packed + packed16_values_bytes(rows, cols);
    uint8_t* const out_meta = a.out + packed16_values_bytes(rows, cols);
    const int64_t row_stride = row_layout_meta_stride(cols);
    const int64_t ub = (int64_t)blockIdx.x * a.units / gridDim.x;
    const int64_t ue = ((int64_t)blockIdx.x + 1) * a.units / gridDim.x;

    // CUSPARSELT: word (j & 1) of row r8a + kp's 8 metadata bytes holds this thread's groups at bytes
    // j >> 1 and (j >> 1) + 2; low nibbles row r8a + kp (k = kp), high nibbles row + 8 (k = kp + 2).
    // slab * 64 + row * 8 = cusparselt_meta_in_block(16 * slab + row).
    auto meta_off = [&](int64_t rbase, int64_t c0, int kp) -> int64_t {
        return cusparselt_meta_block(rbase / 64, c0 / 4, cols) + slab * 64 + (r8a + kp) * 8 + (j & 1) * 4;
    };
    auto load_unit = [&](UnpackData<GRAD>& x, int64_t u) {
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

    UnpackData<GRAD> cur, nxt;
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
                store_masked_grad_row<BF16, VEC16>(a.out + r * cols + col, nib[k], cur.v[k], cur.dyw[k], s_unpack, bvalid);
            } else {
                store_decompressed_row<VEC16>(reinterpret_cast<uint16_t*>(a.out) + r * cols + col, nib[k], cur.v[k], s_unpack,
                                              bvalid);
            }
        }
        if (u + 1 < ue) cur = nxt;
    }
}

// Generic path: one thread per group, scalar accesses (any alignment); grad copies the metadata
// bytes in a separate loop.
template <bool BF16, bool GRAD>
__device__ __forceinline__ void unpack_rows_generic(const uint8_t* packed, const uint16_t* dy, uint8_t* out, int64_t rows,
                                                    int64_t cols, s24_layout layout, int64_t meta_bytes) {
    const int64_t groups = cols / 4, n = rows * groups;
    const uint8_t* meta = packed + packed16_values_bytes(rows, cols);
    const uint16_t* vals = reinterpret_cast<const uint16_t*>(packed);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / groups, g = i % groups;
        const unsigned nib = (meta[meta_byte(layout, r, g, cols)] >> meta_shift(layout, r, g)) & 0xfu;
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

}  // namespace detail
}  // namespace cuda
}  // namespace s24
