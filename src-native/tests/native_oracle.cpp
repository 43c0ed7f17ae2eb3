// One context's building blocks and FFN against an independent oracle: a naive top-2 written here (not
// shared.h's select24) and a float64 FFN, on inputs full of ties, zeros and infinities (and, in checks
// labelled [NaN semantics], NaN), in every dtype and layout the context takes.
//
// The 2:4 rule the oracle states: in each group of 4, keep the 2 largest scores (relu(h) for the forward,
// |v| for compress and the split along tokens); NaN ranks above every number; equal scores (and NaNs
// among themselves) go to the lower index. Kept NaN and Inf propagate as IEEE arithmetic says.
//
// The FFN inputs are small integers (x, dz in {-1, 0, 1}; w1 rows and w2 columns with at most 16 entries
// +-1), so every sum is exact in fp32 and every stored tensor is one rounding of an exact value: the
// library must match the oracle bit for bit in every dtype, ties included.
//
// With NaN, a product with a zero factor is 0 * NaN = NaN in a dense GEMM but never computed where a
// sparse GEMM skips a dropped (or, on tensor cores, any stored-zero) element. The FFN oracle runs twice:
// with sparse products (0 * anything = 0, unselected tokens contribute nothing: the NaNs every backend
// must produce) and with dense products (the NaNs a backend may produce); the finite values are exact.
#include "native_support.h"

#include <array>

