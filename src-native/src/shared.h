// Arithmetic shared by the CPU and CUDA backends, so that both compute exactly the same function:
// the 2:4 selection rule and the token permutation (the packed layouts: layout.h).
#pragma once

#include "layout.h"

#include <cstdint>

namespace s24 {

// ---- the 2:4 selection rule -------------------------------------------------------------------------
// Of 4 scores (relu(h) for the forward, |v| elsewhere) keep the 2 largest. NaN ranks above every number
// (+Inf included), so a NaN in a group is always kept and propagates like in the dense computation.
// Ties (equal numbers, or two NaNs) go to the lower index: the choice is always exactly 2 and deterministic.
// Returns the nibble: bits 0-1 first kept index, bits 2-3 second (first < second).
S24_HD bool outranks24(float a, int ia, float b, int ib) {
    const bool nan_a = a != a, nan_b = b != b;
    if (nan_a != nan_b) return nan_a;
    if (nan_a || a == b) return ia < ib;
    return a > b;
}

S24_HD unsigned select24(float s0, float s1, float s2, float s3) {
    const float s[4] = {s0, s1, s2, s3};
    unsigned nibble = 0, kept = 0;
S24_UNROLL
    for (int i = 0; i < 4; ++i) {
        int beaten = 0;  // entries that outrank i
S24_UNROLL
        for (int j = 0; j < 4; ++j) beaten += (j != i && outranks24(s[j], j, s[i], i)) ? 1 : 0;
        if (beaten < 2) { nibble |= (unsigned)i << (2 * kept); ++kept; }
    }
    return nibble;
}

// ---- the token permutation -----------------------------------------------------------------------
// A keyed 4-round Feistel network on the smallest even-bit power-of-two domain >= tokens, restricted to
// [0, tokens) by cycle walking: a bijection computable independently for each index, on CPU and GPU.
S24_HD uint32_t mix32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
    return x;
}
S24_HD uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct Permutation {
    uint32_t keys[4];
    uint32_t half_bits;  // each Feistel half has this many bits
    uint32_t tokens;
};

S24_HD Permutation make_permutation(uint64_t seed, int64_t step, int64_t tokens) {
    Permutation p;
    uint64_t k = splitmix64(seed ^ splitmix64((uint64_t)step + 0x24ULL));
    uint64_t k2 = splitmix64(k);
    p.keys[0] = (uint32_t)k; p.keys[1] = (uint32_t)(k >> 32);
    p.keys[2] = (uint32_t)k2; p.keys[3] = (uint32_t)(k2 >> 32);
    uint32_t bits = 2;
    while (bits < 62 && (1ULL << bits) < (uint64_t)tokens) bits += 2;
    p.half_bits = bits / 2;
    p.tokens = (uint32_t)tokens;
    return p;
}

S24_HD uint32_t permute_index(const Permutation& p, uint32_t i) {
    const uint32_t mask = (1U << p.half_bits) - 1U;
    uint32_t x = i;
    do {
        uint32_t l = x >> p.half_bits, r = x & mask;
S24_UNROLL
        for (int round = 0; round < 4; ++round) {
            uint32_t f = mix32(r ^ p.keys[round]) & mask;
            uint32_t nl = r;
            r = l ^ f;
            l = nl;
        }
        x = (l << p.half_bits) | r;
    } while (x >= p.tokens);
    return x;
}

}  // namespace s24
