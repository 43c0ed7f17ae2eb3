// Unit test of the CPU reference backend: CMake builds it as s24_cpu_backend_test (bin/, run by `mvn test`).
// Every check compares the backend with a naive computation written here from the documentation
// (sparse24.h): double precision arithmetic, layouts addressed with the documented formulas, the 2:4
// selection done by sorting. Exits 0 when everything passes.
#include "backend.h"
#include "cpu/parallel.h"
#include "half.h"
#include "shared.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

int g_failures = 0;
int g_checks = 0;

void check(bool ok, const std::string& what) {
    ++g_checks;
    if (ok) return;
    ++g_failures;
    if (g_failures <= 40) std::printf("FAIL: %s\n", what.c_str());
}

std::string fmt(const char* f, double a = 0, double b = 0, double c = 0, double d = 0) {
    char buf[512];
    std::snprintf(buf, sizeof buf, f, a, b, c, d);
    return buf;
}

const char* dtype_name(s24_dtype t) { return t == S24_FP32 ? "fp32" : t == S24_BF16 ? "bf16" : "fp16"; }
const char* layout_name(s24_layout l) {
    return l == S24_LAYOUT_DENSE ? "DENSE" : l == S24_LAYOUT_ROW ? "ROW" : "CUSPARSELT";
}
std::string tag(const char* what, s24_dtype t, s24_layout l, int64_t rows, int64_t cols) {
    return std::string(what) + " " + dtype_name(t) + " " + layout_name(l) + " [" + std::to_string(rows) + "x" +
           std::to_string(cols) + "]";
}

// ---- an independent rounding reference: nearest representable value by search ------------------------

// Every non-negative finite value of a 16-bit format, ascending (pattern = index).
std::vector<double> finite_values(bool bf16) {
    std::vector<double> v;
    for (uint32_t h = 0; h < 0x8000; ++h) {
        int exp_bits = bf16 ? 8 : 5, mant_bits = bf16 ? 7 : 10;
        uint32_t exp = h >> mant_bits, mant = h & ((1U << mant_bits) - 1);
        if (exp == (1U << exp_bits) - 1) break;  // inf / NaN from here on
        int bias = (1 << (exp_bits - 1)) - 1;
        double x = exp == 0 ? std::ldexp((double)mant, 1 - bias - mant_bits)
                            : std::ldexp(1.0 + std::ldexp((double)mant, -mant_bits), (int)exp - bias);
        v.push_back(x);
    }
    return v;
}

// The 16-bit pattern nearest to x (ties to the even pattern, overflow past max + half an ulp to inf).
uint16_t reference_round(double x, const std::vector<double>& values, bool bf16) {
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const uint16_t inf = bf16 ? 0x7f80 : 0x7c00;
    double a = std::fabs(x);
    size_t n = values.size();
    double max = values[n - 1], ulp = max - values[n - 2];
    if (a >= max + ulp / 2) return sign | inf;  // the tie rounds to even = inf (max has an odd pattern)
    size_t hi = std::lower_bound(values.begin(), values.end(), a) - values.begin();
    if (hi < n && values[hi] == a) return sign | (uint16_t)hi;
    size_t lo = hi - 1;
    if (hi == n) return sign | (uint16_t)lo;
    double dlo = a - values[lo], dhi = values[hi] - a;
    if (dlo < dhi) return sign | (uint16_t)lo;
    if (dhi < dlo) return sign | (uint16_t)hi;
    return sign | (uint16_t)((lo % 2 == 0) ? lo : hi);
}

double fp16_value_from_fields(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    double v = exp == 0 ? std::ldexp(mant, -24) : exp == 31 ? (mant ? NAN : INFINITY) : std::ldexp(1024 + mant, exp - 25);
    return sign ? -v : v;
}