namespace s24test {
namespace {

const char* NAN_LABEL = " [NaN semantics]";

size_t esize(s24_dtype dt) { return dt == S24_FP32 ? 4 : 2; }

// The value dtype dt stores for v (round to nearest even; NaN stays NaN).
float stored(s24_dtype dt, double v) {
    float f = (float)v;
    if (dt == S24_BF16) return from_bf16(to_bf16(f));
    if (dt == S24_FP16) return from_fp16(to_fp16(f));
    return f;
}

std::vector<uint8_t> encode(s24_dtype dt, const std::vector<float>& v) {
    std::vector<uint8_t> raw(v.size() * esize(dt));
    for (size_t i = 0; i < v.size(); ++i) {
        if (dt == S24_FP32) {
            std::memcpy(&raw[4 * i], &v[i], 4);
        } else {
            uint16_t b = dt == S24_BF16 ? to_bf16(v[i]) : to_fp16(v[i]);
            std::memcpy(&raw[2 * i], &b, 2);
        }
    }
    return raw;
}

std::vector<float> decode(s24_dtype dt, const std::vector<uint8_t>& raw) {
    if (dt != S24_FP32) return as_floats(raw, dt);
    std::vector<float> v(raw.size() / 4);
    std::memcpy(v.data(), raw.data(), v.size() * 4);
    return v;
}

// The 2:4 rule, naively: order the 4 positions (NaN first, then larger scores, then lower index) and
// keep the first two.
std::array<bool, 4> top2(const double s[4]) {
    std::array<int, 4> order = {0, 1, 2, 3};
    std::sort(order.begin(), order.end(), [&](int a, int b) {
        bool na = std::isnan(s[a]), nb = std::isnan(s[b]);
        if (na != nb) return na;
        if (!na && s[a] != s[b]) return s[a] > s[b];
        return a < b;
    });
    std::array<bool, 4> keep = {false, false, false, false};
    keep[order[0]] = keep[order[1]] = true;
    return keep;
}

double relu(double h) { return std::isnan(h) ? h : h > 0 ? h : 0.0; }

// Equal as values (NaN equals NaN, +0 equals -0); detail names the first difference.
bool same(const std::vector<float>& got, const std::vector<float>& want, std::string* detail) {
    if (got.size() != want.size()) {
        *detail = fmt("size %zu, expected %zu", got.size(), want.size());
        return false;
    }
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        bool ok = std::isnan(want[i]) ? std::isnan(got[i]) : got[i] == want[i];
        if (!ok && bad++ == 0) first = i;
    }
    if (bad) *detail = fmt("%zu of %zu differ; first at %zu: got %g, expected %g", bad, got.size(), first,
                           (double)got[first], (double)want[first]);
    return bad == 0;
}

// As same(), except that got may also be NaN where may_nan is NaN (want: the NaNs it must have).
bool same_or_nan(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>& may_nan,
                 std::string* detail) {
    std::vector<float> w = want;
    for (size_t i = 0; i < w.size() && i < got.size(); ++i)
        if (std::isnan(got[i]) && std::isnan(may_nan[i])) w[i] = got[i];
    return same(got, w, detail);
}

// Groups of 4 that decide ties: the same value four times, pairs, zeros, infinities.
const std::vector<std::array<float, 4>>& fixed_groups(bool with_nan) {
    const float inf = INFINITY, nan = NAN;
    static const std::vector<std::array<float, 4>> plain = {
        {1, 1, 1, 1}, {0, 2, 2, 0}, {-3, 3, 1, 3}, {0, 0, 0, 0}, {-1, -2, 0, -4}, {0, 0, 0, 5}, {0.5f, 0.5f, 2, 0.5f},
        {inf, 1, inf, 1}, {1, inf, 1, 1}, {-inf, 2, -inf, 2}, {-2, 1, 2, -1}, {1, -inf, 5, inf}, {3, -3, 3, -3}};
    static const std::vector<std::array<float, 4>> nans = {
        {nan, 1, 1, 0}, {1, nan, nan, 2}, {nan, nan, nan, nan}, {-1, 3, nan, inf}, {-1, -1, -1, nan}, {-inf, 2, 1, nan}};
    return with_nan ? nans : plain;
}

// rows x cols (cols % 4 == 0): every other group a fixed one, the rest drawn from a small set of values
// (many ties and zeros), with infinities and, if with_nan, NaN among them.
std::vector<float> tie_matrix(int64_t rows, int64_t cols, bool with_nan, std::mt19937& rng) {
    static const float pool[] = {-2, -1, -0.5f, 0, 0, 0.5f, 1, 1, 2, 3, INFINITY, -INFINITY};
    const auto& groups = fixed_groups(with_nan);
    std::uniform_int_distribution<int> pick(0, (int)(sizeof pool / sizeof pool[0]) - 1);
    std::vector<float> m(rows * cols);
    for (int64_t g = 0; g < rows * cols / 4; ++g)
        for (int j = 0; j < 4; ++j)
            m[4 * g + j] = g % 2 == 0 ? groups[(g / 2) % groups.size()][j] : pool[pick(rng)];
    if (with_nan)  // a few NaN in the drawn groups too
        for (int64_t g = 1; g < rows * cols / 4; g += 7) m[4 * g + (g % 4)] = NAN;
    return m;
}

std::vector<float> round_all(s24_dtype dt, std::vector<float> v) {
    for (auto& x : v) x = stored(dt, x);
    return v;
}

// Oracle of sparsify24_rows: y = relu(h)^2 on the kept positions; totals and column counts.
struct RowsOracle {
    std::vector<float> y;
    int64_t nonzeros = 0, kept = 0;
    std::vector<int32_t> counts;
};
RowsOracle rows_oracle(s24_dtype dt, const std::vector<float>& h, int64_t rows, int64_t cols, bool keep_all) {
    RowsOracle o;
    o.y.assign(rows * cols, 0.f);
    o.counts.assign(cols, 0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols / 4; ++g) {
            double s[4];
            for (int j = 0; j < 4; ++j) s[j] = relu(h[r * cols + 4 * g + j]);
            std::array<bool, 4> keep = keep_all ? std::array<bool, 4>{true, true, true, true} : top2(s);
            for (int j = 0; j < 4; ++j) {
                float square = stored(dt, s[j] * s[j]);
                o.nonzeros += square != 0;
                if (!keep[j]) continue;
                o.y[r * cols + 4 * g + j] = square;
                o.kept += square != 0;
                o.counts[4 * g + j] += square != 0;
            }
        }
    return o;
}

bool layout_fits(s24_layout layout, s24_dtype dt, int64_t rows, int64_t cols) {
    return layout != S24_LAYOUT_CUSPARSELT || (dt != S24_FP32 && rows % 64 == 0 && cols % 64 == 0);
}

void oracle_sparsify_rows(s24_context* ctx, s24_dtype dt, int64_t rows, int64_t cols, s24_layout layout,
                          bool keep_all, bool with_nan, std::mt19937& rng) {
    std::vector<float> h = round_all(dt, tie_matrix(rows, cols, with_nan, rng));
    RowsOracle want = rows_oracle(dt, h, rows, cols, keep_all);
    std::vector<uint8_t> raw = encode(dt, h);
    Buffer hb(ctx, raw.data(), raw.size()), packed(ctx, packed_size(layout, dt, rows, cols)),
        back(ctx, rows * cols * esize(dt)), cnt(ctx, cols * 4), tot(ctx, 16);
    packed.poison();
    back.poison();
    cnt.poison();
    tot.poison();
    S24_TRY(s24_sparsify24_rows(ctx, dt, rows, cols, hb.ptr, keep_all, layout, packed.ptr, (int32_t*)cnt.ptr,
                                (int64_t*)tot.ptr));
    S24_TRY(s24_decompress24(ctx, dt, rows, cols, packed.ptr, layout, back.ptr));
    std::string detail;
    bool ok = same(decode(dt, back.bytes_back()), want.y, &detail);
    if (ok && !with_nan) {  // with NaN only the values are specified
        auto totals = tot.back<int64_t>();
        auto counts = cnt.back<int32_t>();
        ok = totals[0] == want.nonzeros && totals[1] == want.kept && counts == want.counts;
        detail = fmt("totals {%lld, %lld}, expected {%lld, %lld}; column counts %s", (long long)totals[0],
                     (long long)totals[1], (long long)want.nonzeros, (long long)want.kept,
                     counts == want.counts ? "match" : "DIFFER");
    }
    report(ok, fmt("oracle sparsify24_rows %s %lldx%lld %s%s%s", dname(dt), (long long)rows, (long long)cols,
                   lname(layout), keep_all ? " keep_all" : "", with_nan ? NAN_LABEL : ""),
           detail);
}

void oracle_compress(s24_context* ctx, s24_dtype dt, int64_t rows, int64_t cols, s24_layout layout, bool with_nan,
                     std::mt19937& rng) {
    std::vector<float> v = round_all(dt, tie_matrix(rows, cols, with_nan, rng));
    std::vector<float> want(v.size(), 0.f);
    for (int64_t g = 0; g < rows * cols / 4; ++g) {
        double s[4];
        for (int j = 0; j < 4; ++j) s[j] = std::fabs((double)v[4 * g + j]);
        auto keep = top2(s);
        for (int j = 0; j < 4; ++j) want[4 * g + j] = keep[j] ? v[4 * g + j] : 0.f;
    }
    std::vector<uint8_t> raw = encode(dt, v);
    Buffer in(ctx, raw.data(), raw.size()), packed(ctx, packed_size(layout, dt, rows, cols)),
        back(ctx, rows * cols * esize(dt));
    packed.poison();
    back.poison();
    S24_TRY(s24_compress24(ctx, dt, rows, cols, in.ptr, layout, packed.ptr));
    S24_TRY(s24_decompress24(ctx, dt, rows, cols, packed.ptr, layout, back.ptr));
    std::string detail;
    bool ok = same(decode(dt, back.bytes_back()), want, &detail);
    report(ok, fmt("oracle compress24 %s %lldx%lld %s%s", dname(dt), (long long)rows, (long long)cols, lname(layout),
                   with_nan ? NAN_LABEL : ""),
           detail);
}

// dH = dy * 2 sqrt(y) on y's kept positions (h from the tie values: y is 0, 0.25, 1, 4, 9 or Inf, so
// sqrt is exact and one rounding gives dH).
void oracle_masked_grad(s24_context* ctx, s24_dtype dt, int64_t rows, int64_t cols, s24_layout layout,
                        std::mt19937& rng) {
    std::vector<float> h = round_all(dt, tie_matrix(rows, cols, false, rng));
    std::vector<float> dy = round_all(dt, tie_matrix(rows, cols, false, rng));
    for (auto& v : dy) v = std::isinf(v) ? 3.f : v;  // finite upstream gradients
    RowsOracle y = rows_oracle(dt, h, rows, cols, false);
    std::vector<float> want(rows * cols, 0.f);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols / 4; ++g) {
            double s[4];
            for (int j = 0; j < 4; ++j) s[j] = relu(h[r * cols + 4 * g + j]);
            auto keep = top2(s);
            for (int j = 0; j < 4; ++j) {
                size_t i = r * cols + 4 * g + j;
                if (keep[j]) want[i] = stored(dt, (double)dy[i] * 2.0 * std::sqrt((double)y.y[i]));
            }
        }
    std::vector<uint8_t> hraw = encode(dt, h), dyraw = encode(dt, dy);
    size_t bytes = packed_size(layout, dt, rows, cols);
    Buffer hb(ctx, hraw.data(), hraw.size()), dyb(ctx, dyraw.data(), dyraw.size()), yb(ctx, bytes), dh(ctx, bytes),
        back(ctx, rows * cols * esize(dt));
    dh.poison();
    back.poison();
    S24_TRY(s24_sparsify24_rows(ctx, dt, rows, cols, hb.ptr, 0, layout, yb.ptr, nullptr, nullptr));
    S24_TRY(s24_masked_grad24(ctx, dt, rows, cols, dyb.ptr, yb.ptr, layout, dh.ptr));
    S24_TRY(s24_decompress24(ctx, dt, rows, cols, dh.ptr, layout, back.ptr));
    std::string detail;
    bool ok = same(decode(dt, back.bytes_back()), want, &detail);
    report(ok, fmt("oracle masked_grad24 %s %lldx%lld %s", dname(dt), (long long)rows, (long long)cols, lname(layout)),
           detail);
}

