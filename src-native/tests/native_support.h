// Shared by the native self-check, benchmark and breakdown (s24_native_check): check reporting, host
// 16-bit conversions written independently of the library's, the FFN option sets checked, random inputs,
// buffers in a context's memory, CUDA-event timing. Through the C API only.
#pragma once

#include "sparse24.h"
#include "sparse_w1_mean.h"

#include <algorithm>
#include <cstdarg>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace s24test {

inline int failures = 0;
inline int checks = 0;
inline int nan_failures = 0;  // failed checks labelled [NaN semantics]

inline void report(bool ok, const std::string& what, const std::string& detail = "") {
    ++checks;
    if (!ok) ++failures;
    if (!ok && what.find("[NaN semantics]") != std::string::npos) ++nan_failures;
    std::printf("%s  %s%s%s\n", ok ? "ok  " : "FAIL", what.c_str(), detail.empty() ? "" : "  ", detail.c_str());
    std::fflush(stdout);
}

#define S24_TRY(call)                                                                                      \
    do {                                                                                                   \
        s24_status st_ = (call);                                                                           \
        if (st_ != S24_OK) {                                                                               \
            std::fprintf(stderr, "%s:%d %s -> %s: %s\n", __FILE__, __LINE__, #call, s24_status_name(st_), \
                         s24_last_error());                                                                \
            throw std::runtime_error(s24_last_error());                                                    \
        }                                                                                                  \
    } while (0)