bool is_nan_bits16(uint16_t h, bool bf16) {
    return bf16 ? ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) : ((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
}

void test_conversions() {
    const auto bf_values = finite_values(true), fp_values = finite_values(false);

    // Exhaustive 16-bit -> float -> 16-bit round trips (NaN: stays NaN, quieted, sign kept).
    for (uint32_t h = 0; h < 65536; ++h) {
        uint16_t b = (uint16_t)h;
        uint16_t rb = s24::float_to_bf16(s24::bf16_to_float(b));
        uint16_t rf = s24::float_to_fp16(s24::fp16_to_float(b));
        if (is_nan_bits16(b, true))
            check(std::isnan(s24::bf16_to_float(b)) && rb == (b | 0x40), fmt("bf16 NaN round trip %g", h));
        else
            check(rb == b, fmt("bf16 round trip 0x%04x -> 0x%04x", h, rb));
        if (is_nan_bits16(b, false)) {
            check(std::isnan(s24::fp16_to_float(b)) && rf == (b | 0x200), fmt("fp16 NaN round trip 0x%04x", h));
        } else {
            check(rf == b, fmt("fp16 round trip 0x%04x -> 0x%04x", h, rf));
            double ref = fp16_value_from_fields(b);
            check((double)s24::fp16_to_float(b) == ref && std::signbit(ref) == std::signbit(s24::fp16_to_float(b)),
                  fmt("fp16 value 0x%04x", h));
        }
        uint32_t fb = s24::float_bits(s24::bf16_to_float(b));
        check(fb == (h << 16), fmt("bf16 widening 0x%04x", h));
    }

    // float -> 16 bit against the search reference: every 251st float pattern (covers all exponents),
    // plus every float near the halfway points of a few binades.
    auto compare = [&](uint32_t u) {
        float f = s24::bits_float(u);
        if (std::isnan(f)) {
            check(std::isnan(s24::bf16_to_float(s24::float_to_bf16(f))), fmt("bf16 keeps NaN 0x%08x", u));
            check(std::isnan(s24::fp16_to_float(s24::float_to_fp16(f))), fmt("fp16 keeps NaN 0x%08x", u));
            return;
        }
        uint16_t b = s24::float_to_bf16(f), h = s24::float_to_fp16(f);
        uint16_t rb = std::isinf(f) ? (uint16_t)((u >> 16) & 0xff80) : reference_round(f, bf_values, true);
        uint16_t rh = std::isinf(f) ? (uint16_t)(((u >> 16) & 0x8000) | 0x7c00) : reference_round(f, fp_values, false);
        check(b == rb, fmt("float_to_bf16(%.9g) = 0x%04x, expected 0x%04x", f, b, rb));
        check(h == rh, fmt("float_to_fp16(%.9g) = 0x%04x, expected 0x%04x", f, h, rh));
    };
    for (uint64_t u = 0; u <= 0xffffffffULL; u += 251) compare((uint32_t)u);
    for (uint32_t base : {0x3f800000U, 0x33000000U, 0x387fc000U, 0x477fe000U, 0x7f7f0000U, 0x00000000U})
        for (uint32_t d = 0; d < 0x40000; ++d) compare(base + d), compare((base + d) | 0x80000000U);
#ifdef __FLT16_MAX__
    // The compiler's own _Float16 conversion agrees as well.
    for (uint64_t u = 0; u <= 0xffffffffULL; u += 4099) {
        float f = s24::bits_float((uint32_t)u);
        if (std::isnan(f)) continue;
        _Float16 g = (_Float16)f;
        uint16_t gb;
        std::memcpy(&gb, &g, 2);
        check(s24::float_to_fp16(f) == gb, fmt("float_to_fp16 vs _Float16 at 0x%08x", (double)u));
    }
#endif

    // Named round-to-nearest-even cases.
    check(s24::float_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16: 1 + 2^-8 ties to even 1");
    check(s24::float_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16: 1 + 3*2^-8 ties to even 1 + 2^-6");
    check(s24::float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "bf16: above the tie rounds up");
    check(s24::float_to_bf16(std::numeric_limits<float>::max()) == 0x7f80, "bf16: FLT_MAX rounds to inf");
    check(s24::float_to_bf16(-0.0f) == 0x8000, "bf16: -0 kept");
    check(s24::float_to_fp16(65504.f) == 0x7bff, "fp16: max");
    check(s24::float_to_fp16(65519.f) == 0x7bff, "fp16: 65519 -> max");
    check(s24::float_to_fp16(65520.f) == 0x7c00, "fp16: 65520 -> inf");
    check(s24::float_to_fp16(-1e10f) == 0xfc00, "fp16: -1e10 -> -inf");
    check(s24::float_to_fp16(0x1p-25f) == 0x0000, "fp16: 2^-25 ties to 0");
    check(s24::float_to_fp16(0x1.000002p-25f) == 0x0001, "fp16: just above 2^-25 -> smallest subnormal");
    check(s24::float_to_fp16(3 * 0x1p-25f) == 0x0002, "fp16: 3*2^-25 ties to even 2*2^-24");
    check(s24::float_to_fp16(0x1p-14f - 0x1p-26f) == 0x0400, "fp16: rounds up into the smallest normal");
    check(s24::float_to_fp16(1.0f + 0x1p-11f) == 0x3c00, "fp16: 1 + 2^-11 ties to even 1");
    check(s24::float_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3c02, "fp16: 1 + 3*2^-11 ties up to even");
    check(s24::float_to_fp16(std::nanf("")) == 0x7e00, "fp16: NaN -> quiet NaN 0x7e00");
    check(s24::float_to_bf16(-std::nanf("")) == 0xffc0, "bf16: -NaN -> 0xffc0");
}

// ---- host tensors of a dtype ------------------------------------------------------------------------

size_t esize(s24_dtype t) { return t == S24_FP32 ? 4 : 2; }

uint32_t round_bits(double x, s24_dtype t) {
    float f = (float)x;  // callers pass values exactly representable in float, or accept fp32 rounding first
    return t == S24_FP32 ? s24::float_bits(f) : t == S24_BF16 ? s24::float_to_bf16(f) : s24::float_to_fp16(f);
}
double bits_value(uint32_t raw, s24_dtype t) {
    return t == S24_FP32 ? s24::bits_float(raw) : t == S24_BF16 ? s24::bf16_to_float((uint16_t)raw)
                                                                : s24::fp16_to_float((uint16_t)raw);
}

struct Tensor {
    s24_dtype dtype;
    std::vector<uint8_t> bytes;
    Tensor(s24_dtype t, size_t elements) : dtype(t), bytes(elements * esize(t) + 64, 0) {}
    void* data() { return bytes.data(); }
    const void* data() const { return bytes.data(); }
    uint32_t raw(int64_t i) const {
        uint32_t u = 0;
        std::memcpy(&u, bytes.data() + i * esize(dtype), esize(dtype));
        return u;
    }
    void set_raw(int64_t i, uint32_t u) { std::memcpy(bytes.data() + i * esize(dtype), &u, esize(dtype)); }
    double at(int64_t i) const { return bits_value(raw(i), dtype); }
    void set(int64_t i, double x) { set_raw(i, round_bits(x, dtype)); }
};

// Random values exactly representable in the dtype, with zeros, negatives and ties within groups.
Tensor random_tensor(s24_dtype t, int64_t n, std::mt19937_64& rng, double zero_share = 0.3) {
    Tensor x(t, (size_t)n);
    std::uniform_real_distribution<double> u(0, 1);
    std::normal_distribution<double> normal(0, 1.5);
    for (int64_t i = 0; i < n; ++i) {
        double r = u(rng);
        if (r < zero_share) x.set(i, u(rng) < 0.5 ? 0.0 : -0.0);
        else if (r < zero_share + 0.1 && i > 0) x.set_raw(i, x.raw(i - 1) ^ (u(rng) < 0.5 ? 0 : 0x8000u << (t == S24_FP32 ? 16 : 0)));  // tie in |.|
        else x.set(i, normal(rng));
    }
    return x;
}

// ---- the documented layouts, written independently of shared.h ----------------------------------------

int64_t doc_meta_bytes(s24_layout l, int64_t rows, int64_t cols) {
    return l == S24_LAYOUT_ROW ? rows * ((cols / 4 + 1) / 2) : l == S24_LAYOUT_CUSPARSELT ? rows * cols / 8 : 0;
}
int64_t doc_values_bytes(s24_layout l, s24_dtype t, int64_t rows, int64_t cols) {
    return l == S24_LAYOUT_DENSE ? rows * cols * (int64_t)esize(t) : rows * (cols / 2) * (int64_t)esize(t);
}
int64_t packed_bytes(s24_layout l, s24_dtype t, int64_t rows, int64_t cols) {
    return doc_values_bytes(l, t, rows, cols) + doc_meta_bytes(l, rows, cols);
}
// Byte (within the metadata) and nibble shift of group g of row r, from the text of sparse24.h.
std::pair<int64_t, int> doc_meta_address(s24_layout l, int64_t r, int64_t g, int64_t cols) {
    if (l == S24_LAYOUT_ROW) return {r * ((cols / 4 + 1) / 2) + g / 2, (int)(g % 2) * 4};
    int64_t byte = (r / 64) * 8 * cols + (g / 8) * 256 + ((r % 64) / 16) * 64 + (r % 8) * 8 + (g % 4) * 2 + (g % 8) / 4;
    return {byte, r % 16 >= 8 ? 4 : 0};
}
unsigned doc_nibble(const Tensor& packed, s24_layout l, int64_t rows, int64_t cols, int64_t r, int64_t g) {
    auto [byte, shift] = doc_meta_address(l, r, g, cols);
    return (packed.bytes[doc_values_bytes(l, packed.dtype, rows, cols) + byte] >> shift) & 15;
}

// Dense [rows, cols] of a packed matrix, decoded from the documentation (doubles).
std::vector<double> doc_unpack(const Tensor& p, s24_layout l, int64_t rows, int64_t cols) {
    std::vector<double> d((size_t)(rows * cols), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
        if (l == S24_LAYOUT_DENSE) {
            for (int64_t c = 0; c < cols; ++c) d[r * cols + c] = p.at(r * cols + c);
            continue;
        }
        for (int64_t g = 0; g < cols / 4; ++g) {
            unsigned nib = doc_nibble(p, l, rows, cols, r, g);
            d[r * cols + 4 * g + (nib & 3)] = p.at(r * (cols / 2) + 2 * g);
            d[r * cols + 4 * g + (nib >> 2)] = p.at(r * (cols / 2) + 2 * g + 1);
        }
    }
    return d;
}

// The two kept positions of a group by the documented rule: the 2 largest scores, ties to the lower
// index, NaN above everything. Returned ascending.
std::pair<int, int> naive_top2(const double s_in[4]) {
    double s[4];
    for (int j = 0; j < 4; ++j) s[j] = std::isnan(s_in[j]) ? INFINITY : s_in[j];
    bool nan[4];
    for (int j = 0; j < 4; ++j) nan[j] = std::isnan(s_in[j]);
    int idx[4] = {0, 1, 2, 3};
    std::stable_sort(idx, idx + 4, [&](int a, int b) { return nan[a] != nan[b] ? nan[a] : s[a] > s[b]; });
    return {std::min(idx[0], idx[1]), std::max(idx[0], idx[1])};
}

bool same_value(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// Checks of a packed buffer's structure: nibbles ordered, unused ROW nibbles zero, <= 2 non-zeros.
void check_structure(const Tensor& p, s24_layout l, int64_t rows, int64_t cols, const std::string& what) {
    if (l == S24_LAYOUT_DENSE) {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t g = 0; g < cols / 4; ++g) {
                int nz = 0;
                for (int j = 0; j < 4; ++j) nz += p.at(r * cols + 4 * g + j) != 0;
                check(nz <= 2, what + ": a dense group with more than 2 non-zeros");
            }
        return;
    }
    bool ordered = true;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols / 4; ++g) {
            unsigned nib = doc_nibble(p, l, rows, cols, r, g);
            ordered &= (nib & 3) < (nib >> 2);
        }
    check(ordered, what + ": every nibble has first < second");
    if (l == S24_LAYOUT_ROW && (cols / 4) % 2 == 1) {
        bool zero = true;
        int64_t stride = (cols / 4 + 1) / 2;
        for (int64_t r = 0; r < rows; ++r)
            zero &= (p.bytes[doc_values_bytes(l, p.dtype, rows, cols) + r * stride + stride - 1] >> 4) == 0;
        check(zero, what + ": the unused high nibble of each ROW row is 0");
    }
}

// ---- tests of the building blocks ----------------------------------------------------------------------

std::unique_ptr<s24::Backend> g_backend;

void test_layout_addresses() {
    // The documented CUSPARSELT map is a bijection onto rows*cols/8 bytes x 2 nibbles.
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 64}, {128, 192}}) {
        std::set<std::pair<int64_t, int>> seen;
        bool in_range = true;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t g = 0; g < cols / 4; ++g) {
                auto a = doc_meta_address(S24_LAYOUT_CUSPARSELT, r, g, cols);
                in_range &= a.first >= 0 && a.first < rows * cols / 8;
                seen.insert(a);
            }
        check(in_range && (int64_t)seen.size() == rows * cols / 4, "CUSPARSELT metadata map is a bijection");
    }
}