// The split along tokens: features' columns in permuted token order, 2:4 of |values| per 4 positions
// (zero padding past the last token), dense features gathered aside.
void oracle_cols_split(s24_context* ctx, s24_dtype dt, int64_t tokens, int64_t features, s24_layout in_layout,
                       s24_layout out_layout, bool permute, bool with_nan, std::mt19937& rng) {
    std::vector<float> h = round_all(dt, tie_matrix(tokens, features, with_nan, rng));
    bool dense_src = in_layout == S24_LAYOUT_DENSE;
    std::vector<float> y = rows_oracle(dt, h, tokens, features, dense_src).y;
    std::vector<int32_t> perm(tokens), idx;
    for (int64_t p = 0; p < tokens; ++p) perm[p] = (int32_t)p;
    if (permute) S24_TRY(s24_token_permutation(99, 5, tokens, perm.data()));
    std::vector<uint8_t> is_dense(features, 0);
    for (int64_t j = 1; j < features; j += 11) {
        idx.push_back((int32_t)j);
        is_dense[j] = 1;
    }
    const int64_t k = (int64_t)idx.size();
    const int64_t t_cols = out_layout == S24_LAYOUT_ROW ? (tokens + 3) / 4 * 4 : tokens;
    std::vector<float> want(features * t_cols, 0.f), want_cols(tokens * k);
    int64_t nonzeros = 0, kept = 0;
    for (int64_t c = 0; c < features; ++c) {
        if (is_dense[c]) continue;
        for (int64_t g = 0; 4 * g < tokens; ++g) {
            double s[4];
            for (int j = 0; j < 4; ++j) {
                int64_t p = 4 * g + j;
                s[j] = p < tokens ? std::fabs((double)y[perm[p] * features + c]) : 0.0;
                nonzeros += p < tokens && s[j] != 0;
            }
            auto keep = top2(s);
            for (int j = 0; j < 4 && 4 * g + j < tokens; ++j) {
                int64_t p = 4 * g + j;
                float v = y[perm[p] * features + c];
                want[c * t_cols + p] = keep[j] ? v : 0.f;
                kept += keep[j] && v != 0;
            }
        }
    }
    for (int64_t p = 0; p < tokens; ++p)
        for (int64_t j = 0; j < k; ++j) want_cols[p * k + j] = y[perm[p] * features + idx[j]];
    std::vector<uint8_t> hraw = encode(dt, h);
    size_t out_bytes = out_layout == S24_LAYOUT_DENSE ? (size_t)features * tokens * esize(dt)
                                                      : packed_size(out_layout, dt, features, t_cols);
    Buffer hb(ctx, hraw.data(), hraw.size()), src(ctx, packed_size(in_layout, dt, tokens, features)),
        out(ctx, out_bytes), back(ctx, features * t_cols * esize(dt)), pb(ctx, perm.data(), tokens * 4),
        db(ctx, is_dense.data(), features), ib(ctx, idx.data(), k * 4), dc(ctx, tokens * k * esize(dt)), tot(ctx, 16);
    S24_TRY(s24_sparsify24_rows(ctx, dt, tokens, features, hb.ptr, dense_src, in_layout, src.ptr, nullptr, nullptr));
    out.poison();
    back.poison();
    dc.poison();
    tot.poison();
    S24_TRY(s24_sparsify24_cols_split(ctx, dt, tokens, features, src.ptr, in_layout, permute ? (int32_t*)pb.ptr : nullptr,
                                      (uint8_t*)db.ptr, (int32_t*)ib.ptr, k, out_layout, out.ptr, dc.ptr,
                                      (int64_t*)tot.ptr));
    std::vector<float> got;
    if (out_layout == S24_LAYOUT_DENSE) {
        got = decode(dt, out.bytes_back());
    } else {
        S24_TRY(s24_decompress24(ctx, dt, features, t_cols, out.ptr, out_layout, back.ptr));
        got = decode(dt, back.bytes_back());
    }
    std::string detail, cols_detail;
    bool ok = same(got, want, &detail);
    bool cols_ok = same(decode(dt, dc.bytes_back()), want_cols, &cols_detail);
    if (!cols_ok) detail += " dense columns: " + cols_detail;
    ok = ok && cols_ok;
    if (ok && !with_nan) {
        auto totals = tot.back<int64_t>();
        ok = totals[0] == nonzeros && totals[1] == kept;
        detail = fmt("totals {%lld, %lld}, expected {%lld, %lld}", (long long)totals[0], (long long)totals[1],
                     (long long)nonzeros, (long long)kept);
    }
    report(ok, fmt("oracle cols_split %s T=%lld f=%lld %s->%s%s%s", dname(dt), (long long)tokens, (long long)features,
                   lname(in_layout), lname(out_layout), permute ? " perm" : "", with_nan ? NAN_LABEL : ""),
           detail);
}

