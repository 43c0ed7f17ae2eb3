// s24_kernel_bench: checks and times the fused backward kernel grad_split24 (src/cuda/grad_split24.cu,
// compiled into this program too, so that each tuning variant can be launched directly) against the CPU
// reference and the two-kernel path (masked_grad24, then sparsify24_cols_split), through the C API; and
// times sparsify24_rows (the library's; a 4-blocks/SM variant measured no faster, 2026-11-29)
// against the library's.
//   s24_kernel_bench check            every variant and the C API entry vs the CPU backend: small awkward
//                                     shapes, bf16 / fp16, each output layout, with and without the
//                                     permutation and dense features; outputs poisoned; byte-exact; then the
//                                     FFN's two backward paths on both backends
//   s24_kernel_bench check --ops-only  the same without the GPU FFNs (no GEMM: for racecheck, under which the
//                                     GEMM libraries' kernels fault)
//   s24_kernel_bench bench            copy bandwidth, then per shape the row kernels, the two-kernel path
//                                     and each fused variant: median ms, bytes, GB/s, % of the copy, and
//                                     the fused outputs compared byte for byte with the two-kernel path
//   s24_kernel_bench ffn T d f        FFN backward: dense, sparse two-pass, sparse fused (median ms)
// Exit status 0 only if every comparison passed. Needs a CUDA device.
#include "sparse24.h"
#include "sparse_w1_mean.h"
#include "cuda/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

int failures = 0;

void report(bool ok, const std::string& what, const std::string& detail = "") {
    if (!ok) ++failures;
    std::printf("%s  %s%s%s\n", ok ? "ok  " : "FAIL", what.c_str(), detail.empty() ? "" : "  ", detail.c_str());
    std::fflush(stdout);
}

#define TRY(call)                                                                                         \
    do {                                                                                                  \
        s24_status st_ = (call);                                                                          \
        if (st_ != S24_OK)                                                                                \
            throw std::runtime_error(std::string(#call) + " -> " + s24_status_name(st_) + ": " + s24_last_error()); \
    } while (0)
#define CUDA(call)                                                                                        \
    do {                                                                                                  \
        cudaError_t e_ = (call);                                                                          \
        if (e_ != cudaSuccess) throw std::runtime_error(std::string(#call) + " -> " + cudaGetErrorName(e_)); \
    } while (0)

// ---- device memory and random data ---------------------------------------------------------------------
struct Dev {
    void* p = nullptr;
    size_t bytes = 0;
    explicit Dev(size_t n) : bytes(n) { CUDA(cudaMalloc(&p, n ? n : 1)); }
    ~Dev() { cudaFree(p); }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    template <class T> T* as() const { return static_cast<T*>(p); }
    std::vector<uint8_t> back() const {
        std::vector<uint8_t> h(bytes);
        CUDA(cudaMemcpy(h.data(), p, bytes, cudaMemcpyDeviceToHost));
        return h;
    }
    void put(const void* host) { CUDA(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice)); }
    void poison(cudaStream_t s) { CUDA(cudaMemsetAsync(p, 0xA5, bytes, s)); }
};

__device__ uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
// ~normal(mean, sd) 16-bit values (sum of 4 uniforms, scaled), never exactly zero.
__global__ void fill_normal(uint16_t* p, int64_t n, uint64_t seed, float mean, float sd, bool bf16) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const uint64_t h = mix64(seed ^ mix64((uint64_t)i));
        float u = 0.f;
        for (int k = 0; k < 4; ++k) u += (float)((h >> (16 * k)) & 0xffffu) / 65536.f;
        float v = mean + sd * (u - 2.f) * 1.7320508f;
        if (v == 0.f) v = 1e-3f;
        p[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v)) : __half_as_ushort(__float2half_rn(v));
    }
}
__global__ void count_diff_kernel(const uint8_t* a, const uint8_t* b, int64_t n, unsigned long long* count) {
    unsigned long long c = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        c += a[i] != b[i];
    if (c) atomicAdd(count, c);
}
// Bytes in which two device buffers of the same size differ (synchronizes the stream).
int64_t count_diff_dev(const Dev& a, const Dev& b, cudaStream_t s) {
    Dev count(8);
    CUDA(cudaMemsetAsync(count.p, 0, 8, s));
    count_diff_kernel<<<1024, 256, 0, s>>>(a.as<uint8_t>(), b.as<uint8_t>(), (int64_t)std::min(a.bytes, b.bytes),
                                           count.as<unsigned long long>());
    CUDA(cudaGetLastError());
    unsigned long long c = 0;
    CUDA(cudaMemcpyAsync(&c, count.p, 8, cudaMemcpyDeviceToHost, s));
    CUDA(cudaStreamSynchronize(s));
    return (int64_t)c;
}