void test_compress_roundtrip(s24_dtype t, s24_layout l, int64_t rows, int64_t cols, std::mt19937_64& rng) {
    const std::string what = tag("compress24", t, l, rows, cols);
    Tensor dense = random_tensor(t, rows * cols, rng);
    // NaNs score below every number (so they are dropped here and the round trip stays lossless).
    dense.set(1, NAN);
    if (rows > 1) dense.set(cols, NAN), dense.set(cols + 1, NAN);

    const int64_t bytes = packed_bytes(l, t, rows, cols);
    Tensor packed(t, 0), packed2(t, 0);
    packed.bytes.assign((size_t)bytes, 0xab);
    packed2.bytes.assign((size_t)bytes, 0x54);  // a different poison: every byte must be written
    g_backend->compress24(t, rows, cols, dense.data(), l, packed.data());
    g_backend->compress24(t, rows, cols, dense.data(), l, packed2.data());
    check(packed.bytes == packed2.bytes, what + ": every byte of the packed buffer is written");
    check_structure(packed, l, rows, cols, what);

    // Against the naive pruning (by |v|), decoded with the documented layout.
    std::vector<double> got = doc_unpack(packed, l, rows, cols);
    bool ok = true, meta_ok = true;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols / 4; ++g) {
            double s[4];
            for (int j = 0; j < 4; ++j) s[j] = std::fabs(dense.at(r * cols + 4 * g + j));
            auto [a, b] = naive_top2(s);
            for (int j = 0; j < 4; ++j) {
                double expect = (j == a || j == b) ? dense.at(r * cols + 4 * g + j) : 0.0;
                ok &= same_value(got[r * cols + 4 * g + j], expect);
            }
            if (l != S24_LAYOUT_DENSE) meta_ok &= doc_nibble(packed, l, rows, cols, r, g) == (unsigned)(a | (b << 2));
        }
    check(ok, what + ": values equal the naive 2:4 pruning");
    check(meta_ok, what + ": nibbles equal the naive selection");

    // decompress24 gives the pruned dense matrix.
    Tensor back(t, (size_t)(rows * cols));
    std::fill(back.bytes.begin(), back.bytes.end(), 0xcd);
    g_backend->decompress24(t, rows, cols, packed.data(), l, back.data());
    bool back_ok = true;
    for (int64_t i = 0; i < rows * cols; ++i) back_ok &= same_value(back.at(i), got[i]);
    check(back_ok, what + ": decompress24 inverts compress24");

    // Without NaNs (a dropped NaN comes back as a zero, which then outranks a kept zero), packing is
    // lossless: compress24(decompress24(p)) is byte-identical to p (signed zeros included).
    Tensor clean = random_tensor(t, rows * cols, rng);
    Tensor p1(t, 0), p2(t, 0), d1(t, (size_t)(rows * cols));
    p1.bytes.assign((size_t)bytes, 0x22);
    p2.bytes.assign((size_t)bytes, 0x11);
    g_backend->compress24(t, rows, cols, clean.data(), l, p1.data());
    g_backend->decompress24(t, rows, cols, p1.data(), l, d1.data());
    g_backend->compress24(t, rows, cols, d1.data(), l, p2.data());
    check(p1.bytes == p2.bytes, what + ": compress24(decompress24(p)) == p");
}

