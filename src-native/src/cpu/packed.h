// Host access to tensors of the three dtypes and to 2:4 matrices in the three layouts (sparse24.h,
// s24_layout), for the CPU reference backend.
//
// Elements are handled either as raw storage bits (copies keep the exact bit pattern) or as floats
// (values are read exactly; results are rounded once to the dtype when stored).
#pragma once

#include "half.h"
#include "layout.h"
#include "sparse24.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace s24 {
namespace cpu {

// ---- elements ----------------------------------------------------------------------------------------

// Raw storage bits of element i (zero-extended to 32 bits).
inline uint32_t load_raw(const void* base, s24_dtype dtype, int64_t i) {
    if (dtype == S24_FP32) {
        uint32_t u;
        std::memcpy(&u, static_cast<const uint8_t*>(base) + 4 * i, 4);
        return u;
    }
    uint16_t h;
    std::memcpy(&h, static_cast<const uint8_t*>(base) + 2 * i, 2);
    return h;
}

inline void store_raw(void* base, s24_dtype dtype, int64_t i, uint32_t raw) {
    if (dtype == S24_FP32) {
        std::memcpy(static_cast<uint8_t*>(base) + 4 * i, &raw, 4);
    } else {
        const uint16_t h = (uint16_t)raw;
        std::memcpy(static_cast<uint8_t*>(base) + 2 * i, &h, 2);
    }
}

inline float load(const void* base, s24_dtype dtype, int64_t i) { return decode(load_raw(base, dtype, i), dtype); }

// ---- 2:4 nibbles ---------------------------------------------------------------------------------------

inline int nibble_first(unsigned nibble) { return (int)(nibble & 3U); }
inline int nibble_second(unsigned nibble) { return (int)((nibble >> 2) & 3U); }

// ---- packed matrices -------------------------------------------------------------------------------------

// A [rows, cols] 2:4 matrix in `layout` (cols % 4 == 0 for packed layouts).
class PackedView {
public:
    PackedView(s24_dtype dtype, s24_layout layout, int64_t rows, int64_t cols, const void* data)
        : dtype_(dtype), layout_(layout), rows_(rows), cols_(cols), data_(static_cast<const uint8_t*>(data)) {}

    unsigned nibble(int64_t r, int64_t g) const {
        const uint8_t byte = meta()[meta_byte(r, g)];
        return (byte >> meta_shift(r, g)) & 0xfU;
    }

    // Raw bits of element (r, c); 0 where the 2:4 structure dropped it.
    uint32_t raw(int64_t r, int64_t c) const {
        if (layout_ == S24_LAYOUT_DENSE) return load_raw(data_, dtype_, r * cols_ + c);
        const int64_t g = c / 4;
        const int pos = (int)(c % 4);
        const unsigned nib = nibble(r, g);
        const int64_t slot = r * (cols_ / 2) + 2 * g;
        if (pos == nibble_second(nib)) return load_raw(data_, dtype_, slot + 1);  // second wins if malformed
        if (pos == nibble_first(nib)) return load_raw(data_, dtype_, slot);
        return 0;
    }

    float value(int64_t r, int64_t c) const { return decode(raw(r, c), dtype_); }

    int64_t meta_byte(int64_t r, int64_t g) const { return s24::meta_byte(layout_, r, g, cols_); }
    int meta_shift(int64_t r, int64_t g) const { return s24::meta_shift(layout_, r, g); }
    int64_t values_bytes() const { return (int64_t)packed_values_bytes(layout_, dtype_size(dtype_), rows_, cols_); }
    const uint8_t* meta() const { return data_ + values_bytes(); }

protected:
    s24_dtype dtype_;
    s24_layout layout_;
    int64_t rows_, cols_;
    const uint8_t* data_;
};

// Writes a [rows, cols] 2:4 matrix in `layout` group by group. For packed layouts call clear_meta() on
// the whole metadata first; write_group() then ORs each nibble in (so unused nibbles stay 0).
class PackedWriter : public PackedView {
public:
    PackedWriter(s24_dtype dtype, s24_layout layout, int64_t rows, int64_t cols, void* data)
        : PackedView(dtype, layout, rows, cols, data), out_(static_cast<uint8_t*>(data)) {}

    void clear_meta() {
        const size_t bytes = packed_meta_bytes(layout_, rows_, cols_);
        if (bytes > 0) std::memset(out_ + values_bytes(), 0, bytes);
    }

    // Group g of row r keeps raw0 at column 4g + first(nibble) and raw1 at 4g + second(nibble).
    // DENSE writes the pruned group (zeros elsewhere; columns past cols are skipped).
    void write_group(int64_t r, int64_t g, unsigned nibble, uint32_t raw0, uint32_t raw1) {
        if (layout_ == S24_LAYOUT_DENSE) {
            for (int j = 0; j < 4; ++j) {
                const int64_t c = 4 * g + j;
                if (c >= cols_) break;
                const uint32_t v = j == nibble_second(nibble) ? raw1 : j == nibble_first(nibble) ? raw0 : 0;
                store_raw(out_, dtype_, r * cols_ + c, v);
            }
            return;
        }
        const int64_t slot = r * (cols_ / 2) + 2 * g;
        store_raw(out_, dtype_, slot, raw0);
        store_raw(out_, dtype_, slot + 1, raw1);
        out_[values_bytes() + meta_byte(r, g)] |= (uint8_t)((nibble & 0xfU) << meta_shift(r, g));
    }

private:
    uint8_t* out_;
};

}  // namespace cpu
}  // namespace s24