void random_dev(Dev& d, s24_dtype dtype, uint64_t seed, float mean, float sd, cudaStream_t s) {
    const int64_t n = (int64_t)(d.bytes / 2);
    fill_normal<<<1024, 256, 0, s>>>(d.as<uint16_t>(), n, seed, mean, sd, dtype == S24_BF16);
    CUDA(cudaGetLastError());
}

uint16_t host_half(float v, s24_dtype dtype) {
    if (dtype == S24_BF16) return __bfloat16_as_ushort(__float2bfloat16_rn(v));
    return __half_as_ushort(__float2half_rn(v));
}

size_t packed_size(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols) {
    size_t b = 0;
    TRY(s24_packed_size(layout, dtype, rows, cols, &b));
    return b;
}

const char* layout_name(s24_layout l) {
    return l == S24_LAYOUT_CUSPARSELT ? "CUSPARSELT" : l == S24_LAYOUT_ROW ? "ROW" : "DENSE";
}

// The bf16 value at byte offset i.
float bf16_value(const std::vector<uint8_t>& v, size_t i) {
    const uint32_t u = ((uint32_t)v[i] | (uint32_t)v[i + 1] << 8) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// First differing byte, or -1.
int64_t first_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    if (a.size() != b.size()) return 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i]) return (int64_t)i;
    return -1;
}
int64_t count_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    int64_t n = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += a[i] != b[i];
    return n;
}

// The outputs of one grad_split24 call, read back.
struct Outputs {
    std::vector<uint8_t> dh, t, dense_cols, totals;
};

// Compares with the reference; "" when identical, else which output differs and where.
std::string diff(const Outputs& got, const Outputs& ref) {
    std::string out;
    auto one = [&](const char* name, const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
        const int64_t i = first_diff(a, b);
        if (i >= 0)
            out += std::string(name) + ": " + std::to_string(count_diff(a, b)) + " bytes differ, first at " +
                   std::to_string(i) + "; ";
    };
    one("dh", got.dh, ref.dh);
    one("t", got.t, ref.t);
    one("dense_cols", got.dense_cols, ref.dense_cols);
    one("totals", got.totals, ref.totals);
    return out;
}