// relu(x)^2 as the spec states it: relu in fp32 (NaN stays NaN), the square in fp32, one rounding to the dtype.
double naive_relu_squared(double x, s24_dtype t) {
    double r = x > 0 || std::isnan(x) ? x : 0;
    float sq = (float)(r * r);  // the double product of two floats is exact: this is the fp32 product
    return bits_value(round_bits(sq, t), t);
}

void test_sparsify_rows(s24_dtype t, s24_layout l, int64_t rows, int64_t cols, bool keep_all, std::mt19937_64& rng) {
    const std::string what = tag(keep_all ? "sparsify24_rows keep_all" : "sparsify24_rows", t, l, rows, cols);
    Tensor h = random_tensor(t, rows * cols, rng);
    h.set(0, NAN);
    h.set(2, INFINITY);
    h.set(3, -INFINITY);
    if (t != S24_FP32 && rows * cols > 8) h.set(5, 1e-5), h.set(6, 1e-5);  // squares that round to zero in fp16
    const int64_t bytes = packed_bytes(l, t, rows, cols);
    Tensor packed(t, 0);
    packed.bytes.assign((size_t)bytes, 0x7f);
    std::vector<int32_t> counts((size_t)cols, -5);
    int64_t totals[2] = {-1, -1};
    g_backend->sparsify24_rows(t, rows, cols, h.data(), keep_all, l, packed.data(), counts.data(), totals);
    if (!keep_all) check_structure(packed, l, rows, cols, what);

    std::vector<double> got = doc_unpack(packed, l, rows, cols);
    std::vector<int32_t> expect_counts((size_t)cols, 0);
    int64_t before = 0, kept = 0;
    bool values_ok = true, meta_ok = true;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols / 4; ++g) {
            double score[4], sq[4];
            for (int j = 0; j < 4; ++j) {
                double x = h.at(r * cols + 4 * g + j);
                score[j] = x > 0 || std::isnan(x) ? x : 0;
                sq[j] = naive_relu_squared(x, t);
                before += sq[j] != 0;
            }
            auto [a, b] = naive_top2(score);
            for (int j = 0; j < 4; ++j) {
                bool keep = keep_all || j == a || j == b;
                double expect = keep ? sq[j] : 0.0;
                values_ok &= same_value(got[r * cols + 4 * g + j], expect);
                if (keep && sq[j] != 0) ++kept, ++expect_counts[(size_t)(4 * g + j)];
            }
            if (l != S24_LAYOUT_DENSE) meta_ok &= doc_nibble(packed, l, rows, cols, r, g) == (unsigned)(a | (b << 2));
        }
    check(values_ok, what + ": values equal relu(h)^2 on the naive selection");
    check(meta_ok, what + ": nibbles equal the naive selection on relu(h)");
    check(counts == expect_counts, what + ": col_counts");
    check(totals[0] == before && totals[1] == kept,
          what + fmt(": totals {%g, %g}, expected {%g, %g}", totals[0], totals[1], before, kept));
    if (keep_all) check(totals[0] == totals[1], what + ": keep_all keeps every non-zero");

    // Null col_counts / totals are allowed; the packed result is the same.
    Tensor packed2(t, 0);
    packed2.bytes.assign((size_t)bytes, 0x01);
    g_backend->sparsify24_rows(t, rows, cols, h.data(), keep_all, l, packed2.data(), nullptr, nullptr);
    check(packed2.bytes == packed.bytes, what + ": same bytes without counts (and every byte written)");

    // masked_grad24 on this Yhat (not for keep_all, whose layout is DENSE anyway: tested too).
    Tensor dy = random_tensor(t, rows * cols, rng, 0.1);
    Tensor dh(t, 0);
    dh.bytes.assign((size_t)bytes, 0x33);
    g_backend->masked_grad24(t, rows, cols, dy.data(), packed.data(), l, dh.data());
    std::vector<double> dh_got = doc_unpack(dh, l, rows, cols);
    bool grad_ok = true;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
            bool stored = l == S24_LAYOUT_DENSE;
            if (!stored) {
                unsigned nib = doc_nibble(packed, l, rows, cols, r, c / 4);
                stored = (int)(c % 4) == (int)(nib & 3) || (int)(c % 4) == (int)(nib >> 2);
            }
            double y = got[r * cols + c];
            float prod = (float)((float)(dy.at(r * cols + c) * 2.0) * (double)std::sqrt((float)y));
            double expect = stored ? bits_value(round_bits(prod, t), t) : 0.0;
            grad_ok &= same_value(dh_got[r * cols + c], expect);
        }
    check(grad_ok, tag("masked_grad24", t, l, rows, cols) + ": dh = dy * 2 sqrt(y) on y's positions");
    if (l != S24_LAYOUT_DENSE) {
        int64_t vb = doc_values_bytes(l, t, rows, cols);
        check(std::equal(dh.bytes.begin() + vb, dh.bytes.end(), packed.bytes.begin() + vb),
              tag("masked_grad24", t, l, rows, cols) + ": metadata copied from y");
    }
}