// ---- the FFN in float64 ---------------------------------------------------------------------------------
struct FfnOracle {
    std::vector<float> z, dx, dw1, dw2;
    std::vector<int32_t> dense;
    int64_t activation_nonzeros = 0, forward_kept = 0;
    int64_t dw2_nonzeros = 0, dw2_kept = 0, dw1_nonzeros = 0, dw1_kept = 0;
};

// Which tokens feature j of m [T, f] contributes to its weight gradient: all for a dense feature; else the
// 2:4 of |m| along permuted positions. Adds {non-zeros, kept} to counts.
std::vector<bool> tokens_used(const std::vector<float>& m, int64_t T, int64_t f, int64_t j, bool dense,
                              const std::vector<int32_t>& perm, int64_t counts[2]) {
    std::vector<bool> use(T, dense);
    if (dense) return use;
    for (int64_t g = 0; 4 * g < T; ++g) {
        double s[4];
        for (int q = 0; q < 4; ++q) {
            int64_t p = 4 * g + q;
            s[q] = p < T ? std::fabs((double)m[perm[p] * f + j]) : 0.0;
            counts[0] += p < T && s[q] != 0;
        }
        auto keep = top2(s);
        for (int q = 0; q < 4 && 4 * g + q < T; ++q) {
            use[perm[4 * g + q]] = keep[q];
            counts[1] += keep[q] && s[q] != 0;
        }
    }
    return use;
}