// Device buffers of one problem: inputs (y packed, dy, perm, is_dense, dense_idx) and outputs.
struct Problem {
    s24_dtype dtype;
    int64_t T, F, k;
    s24_layout in_layout, out_layout;
    bool permute;
    Dev y, dy, perm, is_dense, dense_idx, dh, t, dense_cols, totals;
    Problem(s24_dtype dt, int64_t T_, int64_t F_, int64_t k_, s24_layout in, s24_layout out, bool perm_)
        : dtype(dt), T(T_), F(F_), k(k_), in_layout(in), out_layout(out), permute(perm_),
          y(packed_size(in, dt, T_, F_)), dy((size_t)T_ * F_ * 2), perm((size_t)T_ * 4), is_dense((size_t)F_),
          dense_idx((size_t)std::max<int64_t>(k_, 1) * 4), dh(packed_size(in, dt, T_, F_)),
          t(packed_size(out, dt, F_, T_)), dense_cols((size_t)std::max<int64_t>(T_ * k_, 1) * 2), totals(16) {}
    const int32_t* perm_ptr() const { return permute ? perm.as<int32_t>() : nullptr; }
    void* dense_cols_ptr() const { return k > 0 ? dense_cols.p : nullptr; }
    void poison(cudaStream_t s) {
        dh.poison(s);
        t.poison(s);
        dense_cols.poison(s);
        totals.poison(s);
    }
    Outputs back() const { return {dh.back(), t.back(), k > 0 ? dense_cols.back() : std::vector<uint8_t>(), totals.back()}; }
    // the fused op through the C API (the library's own kernel, or its fallback)
    void fused_api(s24_context* ctx) {
        TRY(s24_grad_split24(ctx, dtype, T, F, dy.p, y.p, in_layout, dh.p, perm_ptr(), is_dense.as<uint8_t>(),
                             dense_idx.as<int32_t>(), k, out_layout, t.p, dense_cols_ptr(), totals.as<int64_t>()));
    }
    // one variant of the fused kernel (this program's copy of grad_split24.cu)
    void fused_variant(int v, cudaStream_t s) {
        s24::cuda::launch_grad_split24(dtype, T, F, dy.p, y.p, dh.p, perm_ptr(), is_dense.as<uint8_t>(),
                                       dense_idx.as<int32_t>(), k, out_layout, t.p, dense_cols_ptr(),
                                       totals.as<int64_t>(), s, v);
    }
    // the two-kernel path through the C API
    void two_pass(s24_context* ctx) {
        TRY(s24_masked_grad24(ctx, dtype, T, F, dy.p, y.p, in_layout, dh.p));
        TRY(s24_sparsify24_cols_split(ctx, dtype, T, F, dh.p, in_layout, perm_ptr(), is_dense.as<uint8_t>(),
                                      dense_idx.as<int32_t>(), k, out_layout, t.p, dense_cols_ptr(), totals.as<int64_t>()));
    }
    // bytes the fused op must move: dy, y, dh, t, dense_cols (each once)
    double fused_bytes() const { return (double)dy.bytes + 2.0 * y.bytes + t.bytes + 2.0 * T * k; }
};

// ---- check -----------------------------------------------------------------------------------------------
struct Case {
    s24_dtype dtype;
    int64_t T, F;
    s24_layout in, out;
    bool permute;
    int dense;  // 0: none, 1: ~5% random, 2: the first min(F, 48) features (more than one band's stage)
};

void check_case(s24_context* cpu, s24_context* gpu, cudaStream_t s, const Case& c, std::mt19937& rng) {
    const int64_t T = c.T, F = c.F;
    std::vector<int32_t> idx;
    if (c.dense == 1) {
        std::vector<int32_t> all(F);
        for (int64_t i = 0; i < F; ++i) all[i] = (int32_t)i;
        std::shuffle(all.begin(), all.end(), rng);
        idx.assign(all.begin(), all.begin() + std::max<int64_t>(1, F / 20));
        std::sort(idx.begin(), idx.end());
    } else if (c.dense == 2) {
        for (int64_t i = 0; i < std::min<int64_t>(F, 48); ++i) idx.push_back((int32_t)i);
    }
    const int64_t k = (int64_t)idx.size();
    char name[160];
    std::snprintf(name, sizeof name, "%s T=%lld F=%lld %s->%s perm=%d k=%lld", c.dtype == S24_BF16 ? "bf16" : "fp16",
                  (long long)T, (long long)F, layout_name(c.in), layout_name(c.out), (int)c.permute, (long long)k);

    // inputs on the host: Yhat = sparsify24_rows(h) on the CPU (real relu^2 2:4 data, zeros included), dy
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<uint16_t> h((size_t)(T * F)), dy((size_t)(T * F));
    for (auto& v : h) v = host_half(nd(rng) - 0.5f, c.dtype);
    for (auto& v : dy) { float x = nd(rng); v = host_half(x == 0.f ? 1e-3f : x, c.dtype); }
    for (int i = 0; i < 8; ++i) dy[rng() % dy.size()] = 0;  // a few exact zeros
    std::vector<uint8_t> y(packed_size(c.in, c.dtype, T, F));
    TRY(s24_sparsify24_rows(cpu, c.dtype, T, F, h.data(), 0, c.in, y.data(), nullptr, nullptr));
    std::vector<int32_t> perm(T);
    TRY(s24_token_permutation(0x24 + T, F, T, perm.data()));
    std::vector<uint8_t> is_dense(F, 0);
    for (int32_t i : idx) is_dense[i] = 1;

    // the CPU reference (masked_grad24, then sparsify24_cols_split)
    Outputs ref;
    ref.dh.assign(y.size(), 0);
    ref.t.assign(packed_size(c.out, c.dtype, F, T), 0);
    ref.dense_cols.assign((size_t)(T * k) * 2, 0);
    ref.totals.assign(16, 0);
    TRY(s24_grad_split24(cpu, c.dtype, T, F, dy.data(), y.data(), c.in, ref.dh.data(), c.permute ? perm.data() : nullptr,
                         is_dense.data(), idx.empty() ? nullptr : idx.data(), k, c.out, ref.t.data(),
                         k > 0 ? ref.dense_cols.data() : nullptr, reinterpret_cast<int64_t*>(ref.totals.data())));

    Problem p(c.dtype, T, F, k, c.in, c.out, c.permute);
    p.y.put(y.data());
    p.dy.put(dy.data());
    p.perm.put(perm.data());
    p.is_dense.put(is_dense.data());
    if (k > 0) CUDA(cudaMemcpy(p.dense_idx.p, idx.data(), (size_t)k * 4, cudaMemcpyHostToDevice));

    auto run = [&](const std::string& what, const std::function<void()>& fn) {
        p.poison(s);
        fn();
        CUDA(cudaStreamSynchronize(s));
        const std::string d = diff(p.back(), ref);
        report(d.empty(), what + " " + name, d);
    };
    run("grad_split24 C API      ", [&] { p.fused_api(gpu); });
    run("two-pass C API          ", [&] { p.two_pass(gpu); });
    if (c.out == S24_LAYOUT_CUSPARSELT && s24::cuda::grad_split24_fits(c.in, T, F, p.dy.p, p.y.p, p.dh.p))
        for (int v = 0; v < s24::cuda::grad_split24_variant_count(); ++v)
            run("grad_split24 variant " + std::to_string(v) + "  ", [&] { p.fused_variant(v, s); });
}