void test_select_dense_features(std::mt19937_64& rng) {
    for (int64_t features : {1, 7, 64, 1000}) {
        std::vector<int32_t> counts((size_t)features);
        std::uniform_int_distribution<int> d(0, 5);  // few distinct counts: many ties
        for (auto& c : counts) c = d(rng);
        for (int64_t k : {int64_t(0), int64_t(1), features / 3, features}) {
            std::vector<int32_t> idx((size_t)k + 1, -7);
            std::vector<uint8_t> is_dense((size_t)features, 9);
            g_backend->select_dense_features(features, counts.data(), k, idx.data(), is_dense.data());
            std::vector<int32_t> expect;
            for (int64_t f = 0; f < features; ++f) {
                int64_t beaten = 0;  // features ranked before f
                for (int64_t o = 0; o < features; ++o)
                    beaten += counts[o] > counts[f] || (counts[o] == counts[f] && o < f);
                if (beaten < k) expect.push_back((int32_t)f);
            }
            bool ok = std::equal(expect.begin(), expect.end(), idx.begin()) && idx[(size_t)k] == -7;
            for (int64_t f = 0; f < features; ++f)
                ok &= is_dense[f] == (std::find(expect.begin(), expect.end(), f) != expect.end() ? 1 : 0);
            check(ok, fmt("select_dense_features features=%g k=%g", features, k));
            if (k > 0) {  // is_dense may be null
                std::vector<int32_t> idx2((size_t)k);
                g_backend->select_dense_features(features, counts.data(), k, idx2.data(), nullptr);
                check(std::equal(idx2.begin(), idx2.end(), idx.begin()), "select_dense_features without is_dense");
            }
        }
    }
}

