// Host conversions between float and the storage types (bf16, fp16; fp32 bits as they are).
// float -> 16 bit rounds to nearest, ties to even; overflow gives infinity; NaN stays NaN (quieted,
// sign and the top payload bits kept). 16 bit -> float is exact.
#pragma once

#include "sparse24.h"

#include <cstdint>
#include <cstring>

namespace s24 {

inline uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline float bits_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// ---- bf16: the top 16 bits of a float ----------------------------------------------------------------

inline float bf16_to_float(uint16_t h) { return bits_float((uint32_t)h << 16); }

inline uint16_t float_to_bf16(float f) {
    const uint32_t u = float_bits(f);
    if ((u & 0x7fffffffU) > 0x7f800000U) return (uint16_t)((u >> 16) | 0x0040U);  // NaN: keep it quiet
    // Round to nearest even on the 16 dropped bits; a carry into the exponent (up to infinity) is right.
    const uint32_t bias = 0x7fffU + ((u >> 16) & 1U);
    return (uint16_t)((u + bias) >> 16);
}

// ---- fp16: 1 sign, 5 exponent (bias 15), 10 mantissa bits ---------------------------------------------

inline float fp16_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000U) << 16;
    const uint32_t exp = (h >> 10) & 0x1fU;
    const uint32_t mant = h & 0x3ffU;
    if (exp == 0x1fU) return bits_float(sign | 0x7f800000U | (mant << 13));  // inf / NaN
    if (exp != 0) return bits_float(sign | ((exp + 112U) << 23) | (mant << 13));
    // Zero or subnormal: mant * 2^-24, exact in float.
    const float magnitude = (float)mant * (1.0f / 16777216.0f);
    return sign ? -magnitude : magnitude;
}

inline uint16_t float_to_fp16(float f) {
    const uint32_t u = float_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000U);
    const uint32_t x = u & 0x7fffffffU;
    if (x > 0x7f800000U) return (uint16_t)(sign | 0x7e00U | ((x >> 13) & 0x3ffU));  // NaN, quiet
    if (x >= 0x477ff000U) return (uint16_t)(sign | 0x7c00U);  // >= 65520 (and inf) rounds to inf
    if (x >= 0x38800000U) {
        // Normal result: rebias the exponent (127 -> 15), round the 13 dropped bits to nearest even.
        const uint32_t v = x - 0x38000000U;
        return (uint16_t)(sign | ((v + 0x0fffU + ((v >> 13) & 1U)) >> 13));
    }
    // Subnormal (or zero) result: round mant24 * 2^(exp-126) to an integer count of 2^-24.
    const uint32_t exp = x >> 23;
    if (exp < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself is a tie to even zero)
    const uint32_t mant = (x & 0x7fffffU) | 0x800000U;
    const uint32_t shift = 126U - exp;  // 14..24
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1U << shift) - 1U);
    const uint32_t half = 1U << (shift - 1U);
    if (rem > half || (rem == half && (q & 1U))) ++q;  // may carry into the smallest normal: correct
    return (uint16_t)(sign | q);
}

// ---- any dtype: raw storage bits (zero-extended to 32) <-> float -----------------------------------------

// Value of raw bits (exact).
inline float decode(uint32_t raw, s24_dtype dtype) {
    switch (dtype) {
        case S24_BF16: return bf16_to_float((uint16_t)raw);
        case S24_FP16: return fp16_to_float((uint16_t)raw);
        default: return bits_float(raw);
    }
}

// Raw bits of the dtype value nearest to f (round to nearest even).
inline uint32_t encode(float f, s24_dtype dtype) {
    switch (dtype) {
        case S24_BF16: return float_to_bf16(f);
        case S24_FP16: return float_to_fp16(f);
        default: return float_bits(f);
    }
}

}  // namespace s24