// The FFN backward with fused_grad_split = 1 against 0 on one context: dX, dW1, dW2 byte-identical (two steps,
// so the second uses another permutation; nulls: bit 0 leaves out dX, bit 1 dW2).
void check_ffn_paths(s24_context* ctx, const char* backend, s24_dtype dt, int64_t T, int64_t d, int64_t f, int nulls,
                     std::mt19937& rng) {
    const size_t es = dt == S24_FP32 ? 4 : 2;
    std::normal_distribution<float> nd(0.f, 1.f);
    auto data = [&](size_t n, float sd) {
        std::vector<uint8_t> v(n * es);
        for (size_t i = 0; i < n; ++i) {
            const float x = sd * nd(rng);
            if (es == 4) std::memcpy(&v[4 * i], &x, 4);
            else { const uint16_t h = host_half(x, dt); std::memcpy(&v[2 * i], &h, 2); }
        }
        return v;
    };
    const std::vector<uint8_t> x = data(T * d, 1.f), w1 = data(f * d, 0.1f), w2 = data(d * f, 0.1f), dz = data(T * d, 1.f);
    auto mem = [&](const std::vector<uint8_t>& h) {  // a context buffer holding h
        void* p = nullptr;
        TRY(s24_malloc(ctx, h.size(), &p));
        TRY(s24_memcpy(ctx, p, h.data(), h.size(), S24_COPY_HOST_TO_CONTEXT));
        return p;
    };
    void *px = mem(x), *pw1 = mem(w1), *pw2 = mem(w2), *pdz = mem(dz), *pz = mem(dz);
    std::vector<uint8_t> out[2];
    for (int fused = 0; fused < 2; ++fused) {
        s24_ffn_options o;
        s24_ffn_options_default(&o);
        o.fused_grad_split = fused;
        s24_ffn* ffn = nullptr;
        s24_saved* saved = nullptr;
        TRY(s24_ffn_create(ctx, T, d, f, dt, &o, &ffn));
        TRY(s24_saved_create(ffn, &saved));
        void* g[3];
        const size_t sizes[3] = {(size_t)(T * d) * es, (size_t)(f * d) * es, (size_t)(d * f) * es};
        for (int i = 0; i < 3; ++i) g[i] = mem(std::vector<uint8_t>(sizes[i], 0x5a));
        for (int step = 0; step < 2; ++step) {
            TRY(s24_ffn_forward(ffn, px, pw1, pw2, pz, saved));
            TRY(s24_ffn_backward(ffn, saved, px, pw1, pw2, pdz, (nulls & 1) ? nullptr : g[0], g[1], (nulls & 2) ? nullptr : g[2]));
        }
        for (int i = 0; i < 3; ++i) {
            std::vector<uint8_t> h(sizes[i]);
            TRY(s24_memcpy(ctx, h.data(), g[i], sizes[i], S24_COPY_CONTEXT_TO_HOST));
            out[fused].insert(out[fused].end(), h.begin(), h.end());
            s24_free(ctx, g[i]);
        }
        s24_saved_destroy(saved);
        s24_ffn_destroy(ffn);
    }
    for (void* p : {px, pw1, pw2, pdz, pz}) s24_free(ctx, p);
    char name[160];
    std::snprintf(name, sizeof name, "FFN %s %s T=%lld d=%lld f=%lld nulls=%d: fused_grad_split 1 == 0", backend,
                  dt == S24_FP32 ? "fp32" : dt == S24_BF16 ? "bf16" : "fp16", (long long)T, (long long)d, (long long)f, nulls);
    report(out[0] == out[1], name);
}

