// The dtypes and the packed 2:4 layouts (sparse24.h, s24_layout), for host and device code: element
// sizes and names, the shape rules, the packed sizes and the metadata address of (row, group).
// The front end, both backends and every kernel use these; the tests keep their own copies as oracle.
#pragma once

#include "sparse24.h"

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define S24_HD __host__ __device__ __forceinline__
#define S24_UNROLL _Pragma("unroll")
#else
#define S24_HD inline
#define S24_UNROLL
#endif

namespace s24 {

// ---- dtypes ------------------------------------------------------------------------------------------

// Bytes per element; 0 for an unknown dtype.
S24_HD int64_t dtype_size(s24_dtype dtype) {
    return dtype == S24_FP32 ? 4 : dtype == S24_BF16 || dtype == S24_FP16 ? 2 : 0;
}

inline const char* dtype_name(s24_dtype dtype) {
    switch (dtype) {
        case S24_FP32: return "FP32";
        case S24_BF16: return "BF16";
        case S24_FP16: return "FP16";
    }
    return "unknown dtype";
}

inline const char* layout_name(s24_layout layout) {
    switch (layout) {
        case S24_LAYOUT_DENSE: return "DENSE";
        case S24_LAYOUT_ROW: return "ROW";
        case S24_LAYOUT_CUSPARSELT: return "CUSPARSELT";
    }
    return "unknown layout";
}

// ---- shape rules -------------------------------------------------------------------------------------
// Every 2:4 matrix [rows, cols] has its groups of 4 along cols (cols % 4 == 0). CUSPARSELT holds 16-bit
// values in whole 64x32 metadata blocks: rows and cols multiples of 64.

constexpr int64_t kCusparseltMultiple = 64;

S24_HD bool cusparselt_shape(int64_t rows, int64_t cols) {
    return rows % kCusparseltMultiple == 0 && cols % kCusparseltMultiple == 0;
}

// Columns of sparsify24_cols_split's output [features, tokens]: ROW pads the tokens to whole groups.
S24_HD int64_t split_out_cols(s24_layout out_layout, int64_t tokens) {
    return out_layout == S24_LAYOUT_ROW ? (tokens + 3) / 4 * 4 : tokens;
}

// ---- sizes -------------------------------------------------------------------------------------------
// Packed layouts: values row-major [rows, cols/2], then the metadata. DENSE: [rows, cols], no metadata.

// Bytes of metadata per row in S24_LAYOUT_ROW (one nibble per group, two groups a byte).
S24_HD int64_t row_layout_meta_stride(int64_t cols) { return (cols / 4 + 1) / 2; }

// The kernels' form of packed_values_bytes: 16-bit values, cols % 4 == 0 (cols/2 values of 2 bytes a row).
S24_HD int64_t packed16_values_bytes(int64_t rows, int64_t cols) { return rows * cols; }

// Sizes in size_t: a DENSE FP32 matrix of two dimensions near 2^31 exceeds int64.
S24_HD size_t packed_values_bytes(s24_layout layout, int64_t elem, int64_t rows, int64_t cols) {
    return (size_t)rows * (size_t)(layout == S24_LAYOUT_DENSE ? cols : cols / 2) * (size_t)elem;
}

S24_HD size_t packed_meta_bytes(s24_layout layout, int64_t rows, int64_t cols) {
    return layout == S24_LAYOUT_ROW ? (size_t)rows * (size_t)row_layout_meta_stride(cols)
           : layout == S24_LAYOUT_CUSPARSELT ? (size_t)rows * (size_t)cols / 8
                                             : 0;
}

S24_HD size_t packed_bytes(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols) {
    return packed_values_bytes(layout, dtype_size(dtype), rows, cols) + packed_meta_bytes(layout, rows, cols);
}

// Rows whose metadata shares no byte with rows outside their aligned block: work split over rows that
// writes metadata splits only at multiples of this.
S24_HD int64_t meta_row_block(s24_layout layout) { return layout == S24_LAYOUT_CUSPARSELT ? 64 : 1; }

// ---- metadata address of group g (columns 4g..4g+3) of row r: byte offset within the metadata and
// nibble shift (0 or 4) ---------------------------------------------------------------------------------

// ROW: byte (r, g/2), group g in the low nibble for even g.
S24_HD int64_t row_layout_meta_byte(int64_t r, int64_t g, int64_t cols) {
    return r * row_layout_meta_stride(cols) + g / 2;
}
S24_HD int row_layout_meta_shift(int64_t /*r*/, int64_t g) { return (int)(g & 1) * 4; }

// CUSPARSELT (cuSPARSELt's order): blocks of 64 rows x 32 columns (8 groups) take 256 bytes, row blocks
// of 8 * cols bytes; inside a block, 16-row slabs of 64 bytes; in a slab, rows r and r + 8 share 8 bytes
// (row r % 16 < 8 the low nibbles, r + 8 the high ones), group g at byte cusparselt_meta_pos(g % 8).

// First byte of block (row_block = r / 64, col_block = column / 32).
S24_HD int64_t cusparselt_meta_block(int64_t row_block, int64_t col_block, int64_t cols) {
    return row_block * 8 * cols + col_block * 256;
}
// First of row r's 8 bytes inside its block: (slab = r % 64 / 16) * 64 + (r % 8) * 8.
S24_HD int64_t cusparselt_meta_in_block(int64_t r) { return ((r % 64) / 16) * 64 + (r % 8) * 8; }
// Position of group g8 = g % 8 in those 8 bytes.
S24_HD int cusparselt_meta_pos(int g8) { return (g8 % 4) * 2 + g8 / 4; }

S24_HD int64_t cusparselt_meta_byte(int64_t r, int64_t g, int64_t cols) {
    return cusparselt_meta_block(r / 64, g / 8, cols) + cusparselt_meta_in_block(r) + cusparselt_meta_pos((int)(g % 8));
}
S24_HD int cusparselt_meta_shift(int64_t r, int64_t /*g*/) { return (int)((r % 16) / 8) * 4; }

// Either layout (not DENSE).
S24_HD int64_t meta_byte(s24_layout layout, int64_t r, int64_t g, int64_t cols) {
    return layout == S24_LAYOUT_CUSPARSELT ? cusparselt_meta_byte(r, g, cols) : row_layout_meta_byte(r, g, cols);
}
S24_HD int meta_shift(s24_layout layout, int64_t r, int64_t g) {
    return layout == S24_LAYOUT_CUSPARSELT ? cusparselt_meta_shift(r, g) : row_layout_meta_shift(r, g);
}

}  // namespace s24