void test_cols_split(s24_dtype t, int64_t tokens, int64_t features, s24_layout in_l, s24_layout out_l, bool permute,
                     int64_t k, std::mt19937_64& rng) {
    const std::string what = tag("cols_split", t, out_l, features, tokens) + " from " + layout_name(in_l) +
                             (permute ? " permuted" : "") + " k=" + std::to_string(k);
    // A 2:4 source: compress a random matrix into in_layout.
    Tensor dense = random_tensor(t, tokens * features, rng);
    Tensor src(t, 0);
    src.bytes.assign((size_t)packed_bytes(in_l, t, tokens, features), 0);
    g_backend->compress24(t, tokens, features, dense.data(), in_l, src.data());
    std::vector<double> s = doc_unpack(src, in_l, tokens, features);

    std::vector<int32_t> perm((size_t)tokens);
    g_backend->token_permutation(0x5eed24, 3, tokens, perm.data());
    if (!permute) std::iota(perm.begin(), perm.end(), 0);
    std::vector<int32_t> counts((size_t)features);
    for (auto& c : counts) c = (int32_t)(rng() % 7);
    std::vector<int32_t> dense_idx((size_t)std::max<int64_t>(k, 1));
    std::vector<uint8_t> is_dense((size_t)features);
    g_backend->select_dense_features(features, counts.data(), k, dense_idx.data(), is_dense.data());

    const int64_t out_cols = out_l == S24_LAYOUT_ROW ? (tokens + 3) / 4 * 4 : tokens;
    const int64_t bytes = packed_bytes(out_l, t, features, out_cols);
    Tensor out(t, 0), out2(t, 0);
    out.bytes.assign((size_t)bytes, 0x5a);
    out2.bytes.assign((size_t)bytes, 0xa5);
    Tensor dcols(t, (size_t)(tokens * k));
    int64_t totals[2] = {-1, -1};
    g_backend->sparsify24_cols_split(t, tokens, features, src.data(), in_l, permute ? perm.data() : nullptr,
                                     is_dense.data(), dense_idx.data(), k, out_l, out.data(), dcols.data(), totals);
    g_backend->sparsify24_cols_split(t, tokens, features, src.data(), in_l, permute ? perm.data() : nullptr,
                                     is_dense.data(), dense_idx.data(), k, out_l, out2.data(), nullptr, nullptr);
    check(out.bytes == out2.bytes, what + ": every output byte written, same without totals/dense_cols");
    check_structure(out, out_l, features, out_cols, what);

    std::vector<double> got = doc_unpack(out, out_l, features, out_cols);
    int64_t before = 0, kept = 0;
    bool values_ok = true, meta_ok = true;
    for (int64_t f = 0; f < features; ++f)
        for (int64_t g = 0; g < (tokens + 3) / 4; ++g) {
            double v[4], score[4];
            for (int j = 0; j < 4; ++j) {
                int64_t i = 4 * g + j;
                v[j] = (i < tokens && !is_dense[f]) ? s[perm[i] * features + f] : 0.0;
                score[j] = std::fabs(v[j]);
                before += v[j] != 0;
            }
            auto [a, b] = naive_top2(score);
            kept += (v[a] != 0) + (v[b] != 0);
            for (int j = 0; j < 4; ++j) {
                int64_t i = 4 * g + j;
                if (i >= out_cols) continue;
                values_ok &= same_value(got[f * out_cols + i], (j == a || j == b) ? v[j] : 0.0);
            }
            if (out_l != S24_LAYOUT_DENSE)
                meta_ok &= doc_nibble(out, out_l, features, out_cols, f, g) == (unsigned)(a | (b << 2));
        }
    check(values_ok, what + ": values equal the naive token-wise 2:4 of the permuted transpose");
    check(meta_ok, what + ": nibbles equal the naive selection (0x4 on dense features)");
    check(totals[0] == before && totals[1] == kept,
          what + fmt(": totals {%g, %g}, expected {%g, %g}", totals[0], totals[1], before, kept));
    bool cols_ok = true;
    for (int64_t i = 0; i < tokens; ++i)
        for (int64_t j = 0; j < k; ++j) cols_ok &= same_value(dcols.at(i * k + j), s[perm[i] * features + dense_idx[j]]);
    check(cols_ok, what + ": dense_cols[i, j] = src[perm[i], dense_idx[j]]");
}

// c = op(a) op(b) in double, and the fp32 k-order emulation the backend promises (bit-exact).
// sparse_layout: -1 for gemm, else the s24_layout of spmm's a.
void test_gemm_case(s24_dtype t, int64_t m, int64_t n, int64_t k, bool a_t, bool b_t, int sparse_layout,
                    bool c_t, std::mt19937_64& rng) {
    const bool sparse = sparse_layout >= 0;
    const s24_layout sparse_l = sparse ? (s24_layout)sparse_layout : S24_LAYOUT_DENSE;
    std::string what = std::string(sparse ? "spmm " : "gemm ") + dtype_name(t) + " m=" + std::to_string(m) +
                       " n=" + std::to_string(n) + " k=" + std::to_string(k) + (a_t ? " aT" : "") +
                       (b_t ? " bT" : "") + (c_t ? " cT" : "") + (sparse ? std::string(" ") + layout_name(sparse_l) : "");
    Tensor a = random_tensor(t, m * k, rng, 0.1), b = random_tensor(t, k * n, rng, 0.1);
    std::vector<double> A((size_t)(m * k));  // A(i, p), row-major
    Tensor a_packed(t, 0);
    if (sparse) {
        a_packed.bytes.assign((size_t)packed_bytes(sparse_l, t, m, k), 0);
        g_backend->compress24(t, m, k, a.data(), sparse_l, a_packed.data());
        A = doc_unpack(a_packed, sparse_l, m, k);
    } else {
        for (int64_t i = 0; i < m; ++i)
            for (int64_t p = 0; p < k; ++p) A[i * k + p] = a.at(a_t ? p * m + i : i * k + p);
    }
    auto B = [&](int64_t p, int64_t j) { return b.at(b_t ? j * k + p : p * n + j); };

    Tensor c(t, (size_t)(m * n));
    std::fill(c.bytes.begin(), c.bytes.end(), 0xee);
    if (sparse)
        g_backend->spmm(t, m, n, k, a_packed.data(), sparse_l, b.data(), b_t, c.data(), c_t, s24::SpmmAlgorithm::DEFAULT);
    else
        g_backend->gemm(t, m, n, k, a.data(), a_t, b.data(), b_t, c.data());

    const double dtype_eps = t == S24_FP32 ? 0x1p-24 : t == S24_BF16 ? 0x1p-8 : 0x1p-11;
    bool close = true, exact = true;
    double worst = 0;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double ref = 0, abs_sum = 0;
            float acc = 0.f;
            for (int64_t p = 0; p < k; ++p) {
                ref += A[i * k + p] * B(p, j);
                abs_sum += std::fabs(A[i * k + p] * B(p, j));
                acc += (float)A[i * k + p] * (float)B(p, j);
            }
            double got = c.at(c_t ? j * m + i : i * n + j);
            double bound = (double)k * 0x1p-23 * abs_sum + dtype_eps * std::fabs(ref) + 0x1p-24;
            double err = std::fabs(got - ref);
            close &= err <= bound;
            worst = std::max(worst, err / (bound > 0 ? bound : 1));
            exact &= c.raw(c_t ? j * m + i : i * n + j) == round_bits(acc, t);
        }
    check(close, what + fmt(": within fp32-accumulation bounds of the double product (worst %.3g of bound)", worst));
    check(exact, what + ": bit-identical to fp32 accumulation in k order, rounded once");
}