int run_check(bool ops_only) {
    s24_context *cpu = nullptr, *gpu = nullptr;
    TRY(s24_context_create(S24_BACKEND_CPU, 0, &cpu));
    TRY(s24_context_create(S24_BACKEND_CUDA, 0, &gpu));
    cudaStream_t s;
    CUDA(cudaStreamCreate(&s));
    TRY(s24_context_set_stream(gpu, s));
    std::mt19937 rng(2411);
    const s24_layout C = S24_LAYOUT_CUSPARSELT, R = S24_LAYOUT_ROW, D = S24_LAYOUT_DENSE;
    std::vector<Case> cases;
    for (s24_dtype dt : {S24_BF16, S24_FP16}) {
        for (s24_layout out : {C, D, R}) {
            cases.push_back({dt, 192, 320, C, out, true, 1});   // T, F % 128 == 64: partial tiles and bands
            cases.push_back({dt, 256, 512, C, out, false, 0});
            cases.push_back({dt, 320, 192, C, out, true, 2});   // > 32 dense features in one band
        }
        cases.push_back({dt, 64, 64, C, C, true, 1});
        cases.push_back({dt, 1024, 2048, C, C, true, 1});
        cases.push_back({dt, 200, 96, R, R, true, 1});          // not the fused kernel's layout: the composition
    }
    for (const Case& c : cases) check_case(cpu, gpu, s, c, rng);
    for (int nulls = 0; nulls < 3; ++nulls) check_ffn_paths(cpu, "cpu", S24_FP32, 64, 32, 128, nulls, rng);
    check_ffn_paths(cpu, "cpu", S24_BF16, 62, 32, 128, 0, rng);  // tokens % 4 != 0: a DENSE split
    if (!ops_only) {
        check_ffn_paths(gpu, "cuda", S24_BF16, 256, 128, 512, 0, rng);
        check_ffn_paths(gpu, "cuda", S24_FP16, 192, 64, 320, 1, rng);
    }
    TRY(s24_context_set_stream(gpu, nullptr));
    CUDA(cudaStreamDestroy(s));
    s24_context_destroy(gpu);
    s24_context_destroy(cpu);
    std::printf("check: %d failed\n", failures);
    return failures ? 1 : 0;
}

// ---- bench -----------------------------------------------------------------------------------------------
struct Timer {
    cudaStream_t s;
    cudaEvent_t a, b;
    explicit Timer(cudaStream_t st) : s(st) {
        CUDA(cudaEventCreate(&a));
        CUDA(cudaEventCreate(&b));
    }
    ~Timer() {
        cudaEventDestroy(a);
        cudaEventDestroy(b);
    }
    // median of `reps` timings of fn after `warm` calls (ms)
    double median(const std::function<void()>& fn, int warm = 5, int reps = 25) {
        for (int i = 0; i < warm; ++i) fn();
        std::vector<float> t(reps);
        for (int i = 0; i < reps; ++i) {
            CUDA(cudaEventRecord(a, s));
            fn();
            CUDA(cudaEventRecord(b, s));
            CUDA(cudaEventSynchronize(b));
            CUDA(cudaEventElapsedTime(&t[i], a, b));
        }
        std::sort(t.begin(), t.end());
        return t[reps / 2];
    }
};