// sparse_products: a product with a zero factor is 0 (see the top of the file); else every product is formed.
FfnOracle ffn_oracle(s24_dtype dt, int64_t T, int64_t d, int64_t f, const s24_ffn_options& o, int64_t k,
                     const std::vector<float>& x, const std::vector<float>& w1, const std::vector<float>& w2,
                     const std::vector<float>& dz, bool sparse_products) {
    auto product = [&](double a, double b) { return sparse_products && (a == 0 || b == 0) ? 0.0 : a * b; };
    FfnOracle r;
    std::vector<float> y(T * f), dh(T * f, 0.f);
    std::vector<bool> kept(T * f);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t g = 0; g < f / 4; ++g) {
            double s[4];
            for (int q = 0; q < 4; ++q) {
                int64_t j = 4 * g + q;
                double acc = 0;
                for (int64_t i = 0; i < d; ++i) acc += (double)x[t * d + i] * w1[j * d + i];
                s[q] = relu(stored(dt, acc));
            }
            auto keep = o.sparse_forward ? top2(s) : std::array<bool, 4>{true, true, true, true};
            for (int q = 0; q < 4; ++q) {
                int64_t j = 4 * g + q;
                float square = stored(dt, s[q] * s[q]);
                r.activation_nonzeros += square != 0;
                kept[t * f + j] = keep[q];
                y[t * f + j] = keep[q] ? square : 0.f;
                r.forward_kept += keep[q] && square != 0;
            }
        }
    r.z.resize(T * d);
    r.dx.resize(T * d);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < d; ++i) {
            double acc = 0;
            for (int64_t j = 0; j < f; ++j) acc += product(y[t * f + j], w2[i * f + j]);
            r.z[t * d + i] = stored(dt, acc);
        }
    for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < f; ++j) {
            double acc = 0;
            for (int64_t i = 0; i < d; ++i) acc += (double)dz[t * d + i] * w2[i * f + j];
            double dy = stored(dt, acc);
            // a dense masked gradient also forms dYhat * 0 where Yhat was dropped
            if (kept[t * f + j] || !sparse_products)
                dh[t * f + j] = stored(dt, dy * 2.0 * std::sqrt((double)y[t * f + j]));
        }
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < d; ++i) {
            double acc = 0;
            for (int64_t j = 0; j < f; ++j) acc += product(dh[t * f + j], w1[j * d + i]);
            r.dx[t * d + i] = stored(dt, acc);
        }
    // dense features: the k with the most kept non-zeros, ties to the lower index, ascending
    std::vector<bool> dense(f, !o.sparse_backward);
    if (o.sparse_backward) {
        std::vector<int64_t> count(f, 0);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t j = 0; j < f; ++j) count[j] += y[t * f + j] != 0;
        std::vector<int32_t> order(f);
        for (int64_t j = 0; j < f; ++j) order[j] = (int32_t)j;
        std::sort(order.begin(), order.end(),
                  [&](int32_t a, int32_t b) { return count[a] != count[b] ? count[a] > count[b] : a < b; });
        r.dense.assign(order.begin(), order.begin() + k);
        std::sort(r.dense.begin(), r.dense.end());
        for (int32_t j : r.dense) dense[j] = true;
    }
    std::vector<int32_t> perm(T);
    for (int64_t p = 0; p < T; ++p) perm[p] = (int32_t)p;
    if (o.sparse_backward && o.permute_tokens) S24_TRY(s24_token_permutation(o.seed, 0, T, perm.data()));
    r.dw2.resize(d * f);
    r.dw1.resize(f * d);
    int64_t c2[2] = {0, 0}, c1[2] = {0, 0};
    for (int64_t j = 0; j < f; ++j) {
        std::vector<bool> use2 = tokens_used(y, T, f, j, dense[j], perm, c2);
        std::vector<bool> use1 = tokens_used(dh, T, f, j, dense[j], perm, c1);
        for (int64_t i = 0; i < d; ++i) {
            double a2 = 0, a1 = 0;
            for (int64_t t = 0; t < T; ++t) {
                a2 += product(dz[t * d + i], use2[t] ? y[t * f + j] : 0.0);
                a1 += product(use1[t] ? dh[t * f + j] : 0.0, x[t * d + i]);
            }
            r.dw2[i * f + j] = stored(dt, a2);
            r.dw1[j * d + i] = stored(dt, a1);
        }
    }
    r.dw2_nonzeros = c2[0];
    r.dw2_kept = c2[1];
    r.dw1_nonzeros = c1[0];
    r.dw1_kept = c1[1];
    return r;
}