// ---- host 16-bit conversions (independent of the library's) ---------------------------------------
inline uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float from_fp16(uint16_t h) {
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0) v = std::ldexp((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = std::ldexp((float)(man | 0x400), (int)exp - 25);
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u |= sign;
    std::memcpy(&v, &u, 4);
    return v;
}
inline uint16_t to_fp16(float f) {  // round-to-nearest-even via float arithmetic on the mantissa
    if (std::isnan(f)) return 0x7e00;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    float a = std::fabs(f);
    if (a >= 65520.f) return sign | 0x7c00;
    if (a < std::ldexp(1.f, -14)) {  // subnormal: multiples of 2^-24
        float q = std::nearbyint(a * std::ldexp(1.f, 24));
        return sign | (uint16_t)q;
    }
    int e;
    std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
    float q = std::nearbyint(std::ldexp(a, 11 - e));  // 11 significant bits
    if (q >= 2048.f) { q /= 2; ++e; }
    uint16_t exp = (uint16_t)(e - 1 + 15);
    return sign | (uint16_t)(exp << 10) | (uint16_t)((uint32_t)q & 0x3ff);
}

struct Host16 {
    s24_dtype dtype;
    std::vector<uint16_t> bits;
    float at(size_t i) const { return dtype == S24_BF16 ? from_bf16(bits[i]) : from_fp16(bits[i]); }
};

// The FFN option sets the checks run: the defaults (split backward, permuted tokens), the split without the
// permutation, the exact backward, and dense throughout.
struct FfnVariants {
    s24_ffn_options split, unpermuted, exact, dense;
};
inline FfnVariants ffn_variants() {
    FfnVariants v;
    s24_ffn_options_default(&v.split);
    s24_ffn_options_default(&v.unpermuted);
    v.unpermuted.permute_tokens = 0;
    s24_ffn_options_default(&v.exact);
    v.exact.sparse_backward = 0;
    s24_ffn_options_default(&v.dense);
    v.dense.sparse_forward = 0;
    v.dense.sparse_backward = 0;
    return v;
}

// Normal random 16-bit values (never zero). Beyond 2^22 elements a random block is tiled (for the
// benchmark's large inputs; drawing 10^8 normals on the host would dominate the run).
inline Host16 random16(s24_dtype dtype, size_t n, std::mt19937& rng, float stddev = 1.f, float shift = 0.f) {
    std::normal_distribution<float> dist(shift, stddev);
    Host16 h{dtype, std::vector<uint16_t>(n)};
    const size_t block = std::min<size_t>(n, size_t(1) << 22);
    for (size_t i = 0; i < block; ++i) {
        float v = dist(rng);
        if (v == 0.f) v = 1e-3f;  // never zeros
        h.bits[i] = dtype == S24_BF16 ? to_bf16(v) : to_fp16(v);
    }
    for (size_t i = block; i < n; i += block) std::memcpy(&h.bits[i], &h.bits[0], std::min(block, n - i) * 2);
    return h;
}

// ---- device buffers ---------------------------------------------------------------------------------
struct Buffer {
    s24_context* ctx = nullptr;
    void* ptr = nullptr;
    size_t bytes = 0;
    Buffer(s24_context* c, size_t n) : ctx(c), bytes(n) { S24_TRY(s24_malloc(c, n ? n : 1, &ptr)); }
    Buffer(s24_context* c, const void* host, size_t n) : Buffer(c, n) {
        S24_TRY(s24_memcpy(c, ptr, host, n, S24_COPY_HOST_TO_CONTEXT));
    }
    ~Buffer() { s24_free(ctx, ptr); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    void poison() { S24_TRY(s24_memset(ctx, ptr, 0xA5, bytes)); }
    std::vector<uint8_t> bytes_back() const {
        std::vector<uint8_t> out(bytes);
        S24_TRY(s24_memcpy(ctx, out.data(), ptr, bytes, S24_COPY_CONTEXT_TO_HOST));
        return out;
    }
    template <class T>
    std::vector<T> back() const {
        std::vector<T> out(bytes / sizeof(T));
        S24_TRY(s24_memcpy(ctx, out.data(), ptr, out.size() * sizeof(T), S24_COPY_CONTEXT_TO_HOST));
        return out;
    }
};

inline size_t packed_size(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols) {
    size_t bytes = 0;
    S24_TRY(s24_packed_size(layout, dtype, rows, cols, &bytes));
    return bytes;
}

inline std::vector<float> as_floats(const std::vector<uint8_t>& raw, s24_dtype dtype) {
    std::vector<float> out(raw.size() / 2);
    for (size_t i = 0; i < out.size(); ++i) {
        uint16_t b;
        std::memcpy(&b, raw.data() + 2 * i, 2);
        out[i] = dtype == S24_BF16 ? from_bf16(b) : from_fp16(b);
    }
    return out;
}

// ||a - b|| / ||b||, NaN if either holds a NaN/inf.
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return NAN;
        num += (double)(a[i] - b[i]) * (a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

inline size_t count_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    size_t n = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += a[i] != b[i];
    return n + (a.size() > b.size() ? a.size() - b.size() : b.size() - a.size());
}

inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

inline const char* dname(s24_dtype t) { return t == S24_BF16 ? "bf16" : t == S24_FP16 ? "fp16" : "fp32"; }
inline const char* lname(s24_layout l) {
    return l == S24_LAYOUT_DENSE ? "DENSE" : l == S24_LAYOUT_ROW ? "ROW" : "CUSPARSELT";
}

// ---- timing ----------------------------------------------------------------------------------------------
struct Timer {
    s24_context* ctx;
    s24_event *start, *end;
    explicit Timer(s24_context* c) : ctx(c) {
        S24_TRY(s24_event_create(c, &start));
        S24_TRY(s24_event_create(c, &end));
    }
    ~Timer() {
        s24_event_destroy(start);
        s24_event_destroy(end);
    }
    // median of `reps` timings of fn (after `warm` warm-up calls), milliseconds
    double median(const std::function<void(int)>& fn, int warm = 5, int reps = 25) {
        for (int i = 0; i < warm; ++i) fn(i);
        std::vector<float> t(reps);
        for (int i = 0; i < reps; ++i) {
            S24_TRY(s24_event_record(start));
            fn(i);
            S24_TRY(s24_event_record(end));
            S24_TRY(s24_event_elapsed_ms(start, end, &t[i]));
        }
        std::sort(t.begin(), t.end());
        return t[reps / 2];
    }
};

// The programs (one file each).
int run_checks(bool cpu_only, bool ops_only = false);  // native_check.cpp
int run_oracle_checks(s24_context* ctx, bool gpu);  // native_oracle.cpp
int run_bench(const char* json_path);  // native_bench.cpp
int run_breakdown(int64_t T, int64_t d, int64_t f);  // native_breakdown.cpp

}  // namespace s24test