struct Row {
    std::string what, shape;
    double ms, bytes;
    std::string check;
};

int run_bench() {
    s24_context* gpu = nullptr;
    TRY(s24_context_create(S24_BACKEND_CUDA, 0, &gpu));
    cudaStream_t s;
    CUDA(cudaStreamCreate(&s));
    TRY(s24_context_set_stream(gpu, s));
    std::printf("sparse24 %s\n", s24_version());
    Timer timer(s);
    std::vector<Row> rows;
    double copy_gbs = 0;
    {
        const size_t bytes = (size_t)1 << 30;
        Dev a(bytes), b(bytes);
        CUDA(cudaMemsetAsync(a.p, 1, bytes, s));
        const double ms = timer.median([&] { CUDA(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, s)); });
        copy_gbs = 2.0 * bytes / ms / 1e6;
        rows.push_back({"copy 1 GiB (read + write)", "-", ms, 2.0 * bytes, ""});
    }
    const s24_dtype dt = S24_BF16;
    const s24_layout C = S24_LAYOUT_CUSPARSELT;
    struct Shape { int64_t T, F; };
    for (Shape sh : {Shape{16384, 8192}, Shape{16384, 16384}, Shape{8192, 28672}}) {
        const int64_t T = sh.T, F = sh.F;
        const int64_t k = std::min<int64_t>(F, ((F * 5 + 99) / 100 + 7) / 8 * 8);  // the FFN's 5%, multiple of 8
        const std::string shape = std::to_string(T) + "x" + std::to_string(F);
        Problem p(dt, T, F, k, C, C, true);
        Dev h((size_t)T * F * 2), counts((size_t)F * 4), tot(16);
        random_dev(h, dt, 1 + T + F, -1.2f, 1.f, s);  // ~88% of relu(h) zero, as in trained models
        random_dev(p.dy, dt, 2 + T + F, 0.f, 1.f, s);
        TRY(s24_sparsify24_rows(gpu, dt, T, F, h.p, 0, C, p.y.p, counts.as<int32_t>(), tot.as<int64_t>()));
        TRY(s24_select_dense_features(gpu, F, counts.as<int32_t>(), k, p.dense_idx.as<int32_t>(), p.is_dense.as<uint8_t>()));
        std::vector<int32_t> perm(T);
        TRY(s24_token_permutation(7, 0, T, perm.data()));
        p.perm.put(perm.data());
        CUDA(cudaStreamSynchronize(s));

        double ms = timer.median([&] {
            TRY(s24_sparsify24_rows(gpu, dt, T, F, h.p, 0, C, p.y.p, counts.as<int32_t>(), tot.as<int64_t>()));
        });
        rows.push_back({"sparsify24_rows + counts", shape, ms, (double)h.bytes + p.y.bytes, ""});
        ms = timer.median([&] { TRY(s24_masked_grad24(gpu, dt, T, F, p.dy.p, p.y.p, C, p.dh.p)); });
        rows.push_back({"masked_grad24", shape, ms, (double)p.dy.bytes + 2.0 * p.y.bytes, ""});
        ms = timer.median([&] {
            TRY(s24_sparsify24_cols_split(gpu, dt, T, F, p.y.p, C, p.perm.as<int32_t>(), p.is_dense.as<uint8_t>(),
                                          p.dense_idx.as<int32_t>(), k, C, p.t.p, p.dense_cols.p, p.totals.as<int64_t>()));
        });
        rows.push_back({"cols_split (perm, 5% dense)", shape, ms, (double)p.y.bytes + p.t.bytes + 2.0 * T * k, ""});

        // the two-kernel path: reference outputs (kept on the device, compared there) and time
        p.poison(s);
        p.two_pass(gpu);
        Dev ref_dh(p.dh.bytes), ref_t(p.t.bytes), ref_dc(p.dense_cols.bytes), ref_tot(16);
        for (auto [dst, src] : {std::pair<Dev*, Dev*>{&ref_dh, &p.dh}, {&ref_t, &p.t}, {&ref_dc, &p.dense_cols}, {&ref_tot, &p.totals}})
            CUDA(cudaMemcpyAsync(dst->p, src->p, src->bytes, cudaMemcpyDeviceToDevice, s));
        ms = timer.median([&] { p.two_pass(gpu); });
        rows.push_back({"two-pass masked_grad24 + cols_split", shape, ms, p.fused_bytes() + p.dh.bytes, ""});
        auto fused = [&](const std::string& what, const std::function<void()>& fn) {
            p.poison(s);
            fn();
            std::string d;
            for (auto [name, a, b] : {std::tuple<const char*, Dev*, Dev*>{"dh", &p.dh, &ref_dh}, {"t", &p.t, &ref_t},
                                      {"dense_cols", &p.dense_cols, &ref_dc}, {"totals", &p.totals, &ref_tot}}) {
                const int64_t n = count_diff_dev(*a, *b, s);
                if (n) d += std::string(name) + ": " + std::to_string(n) + " bytes differ; ";
            }
            if (!d.empty()) ++failures;
            const double t = timer.median(fn);
            rows.push_back({what, shape, t, p.fused_bytes(), d.empty() ? "same" : "DIFF " + d});
        };
        fused("grad_split24 (C API)", [&] { p.fused_api(gpu); });
        for (int v = 0; v < s24::cuda::grad_split24_variant_count(); ++v)
            fused("grad_split24 v" + std::to_string(v) + " " + s24::cuda::grad_split24_variant_name(v), [&, v] { p.fused_variant(v, s); });
    }
    std::printf("\n%-48s %-12s %9s %9s %8s %7s  %s\n", "kernel", "T x F", "ms", "MB", "GB/s", "% copy", "outputs");
    for (const Row& r : rows) {
        const double gbs = r.bytes / r.ms / 1e6;
        std::printf("%-48s %-12s %9.4f %9.1f %8.0f %7.1f  %s\n", r.what.c_str(), r.shape.c_str(), r.ms, r.bytes / 1e6,
                    gbs, 100.0 * gbs / copy_gbs, r.check.c_str());
    }
    std::printf("(bytes: each input read once, each output written once; the two-pass row counts dH written and read back; outputs: byte-exact vs the two-pass path / the library kernel)\n");
    TRY(s24_context_set_stream(gpu, nullptr));
    CUDA(cudaStreamDestroy(s));
    s24_context_destroy(gpu);
    std::printf("bench: %d comparisons failed\n", failures);
    return failures ? 1 : 0;
}