// Integer inputs: x, dz in {-1, 0, 1}; at most 16 entries +-1 in each row of w1 and each column of w2.
std::vector<float> ternary(size_t n, std::mt19937& rng) {
    std::uniform_int_distribution<int> v(-1, 1);
    std::vector<float> out(n);
    for (auto& e : out) e = (float)v(rng);
    return out;
}
std::vector<float> sparse_signs(int64_t lines, int64_t len, int64_t stride_line, int64_t stride_elem,
                                std::mt19937& rng) {
    std::vector<float> out(lines * len, 0.f);
    std::uniform_int_distribution<int64_t> at(0, len - 1);
    std::uniform_int_distribution<int> sign(0, 1);
    for (int64_t l = 0; l < lines; ++l)
        for (int n = 0; n < 16; ++n) out[l * stride_line + at(rng) * stride_elem] = sign(rng) ? 1.f : -1.f;
    return out;
}

void oracle_ffn(s24_context* ctx, s24_dtype dt, int64_t T, int64_t d, int64_t f, const s24_ffn_options& o,
                const char* label, bool with_nan, std::mt19937& rng) {
    std::vector<float> x = ternary(T * d, rng), dz = ternary(T * d, rng);
    std::vector<float> w1 = sparse_signs(f, d, d, 1, rng);  // row j of [f, d]
    std::vector<float> w2 = sparse_signs(f, d, 1, f, rng);  // column j of [d, f]
    if (with_nan) x[(T / 2) * d + d / 3] = NAN;
    // the dense-feature count for the default fraction 0.05: ceil(f / 20), up to a multiple of 8, at most f
    int64_t k = o.sparse_backward ? std::min(f, ((f + 19) / 20 + 7) / 8 * 8) : 0;
    FfnOracle want = ffn_oracle(dt, T, d, f, o, k, x, w1, w2, dz, true);
    FfnOracle may = with_nan ? ffn_oracle(dt, T, d, f, o, k, x, w1, w2, dz, false) : want;

    s24_ffn* ffn = nullptr;
    s24_saved* saved = nullptr;
    S24_TRY(s24_ffn_create(ctx, T, d, f, dt, &o, &ffn));
    S24_TRY(s24_saved_create(ffn, &saved));
    std::vector<float> got[4];
    s24_sparsity sp{};
    std::vector<int32_t> dense;
    {
        auto xr = encode(dt, x), w1r = encode(dt, w1), w2r = encode(dt, w2), dzr = encode(dt, dz);
        const size_t e = esize(dt);
        Buffer xb(ctx, xr.data(), xr.size()), w1b(ctx, w1r.data(), w1r.size()), w2b(ctx, w2r.data(), w2r.size()),
            dzb(ctx, dzr.data(), dzr.size()), z(ctx, T * d * e), dx(ctx, T * d * e), dw1(ctx, f * d * e),
            dw2(ctx, d * f * e);
        for (Buffer* b : {&z, &dx, &dw1, &dw2}) b->poison();
        S24_TRY(s24_ffn_forward(ffn, xb.ptr, w1b.ptr, w2b.ptr, z.ptr, saved));
        S24_TRY(s24_ffn_backward(ffn, saved, xb.ptr, w1b.ptr, w2b.ptr, dzb.ptr, dx.ptr, dw1.ptr, dw2.ptr));
        Buffer* outs[4] = {&z, &dx, &dw1, &dw2};
        for (int i = 0; i < 4; ++i) got[i] = decode(dt, outs[i]->bytes_back());
        S24_TRY(s24_saved_sparsity(saved, &sp));
        int64_t count = 0;
        S24_TRY(s24_saved_dense_features(saved, nullptr, 0, &count));
        dense.resize(count);
        S24_TRY(s24_saved_dense_features(saved, dense.data(), count, &count));
    }
    s24_saved_destroy(saved);
    s24_ffn_destroy(ffn);

    const char* names[4] = {"Z", "dX", "dW1", "dW2"};
    const std::vector<float>* wants[4] = {&want.z, &want.dx, &want.dw1, &want.dw2};
    const std::vector<float>* mays[4] = {&may.z, &may.dx, &may.dw1, &may.dw2};
    bool ok = true;
    std::string detail;
    for (int i = 0; i < 4; ++i) {
        std::string d1;
        if (!same_or_nan(got[i], *wants[i], *mays[i], &d1)) {
            ok = false;
            detail += fmt("%s: %s. ", names[i], d1.c_str());
        }
    }
    if (!with_nan) {  // with NaN only the values are specified
        bool stats = dense == want.dense && sp.activation_nonzeros == want.activation_nonzeros &&
                     sp.forward_kept == want.forward_kept &&
                     (!o.sparse_backward || (sp.dw2_sparse_nonzeros == want.dw2_nonzeros &&
                                             sp.dw2_sparse_kept == want.dw2_kept &&
                                             sp.dw1_sparse_nonzeros == want.dw1_nonzeros &&
                                             sp.dw1_sparse_kept == want.dw1_kept));
        if (!stats)
            detail += fmt("statistics: dense features %zu (expected %zu, %s), non-zeros %lld/%lld kept %lld/%lld, "
                          "dW2 %lld/%lld kept %lld/%lld, dW1 %lld/%lld kept %lld/%lld (got/expected)",
                          dense.size(), want.dense.size(), dense == want.dense ? "same" : "DIFFERENT",
                          (long long)sp.activation_nonzeros, (long long)want.activation_nonzeros,
                          (long long)sp.forward_kept, (long long)want.forward_kept, (long long)sp.dw2_sparse_nonzeros,
                          (long long)want.dw2_nonzeros, (long long)sp.dw2_sparse_kept, (long long)want.dw2_kept,
                          (long long)sp.dw1_sparse_nonzeros, (long long)want.dw1_nonzeros,
                          (long long)sp.dw1_sparse_kept, (long long)want.dw1_kept);
        ok = ok && stats;
    }
    report(ok, fmt("oracle ffn %s %s T=%lld d=%lld f=%lld%s", label, dname(dt), (long long)T, (long long)d,
                   (long long)f, with_nan ? NAN_LABEL : ""),
           ok ? "bit-exact" : detail);
}

}  // namespace