void test_gemms(std::mt19937_64& rng) {
    for (s24_dtype t : {S24_FP32, S24_BF16, S24_FP16}) {
        for (int at = 0; at < 2; ++at)
            for (int bt = 0; bt < 2; ++bt) {
                test_gemm_case(t, 5, 7, 12, at, bt, -1, false, rng);
                test_gemm_case(t, 1, 1, 1, at, bt, -1, false, rng);
                test_gemm_case(t, 130, 97, 260, at, bt, -1, false, rng);  // multi-threaded
            }
        for (s24_layout l : {S24_LAYOUT_DENSE, S24_LAYOUT_ROW, S24_LAYOUT_CUSPARSELT})
            for (int bt = 0; bt < 2; ++bt)
                for (int ct = 0; ct < 2; ++ct) {
                    if (l != S24_LAYOUT_CUSPARSELT) test_gemm_case(t, 5, 7, 12, false, bt, l, ct, rng);
                    test_gemm_case(t, 64, 24, 128, false, bt, l, ct, rng);
                    test_gemm_case(t, 192, 80, 256, false, bt, l, ct, rng);  // multi-threaded
                }
    }
}

void test_moves(std::mt19937_64& rng) {
    for (s24_dtype t : {S24_FP32, S24_BF16, S24_FP16}) {
        const int64_t rows = 37, cols = 11, k = 5;
        Tensor in = random_tensor(t, rows * cols, rng);
        in.set(3, NAN);
        std::vector<int32_t> perm((size_t)rows);
        g_backend->token_permutation(42, 7, rows, perm.data());
        Tensor out(t, (size_t)(rows * cols));
        g_backend->gather_rows(t, rows, cols, in.data(), perm.data(), out.data());
        bool ok = true;
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t c = 0; c < cols; ++c) ok &= out.raw(i * cols + c) == in.raw(perm[i] * cols + c);
        check(ok, std::string("gather_rows ") + dtype_name(t));
        g_backend->gather_rows(t, rows, cols, in.data(), nullptr, out.data());
        check(std::equal(out.bytes.begin(), out.bytes.begin() + rows * cols * esize(t), in.bytes.begin()),
              std::string("gather_rows without perm copies ") + dtype_name(t));

        std::vector<int32_t> idx = {9, 0, 4, 10, 2};
        Tensor small = random_tensor(t, rows * k, rng);
        Tensor dst = random_tensor(t, rows * cols, rng), before = dst;
        g_backend->scatter_cols(t, rows, k, small.data(), idx.data(), cols, dst.data());
        ok = true;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) {
                auto it = std::find(idx.begin(), idx.end(), (int32_t)c);
                uint32_t expect = it == idx.end() ? before.raw(r * cols + c) : small.raw(r * k + (it - idx.begin()));
                ok &= dst.raw(r * cols + c) == expect;
            }
        check(ok, std::string("scatter_cols ") + dtype_name(t));

        std::vector<int32_t> ridx = {36, 0, 17, 5, 8};
        Tensor rows_src = random_tensor(t, k * cols, rng);
        Tensor rdst = random_tensor(t, rows * cols, rng), rbefore = rdst;
        g_backend->scatter_rows(t, k, cols, rows_src.data(), ridx.data(), rdst.data());
        ok = true;
        for (int64_t r = 0; r < rows; ++r) {
            auto it = std::find(ridx.begin(), ridx.end(), (int32_t)r);
            for (int64_t c = 0; c < cols; ++c)
                ok &= rdst.raw(r * cols + c) ==
                      (it == ridx.end() ? rbefore.raw(r * cols + c) : rows_src.raw((it - ridx.begin()) * cols + c));
        }
        check(ok, std::string("scatter_rows ") + dtype_name(t));
    }

    for (int64_t tokens : {1, 2, 3, 4, 5, 17, 64, 1000, 4099}) {
        std::vector<int32_t> perm((size_t)tokens);
        g_backend->token_permutation(0x5eed24, 11, tokens, perm.data());
        std::vector<int32_t> sorted = perm;
        std::sort(sorted.begin(), sorted.end());
        bool bijection = true;
        for (int64_t i = 0; i < tokens; ++i) bijection &= sorted[i] == i;
        check(bijection, fmt("token_permutation(%g tokens) is a bijection", tokens));
        auto p = s24::make_permutation(0x5eed24, 11, tokens);
        bool same = true;
        for (int64_t i = 0; i < tokens; ++i) same &= perm[i] == (int32_t)s24::permute_index(p, (uint32_t)i);
        check(same, "token_permutation matches shared.h");
        if (tokens >= 64) check(!std::is_sorted(perm.begin(), perm.end()), "token_permutation permutes");
    }
    std::vector<int32_t> p1(100), p2(100);
    g_backend->token_permutation(1, 0, 100, p1.data());
    g_backend->token_permutation(1, 1, 100, p2.data());
    check(p1 != p2, "token_permutation differs between steps");
}

// The parallel loop covers [0, n) exactly once, splits only at multiples of align, for any thread
// count (the machine running this may have few cores), and passes a body's exception on.
void test_parallel_for() {
    for (int threads = 1; threads <= 16; ++threads)
        for (int64_t n : {1, 2, 63, 64, 65, 192, 1000})
            for (int64_t align : {1, 16, 64}) {
                std::vector<int> hits((size_t)n, 0);
                std::vector<std::pair<int64_t, int64_t>> ranges;
                std::mutex mutex;
                s24::cpu::parallel_for(n, align, 1e9, threads, [&](int64_t b, int64_t e) {
                    std::lock_guard<std::mutex> lock(mutex);
                    ranges.push_back({b, e});
                    for (int64_t i = b; i < e; ++i) ++hits[(size_t)i];
                });
                bool ok = (int64_t)ranges.size() <= threads;
                for (int h : hits) ok &= h == 1;
                for (auto [b, e] : ranges) ok &= b % align == 0 && (e % align == 0 || e == n) && b < e;
                check(ok, fmt("parallel_for n=%g align=%g threads=%g", n, align, threads));
            }
    bool rethrown = false;
    try {
        s24::cpu::parallel_for(100, 1, 1e9, 4, [&](int64_t b, int64_t) {
            if (b > 0) s24::fail(S24_ERROR_INTERNAL, "from a worker");
        });
    } catch (const s24::Error& e) {
        rethrown = e.status() == S24_ERROR_INTERNAL;
    }
    check(rethrown, "parallel_for rethrows a worker's s24::Error");
}