// ---- ffn ---------------------------------------------------------------------------------------------------
int run_ffn(int64_t T, int64_t d, int64_t f) {
    s24_context* gpu = nullptr;
    TRY(s24_context_create(S24_BACKEND_CUDA, 0, &gpu));
    cudaStream_t s;
    CUDA(cudaStreamCreate(&s));
    TRY(s24_context_set_stream(gpu, s));
    Timer timer(s);
    const s24_dtype dt = S24_BF16;
    {
        Dev x((size_t)T * d * 2), w1((size_t)f * d * 2), w2((size_t)d * f * 2), dz((size_t)T * d * 2), z((size_t)T * d * 2),
            dx((size_t)T * d * 2), dw1((size_t)f * d * 2), dw2((size_t)d * f * 2);
        // x ~ N(0.5, 1), w1 ~ N(shift, 0.02): ~88% of relu(H) zero
        const float shift = s24test::sparse_w1_mean(d);
        random_dev(x, dt, 11, 0.5f, 1.f, s);
        random_dev(w1, dt, 12, shift, 0.02f, s);
        random_dev(w2, dt, 13, 0.f, 0.02f, s);
        random_dev(dz, dt, 14, 0.f, 1.f, s);
        const char* names[] = {"dense", "sparse, two-pass dH split", "sparse, fused dH split"};
        double fwd[3], bwd[3];
        auto options = [](int mode) {
            s24_ffn_options o;
            s24_ffn_options_default(&o);
            o.sparse_forward = o.sparse_backward = mode > 0;
            o.fused_grad_split = mode == 2;
            return o;
        };
        // dX, dW1, dW2 of one step (step 0: the same permutation) of a fresh FFN
        auto one_step = [&](int mode) {
            const s24_ffn_options o = options(mode);
            s24_ffn* ffn = nullptr;
            s24_saved* saved = nullptr;
            TRY(s24_ffn_create(gpu, T, d, f, dt, &o, &ffn));
            TRY(s24_saved_create(ffn, &saved));
            TRY(s24_ffn_forward(ffn, x.p, w1.p, w2.p, z.p, saved));
            TRY(s24_ffn_backward(ffn, saved, x.p, w1.p, w2.p, dz.p, dx.p, dw1.p, dw2.p));
            CUDA(cudaStreamSynchronize(s));
            std::vector<uint8_t> g = dx.back();
            for (const Dev* w : {&dw1, &dw2}) {
                const std::vector<uint8_t> v = w->back();
                g.insert(g.end(), v.begin(), v.end());
            }
            s24_saved_destroy(saved);
            s24_ffn_destroy(ffn);
            return g;
        };
        for (int mode = 0; mode < 3; ++mode) {
            const s24_ffn_options o = options(mode);
            s24_ffn* ffn = nullptr;
            s24_saved* saved = nullptr;
            TRY(s24_ffn_create(gpu, T, d, f, dt, &o, &ffn));
            TRY(s24_saved_create(ffn, &saved));
            fwd[mode] = timer.median([&] { TRY(s24_ffn_forward(ffn, x.p, w1.p, w2.p, z.p, saved)); });
            bwd[mode] = timer.median([&] { TRY(s24_ffn_backward(ffn, saved, x.p, w1.p, w2.p, dz.p, dx.p, dw1.p, dw2.p)); });
            s24_saved_destroy(saved);
            s24_ffn_destroy(ffn);
        }
        const std::vector<uint8_t> two_a = one_step(1), two_b = one_step(1), fused = one_step(2);
        std::printf("\nFFN T=%lld d=%lld f=%lld bf16 (median of 25 after 5 warm-ups)\n", (long long)T, (long long)d, (long long)f);
        for (int m = 0; m < 3; ++m)
            std::printf("  %-28s forward %8.3f ms  backward %8.3f ms (%.3fx)  fwd+bwd %8.3f ms (%.3fx)\n", names[m], fwd[m],
                        bwd[m], bwd[0] / bwd[m], fwd[m] + bwd[m], (fwd[0] + bwd[0]) / (fwd[m] + bwd[m]));
        // the GEMMs may not be bitwise reproducible run to run: then the fused path must differ from the
        // two-pass one by no more than two-pass runs differ from each other
        auto max_rel = [&](const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
            double m = 0, ref = 0;
            for (size_t i = 0; i + 1 < a.size(); i += 2) {
                const float va = bf16_value(a, i), vb = bf16_value(b, i);
                ref = std::max(ref, (double)std::fabs(va));
                m = std::max(m, (double)std::fabs(va - vb));
            }
            return ref > 0 ? m / ref : m;
        };
        const double run_to_run = max_rel(two_a, two_b), fused_err = max_rel(two_a, fused);
        char detail[160];
        std::snprintf(detail, sizeof detail, "identical: %s; max |diff| / max |g|: fused %.3g, two-pass run to run %.3g",
                      fused == two_a ? "yes" : "no", fused_err, run_to_run);
        report(fused == two_a || fused_err <= run_to_run, "FFN gradients (dX, dW1, dW2): fused dH split vs two-pass", detail);
    }
    TRY(s24_context_set_stream(gpu, nullptr));
    CUDA(cudaStreamDestroy(s));
    s24_context_destroy(gpu);
    return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "check" && argc == 2) return run_check(false);
        if (mode == "check" && argc == 3 && std::string(argv[2]) == "--ops-only") return run_check(true);
        if (mode == "bench") return run_bench();
        if (mode == "ffn" && argc == 5) return run_ffn(std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]));
    } catch (const std::exception& e) {
        std::printf("FAIL  aborted: %s\n", e.what());
        return 2;
    }
    std::fprintf(stderr, "usage: %s check [--ops-only] | bench | ffn T d f\n", argv[0]);
    return 2;
}