int run_oracle_checks(s24_context* ctx, bool gpu) {
    const int before = failures;
    std::mt19937 rng(77);
    std::vector<s24_dtype> dtypes = {S24_BF16, S24_FP16};
    if (!gpu) dtypes.insert(dtypes.begin(), S24_FP32);
    const s24_layout layouts[] = {S24_LAYOUT_DENSE, S24_LAYOUT_ROW, S24_LAYOUT_CUSPARSELT};
    for (s24_dtype dt : dtypes) {
        for (s24_layout layout : layouts) {
            for (auto rc : {std::pair<int64_t, int64_t>{64, 64}, {128, 192}, {7, 12}}) {
                if (!layout_fits(layout, dt, rc.first, rc.second)) continue;
                for (bool with_nan : {false, true}) {
                    oracle_sparsify_rows(ctx, dt, rc.first, rc.second, layout, false, with_nan, rng);
                    oracle_compress(ctx, dt, rc.first, rc.second, layout, with_nan, rng);
                }
                oracle_masked_grad(ctx, dt, rc.first, rc.second, layout, rng);
            }
        }
        for (bool with_nan : {false, true}) oracle_sparsify_rows(ctx, dt, 33, 100, S24_LAYOUT_DENSE, true, with_nan, rng);
        for (bool with_nan : {false, true}) {
            oracle_cols_split(ctx, dt, 64, 68, S24_LAYOUT_DENSE, S24_LAYOUT_DENSE, true, with_nan, rng);
            oracle_cols_split(ctx, dt, 30, 24, S24_LAYOUT_ROW, S24_LAYOUT_ROW, true, with_nan, rng);
            oracle_cols_split(ctx, dt, 30, 24, S24_LAYOUT_DENSE, S24_LAYOUT_ROW, false, with_nan, rng);
            if (dt != S24_FP32) {
                oracle_cols_split(ctx, dt, 128, 192, S24_LAYOUT_CUSPARSELT, S24_LAYOUT_CUSPARSELT, true, with_nan, rng);
                oracle_cols_split(ctx, dt, 64, 128, S24_LAYOUT_DENSE, S24_LAYOUT_CUSPARSELT, false, with_nan, rng);
            }
        }
    }
    const auto [split, unpermuted, exact, dense] = ffn_variants();
    struct Shape { int64_t T, d, f; };
    for (s24_dtype dt : dtypes) {
        for (Shape s : {Shape{128, 64, 256}, Shape{64, 128, 128}, Shape{30, 24, 68}, Shape{7, 16, 160}}) {
            oracle_ffn(ctx, dt, s.T, s.d, s.f, split, "split", false, rng);
            oracle_ffn(ctx, dt, s.T, s.d, s.f, unpermuted, "split-unpermuted", false, rng);
            oracle_ffn(ctx, dt, s.T, s.d, s.f, exact, "exact-bwd", false, rng);
            oracle_ffn(ctx, dt, s.T, s.d, s.f, dense, "dense", false, rng);
        }
        oracle_ffn(ctx, dt, 128, 64, 256, split, "split", true, rng);
        oracle_ffn(ctx, dt, 30, 24, 68, exact, "exact-bwd", true, rng);
    }
    return failures - before;
}

}  // namespace s24test