void test_context() {
    s24_context_info info;
    std::memset(&info, 0x7f, sizeof info);
    g_backend->info(&info);
    check(info.backend == S24_BACKEND_CPU && info.device == -1 && info.compute_capability == 0 &&
              info.multiprocessors == 0 && info.cpu_threads >= 1 && std::string(info.device_name) == "CPU" &&
              info.cusparselt_path[0] == 0 && info.cublaslt_path[0] == 0,
          "info");
    check(g_backend->stream() == nullptr, "stream is null");
    g_backend->synchronize();
    check(g_backend->ffn_layout(S24_BF16, 64, 64) == S24_LAYOUT_ROW, "ffn_layout is ROW");
    check(!g_backend->sparse_gemm_available(S24_BF16, 64, 64, 64, S24_LAYOUT_CUSPARSELT), "no sparse GEMM on CPU");

    for (size_t bytes : {size_t(0), size_t(1), size_t(63), size_t(64), size_t(1000), size_t(1) << 20}) {
        void* p = g_backend->allocate(bytes);
        check(p != nullptr && (reinterpret_cast<uintptr_t>(p) % 64) == 0, fmt("allocate(%g) is 64-byte aligned", bytes));
        g_backend->fill(p, 0x3c, bytes);
        std::vector<uint8_t> host(bytes + 1, 0);
        g_backend->copy(host.data(), p, bytes, S24_COPY_CONTEXT_TO_HOST);
        check(std::all_of(host.begin(), host.begin() + bytes, [](uint8_t v) { return v == 0x3c; }), "fill + copy");
        g_backend->release(p);
    }
    g_backend->release(nullptr);
    bool oom = false;
    try {
        g_backend->allocate(size_t(1) << 62);
    } catch (const s24::Error& e) {
        oom = e.status() == S24_ERROR_OUT_OF_MEMORY && std::string(e.what()).find("bytes") != std::string::npos;
    }
    check(oom, "allocate(2^62) throws OUT_OF_MEMORY naming the bytes");

    void* s1 = g_backend->scratch(100);
    std::memset(s1, 1, 100);
    void* s2 = g_backend->scratch(50);
    check(s1 == s2, "scratch reuses its buffer");
    void* s3 = g_backend->scratch(1 << 20);
    std::memset(s3, 1, 1 << 20);
    check(s3 != nullptr && reinterpret_cast<uintptr_t>(s3) % 64 == 0, "scratch grows, aligned");

    void* e0 = g_backend->event_create();
    void* e1 = g_backend->event_create();
    g_backend->event_record(e0);
    g_backend->event_record(e1);
    float ms = g_backend->event_elapsed_ms(e0, e1);
    check(ms >= 0 && ms < 1000, "events measure host time");
    g_backend->event_destroy(e0);
    g_backend->event_destroy(e1);
}

}  // namespace

int main() {
    g_backend = s24::create_cpu_backend();
    std::mt19937_64 rng(2024);

    test_conversions();
    test_context();
    test_parallel_for();
    test_layout_addresses();

    const s24_dtype dtypes[] = {S24_FP32, S24_BF16, S24_FP16};
    for (s24_dtype t : dtypes) {
        for (s24_layout l : {S24_LAYOUT_DENSE, S24_LAYOUT_ROW}) {
            for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 4}, {5, 12}, {7, 8}, {3, 20}, {300, 516}}) {
                test_compress_roundtrip(t, l, rows, cols, rng);
                test_sparsify_rows(t, l, rows, cols, false, rng);
            }
        }
        for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 128}, {128, 64}, {256, 320}}) {
            test_compress_roundtrip(t, S24_LAYOUT_CUSPARSELT, rows, cols, rng);
            test_sparsify_rows(t, S24_LAYOUT_CUSPARSELT, rows, cols, false, rng);
        }
        for (auto [rows, cols] : {std::pair<int64_t, int64_t>{5, 12}, {300, 516}})
            test_sparsify_rows(t, S24_LAYOUT_DENSE, rows, cols, true, rng);
    }

    test_select_dense_features(rng);

    for (s24_dtype t : dtypes) {
        for (int64_t tokens : {4, 8, 10, 13, 1, 2, 3, 257}) {
            for (s24_layout in_l : {S24_LAYOUT_DENSE, S24_LAYOUT_ROW})
                for (s24_layout out_l : {S24_LAYOUT_DENSE, S24_LAYOUT_ROW})
                    for (bool permute : {false, true})
                        for (int64_t k : {0, 3}) test_cols_split(t, tokens, 24, in_l, out_l, permute, k, rng);
        }
        for (s24_layout in_l : {S24_LAYOUT_DENSE, S24_LAYOUT_ROW, S24_LAYOUT_CUSPARSELT})
            for (s24_layout out_l : {S24_LAYOUT_DENSE, S24_LAYOUT_ROW, S24_LAYOUT_CUSPARSELT})
                for (int64_t k : {0, 5, 64}) {
                    test_cols_split(t, 64, 64, in_l, out_l, true, k, rng);
                    test_cols_split(t, 192, 128, in_l, out_l, true, k, rng);  // multi-threaded
                }
    }

    test_gemms(rng);
    test_moves(rng);

    std::printf("%s: %d checks, %d failures\n", g_failures ? "FAILED" : "OK", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
