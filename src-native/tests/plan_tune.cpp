// s24_plan_tune: the FFN's sparse GEMM plans and its scheduling on a GPU, through the C API only.
//   s24_plan_tune gemms T d f [--tune] [--reps N] [--only z|dx|dw2|dw1]
//       the four sparse GEMMs of the FFN (Z, dX, dW2, dW1) through s24_spmm with tuned plans, each against
//       the dense cuBLASLt GEMM of the same shape in the same run. --tune first tunes each one again
//       (s24_spmm_tune) and prints every candidate: form, algorithm id, split-K, validation, median time.
//       Without --tune the plans come from the plan cache (validated) or are tuned on first use. --only
//       runs one of the four.
//   s24_plan_tune ffn T d f [--reps N]
//       FFN forward, backward and both: sparse with the side stream, sparse without it
//       (SPARSE24_SIDE_STREAM=0), and dense, interleaved rounds in one run (plans prepared by s24_ffn_tune).
//   s24_plan_tune graph T d f [--reps N]
//       the sparse FFN's steady-state forward + backward issued call by call vs captured once into a CUDA graph
//       and replayed (on a stream of our own; the replay repeats the captured step's token permutation).
//   s24_plan_tune clear
//       deletes the plan cache file.
//   s24_plan_tune cachecheck
//       the plan cache file in a fresh directory: written by a tuned s24_spmm, read back by a new context;
//       a damaged file (garbage, a truncated line, an algorithm id that does not exist) costs a tuning run and
//       is rewritten, results stay right; s24_plan_cache_clear deletes it. Prints PASS/FAIL lines.
// bf16; CUDA events, median of N runs (default 20) after 5 warm-up runs; random inputs (never zeros).
// Exit status 0 only if every call succeeded.
#include "sparse24.h"
#include "sparse_w1_mean.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const char* call, s24_status st) {
    std::fprintf(stderr, "FAIL %s: %s: %s\n", call, s24_status_name(st), s24_last_error());
    std::exit(1);
}

#define TRY(call)                                  \
    do {                                           \
        s24_status st_ = (call);                   \
        if (st_ != S24_OK) die(#call, st_);        \
    } while (0)

int reps = 20;
const int kWarmup = 5;
std::string only;  // "", or one of z, dx, dw2, dw1

uint16_t bf16(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

struct Buffer {
    s24_context* ctx;
    void* ptr = nullptr;
    size_t bytes;
    Buffer(s24_context* c, size_t n) : ctx(c), bytes(n) { TRY(s24_malloc(ctx, n, &ptr)); }
    ~Buffer() { s24_free(ctx, ptr); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
};

// elements bf16 values N(mean, std), tiled from a block of 2^20 (one block per seed).
void fill_normal(s24_context* ctx, void* dst, size_t elements, float mean, float stddev, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(mean, stddev);
    std::vector<uint16_t> block(std::min<size_t>(elements, (size_t)1 << 20));
    for (auto& v : block) v = bf16(normal(rng));
    for (size_t done = 0; done < elements; done += block.size()) {
        const size_t n = std::min(block.size(), elements - done);
        TRY(s24_memcpy(ctx, (char*)dst + done * 2, block.data(), n * 2, S24_COPY_HOST_TO_CONTEXT));
    }
}

// The FFN's operands, bf16 random: x ~ N(0.5, 1), w1 ~ N(shift, 0.02) so that ~88% of relu(H) is zero as in
// trained models, w2 ~ N(0, 0.02), dz ~ N(0, 1); z, dx, dw1, dw2 uninitialized.
struct FfnData {
    Buffer x, w1, w2, dz, z, dx, dw1, dw2;
    FfnData(s24_context* ctx, int64_t T, int64_t d, int64_t f)
        : x(ctx, T * d * 2), w1(ctx, f * d * 2), w2(ctx, d * f * 2), dz(ctx, T * d * 2), z(ctx, T * d * 2),
          dx(ctx, T * d * 2), dw1(ctx, f * d * 2), dw2(ctx, d * f * 2) {
        const float shift = s24test::sparse_w1_mean(d);
        fill_normal(ctx, x.ptr, T * d, 0.5f, 1.f, 1);
        fill_normal(ctx, w1.ptr, f * d, shift, 0.02f, 2);
        fill_normal(ctx, w2.ptr, d * f, 0.f, 0.02f, 3);
        fill_normal(ctx, dz.ptr, T * d, 0.f, 1.f, 4);
    }
};

struct Timer {
    s24_event *start = nullptr, *end = nullptr;
    explicit Timer(s24_context* ctx) {
        TRY(s24_event_create(ctx, &start));
        TRY(s24_event_create(ctx, &end));
    }
    ~Timer() {
        s24_event_destroy(start);
        s24_event_destroy(end);
    }
    double median(const std::function<void()>& fn) {
        for (int i = 0; i < kWarmup; ++i) fn();
        std::vector<float> t(reps);
        for (int i = 0; i < reps; ++i) {
            TRY(s24_event_record(start));
            fn();
            TRY(s24_event_record(end));
            TRY(s24_event_elapsed_ms(start, end, &t[i]));
        }
        std::sort(t.begin(), t.end());
        return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    }
};

const char* form_label(int form) {
    switch (form) {
        case S24_PLAN_ROW_C: return "row_c";
        case S24_PLAN_COL_C: return "col_c";
        case S24_PLAN_STRUCTURED_B: return "structured_b";
    }
    return "?";
}

// Tunes one GEMM again and prints every candidate; returns the best valid time per form (NaN: none).
std::vector<double> tune(s24_context* ctx, const char* name, int64_t m, int64_t n, int64_t k, int b_t, int c_t,
                         double dense_ms) {
    std::vector<s24_plan_candidate> c(512);
    int64_t count = 0, chosen = -1;
    TRY(s24_spmm_tune(ctx, S24_BF16, m, n, k, b_t, c_t, c.data(), (int64_t)c.size(), &count, &chosen));
    std::printf("tune %s m=%lld n=%lld k=%lld b_transposed=%d c_transposed=%d: %lld candidates, dense %.3f ms\n",
                name, (long long)m, (long long)n, (long long)k, b_t, c_t, (long long)count, dense_ms);
    std::printf("  %-13s %4s %-10s %-6s %9s %9s %8s\n", "form", "alg", "split-k", "valid", "error", "ms", "vs dense");
    std::vector<double> best(3, NAN);
    for (int64_t i = 0; i < count && i < (int64_t)c.size(); ++i) {
        const s24_plan_candidate& p = c[(size_t)i];
        char split[32];
        std::snprintf(split, sizeof split, "%d/%d/%d", p.split_k, p.split_k_mode, p.split_k_buffers);
        std::printf("  %-13s %4d %-10s %-6s %9.2g %9.3f %7.3fx%s%s\n", form_label(p.form), p.algorithm, split,
                    p.valid ? "yes" : "NO", p.error, p.ms, dense_ms / p.ms, p.searched ? "  (search's choice)" : "",
                    i == chosen ? "  <- chosen" : "");
        if (p.valid && p.form >= 0 && p.form < 3 && !(best[(size_t)p.form] <= p.ms)) best[(size_t)p.form] = p.ms;
    }
    if (chosen >= 0 && chosen < count)
        std::printf("  chosen: %s alg %d split-k %d: %.3f ms = %.3fx dense\n", form_label(c[(size_t)chosen].form),
                    c[(size_t)chosen].algorithm, c[(size_t)chosen].split_k, c[(size_t)chosen].ms,
                    dense_ms / c[(size_t)chosen].ms);
    return best;
}

int run_gemms(int64_t T, int64_t d, int64_t f, bool retune) {
    s24_context* ctx = nullptr;
    TRY(s24_context_create(S24_BACKEND_CUDA, 0, &ctx));
    s24_context_info info;
    TRY(s24_context_get_info(ctx, &info));
    std::printf("== gemms T=%lld d=%lld f=%lld on %s (direct layout %d, cuSPARSELt %d), bf16, median of %d\n",
                (long long)T, (long long)d, (long long)f, info.device_name, info.direct_layout,
                info.cusparselt_version, reps);
    TRY(s24_context_set_algorithm_search(ctx, 1));
    Timer timer(ctx);
    size_t packed_tf = 0, packed_ft = 0;
    TRY(s24_packed_size(S24_LAYOUT_CUSPARSELT, S24_BF16, T, f, &packed_tf));
    TRY(s24_packed_size(S24_LAYOUT_CUSPARSELT, S24_BF16, f, T, &packed_ft));
    {
        Buffer x(ctx, T * d * 2), w1(ctx, f * d * 2), w2(ctx, d * f * 2), dz(ctx, T * d * 2), h(ctx, T * f * 2),
            ht(ctx, f * T * 2), z(ctx, T * d * 2), dx(ctx, T * d * 2), dw1(ctx, f * d * 2), dw2(ctx, d * f * 2),
            y(ctx, packed_tf), yt(ctx, packed_ft);
        fill_normal(ctx, x.ptr, T * d, 0.5f, 1.f, 1);
        fill_normal(ctx, w1.ptr, f * d, 0.f, 0.02f, 2);
        fill_normal(ctx, w2.ptr, d * f, 0.f, 0.02f, 3);
        fill_normal(ctx, dz.ptr, T * d, 0.f, 1.f, 4);
        fill_normal(ctx, h.ptr, T * f, 0.f, 1.f, 5);
        fill_normal(ctx, ht.ptr, f * T, 0.f, 1.f, 6);
        TRY(s24_compress24(ctx, S24_BF16, T, f, h.ptr, S24_LAYOUT_CUSPARSELT, y.ptr));
        TRY(s24_compress24(ctx, S24_BF16, f, T, ht.ptr, S24_LAYOUT_CUSPARSELT, yt.ptr));

        struct Gemm {
            const char* id;
            const char* name;
            int64_t m, n, k;
            int b_t, c_t;
            std::function<void()> sparse, dense;
        };
        const Gemm gemms[] = {
            {"z", "Z = Yhat W2^T", T, d, f, 1, 0,
             [&] { TRY(s24_spmm(ctx, S24_BF16, T, d, f, y.ptr, S24_LAYOUT_CUSPARSELT, w2.ptr, 1, 0, z.ptr)); },
             [&] { TRY(s24_gemm(ctx, S24_BF16, T, d, f, h.ptr, 0, w2.ptr, 1, z.ptr)); }},
            {"dx", "dX = dH W1", T, d, f, 0, 0,
             [&] { TRY(s24_spmm(ctx, S24_BF16, T, d, f, y.ptr, S24_LAYOUT_CUSPARSELT, w1.ptr, 0, 0, dx.ptr)); },
             [&] { TRY(s24_gemm(ctx, S24_BF16, T, d, f, h.ptr, 0, w1.ptr, 0, dx.ptr)); }},
            {"dw2", "dW2 = (Yt dZ)^T", f, d, T, 0, 1,
             [&] { TRY(s24_spmm(ctx, S24_BF16, f, d, T, yt.ptr, S24_LAYOUT_CUSPARSELT, dz.ptr, 0, 1, dw2.ptr)); },
             [&] { TRY(s24_gemm(ctx, S24_BF16, d, f, T, dz.ptr, 1, h.ptr, 0, dw2.ptr)); }},
            {"dw1", "dW1 = Ht X", f, d, T, 0, 0,
             [&] { TRY(s24_spmm(ctx, S24_BF16, f, d, T, yt.ptr, S24_LAYOUT_CUSPARSELT, x.ptr, 0, 0, dw1.ptr)); },
             [&] { TRY(s24_gemm(ctx, S24_BF16, f, d, T, h.ptr, 1, x.ptr, 0, dw1.ptr)); }},
        };
        std::vector<double> in_use(4, NAN), dense(4, NAN);
        std::vector<std::vector<double>> best(4, std::vector<double>(3, NAN));
        for (int i = 0; i < 4; ++i) {
            const Gemm& g = gemms[i];
            if (!only.empty() && only != g.id) continue;
            dense[i] = timer.median(g.dense);
            if (retune) best[i] = tune(ctx, g.name, g.m, g.n, g.k, g.b_t, g.c_t, dense[i]);
            g.sparse();  // the plan (from the tuning above, the plan cache, or tuned now)
            TRY(s24_context_synchronize(ctx));
            in_use[i] = timer.median(g.sparse);
        }
        std::printf("summary T=%lld d=%lld f=%lld (s24_spmm with the plan in use vs s24_gemm, same run)\n",
                    (long long)T, (long long)d, (long long)f);
        for (size_t i = 0; i < in_use.size(); ++i)
            std::printf("  %-18s sparse %8.3f ms  dense %8.3f ms  %6.3fx\n", gemms[i].name, in_use[i], dense[i],
                        dense[i] / in_use[i]);
        std::printf("  dW2 vs dW1 (plan in use): %.3f vs %.3f ms = %.3f\n", in_use[2], in_use[3], in_use[2] / in_use[3]);
        if (retune)
            std::printf("  dW2 best per form: row_c+transpose %.3f, col_c %.3f, structured_b %.3f ms; dW1 best %.3f ms\n",
                        best[2][0], best[2][1], best[2][2], best[3][0]);
    }
    TRY(s24_context_destroy(ctx));
    return 0;
}

int run_ffn(int64_t T, int64_t d, int64_t f) {
    s24_context* ctx = nullptr;
    TRY(s24_context_create(S24_BACKEND_CUDA, 0, &ctx));
    s24_context_info info;
    TRY(s24_context_get_info(ctx, &info));
    std::printf("== ffn T=%lld d=%lld f=%lld on %s, bf16, median of %d after %d warm-up\n", (long long)T,
                (long long)d, (long long)f, info.device_name, reps, kWarmup);
    Timer a(ctx), b(ctx);
    s24_event* mid = nullptr;
    TRY(s24_event_create(ctx, &mid));
    {
        const FfnData data(ctx, T, d, f);
        void *x = data.x.ptr, *w1 = data.w1.ptr, *w2 = data.w2.ptr, *dz = data.dz.ptr, *z = data.z.ptr,
             *dx = data.dx.ptr, *dw1 = data.dw1.ptr, *dw2 = data.dw2.ptr;

        s24_ffn_options sparse_opts, dense_opts;
        s24_ffn_options_default(&sparse_opts);
        s24_ffn_options_default(&dense_opts);
        dense_opts.sparse_forward = dense_opts.sparse_backward = 0;
        const char* labels[3] = {"sparse, side stream", "sparse, one stream", "dense"};
        s24_ffn* ffn[3] = {nullptr, nullptr, nullptr};
        s24_saved* saved[3] = {nullptr, nullptr, nullptr};
        setenv("SPARSE24_SIDE_STREAM", "1", 1);
        TRY(s24_ffn_create(ctx, T, d, f, S24_BF16, &sparse_opts, &ffn[0]));
        setenv("SPARSE24_SIDE_STREAM", "0", 1);
        TRY(s24_ffn_create(ctx, T, d, f, S24_BF16, &sparse_opts, &ffn[1]));
        TRY(s24_ffn_create(ctx, T, d, f, S24_BF16, &dense_opts, &ffn[2]));
        unsetenv("SPARSE24_SIDE_STREAM");
        for (int i = 0; i < 3; ++i) {
            TRY(s24_ffn_tune(ffn[i]));
            TRY(s24_saved_create(ffn[i], &saved[i]));
        }
        std::vector<std::vector<float>> fwd(3), bwd(3), both(3);
        // Rounds of (each variant once) so that clocks and temperature drift hit every variant alike.
        for (int r = -kWarmup; r < reps; ++r)
            for (int i = 0; i < 3; ++i) {
                TRY(s24_event_record(a.start));
                TRY(s24_ffn_forward(ffn[i], x, w1, w2, z, saved[i]));
                TRY(s24_event_record(mid));
                TRY(s24_ffn_backward(ffn[i], saved[i], x, w1, w2, dz, dx, dw1, dw2));
                TRY(s24_event_record(a.end));
                float t1 = 0, t2 = 0, t3 = 0;
                TRY(s24_event_elapsed_ms(a.start, mid, &t1));
                TRY(s24_event_elapsed_ms(mid, a.end, &t2));
                TRY(s24_event_elapsed_ms(a.start, a.end, &t3));
                if (r < 0) continue;
                fwd[i].push_back(t1);
                bwd[i].push_back(t2);
                both[i].push_back(t3);
            }
        auto median = [](std::vector<float> v) {
            std::sort(v.begin(), v.end());
            const size_t n = v.size();
            return n % 2 ? (double)v[n / 2] : 0.5 * ((double)v[n / 2 - 1] + v[n / 2]);
        };
        auto spread = [](std::vector<float> v) {
            std::sort(v.begin(), v.end());
            return (double)v[v.size() * 9 / 10] - (double)v[v.size() / 10];  // p90 - p10
        };
        std::printf("  %-22s %10s %10s %10s %8s %8s %8s %s\n", "variant", "fwd ms", "bwd ms", "both ms", "fwd x",
                    "bwd x", "both x", "(x: dense / variant; bwd p90-p10 ms)");
        for (int i = 0; i < 3; ++i)
            std::printf("  %-22s %10.3f %10.3f %10.3f %7.3fx %7.3fx %7.3fx %.3f\n", labels[i], median(fwd[i]),
                        median(bwd[i]), median(both[i]), median(fwd[2]) / median(fwd[i]),
                        median(bwd[2]) / median(bwd[i]), median(both[2]) / median(both[i]), spread(bwd[i]));
        std::printf("  side stream effect on the backward: %.3f ms (one stream %.3f -> side stream %.3f)\n",
                    median(bwd[1]) - median(bwd[0]), median(bwd[1]), median(bwd[0]));
        for (int i = 0; i < 3; ++i) {
            TRY(s24_saved_destroy(saved[i]));
            TRY(s24_ffn_destroy(ffn[i]));
        }
    }
    s24_event_destroy(mid);
    TRY(s24_context_destroy(ctx));
    return 0;
}

int run_graph(int64_t T, int64_t d, int64_t f) {
    s24_context* ctx = nullptr;
    TRY(s24_context_create(S24_BACKEND_CUDA, 0, &ctx));
    cudaStream_t stream = nullptr;
    if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        std::fprintf(stderr, "FAIL cudaStreamCreateWithFlags\n");
        return 1;
    }
    TRY(s24_context_set_stream(ctx, stream));
    std::printf("== graph T=%lld d=%lld f=%lld, bf16, median of %d\n", (long long)T, (long long)d, (long long)f, reps);
    int rc = 0;
    {
        const FfnData data(ctx, T, d, f);
        void *x = data.x.ptr, *w1 = data.w1.ptr, *w2 = data.w2.ptr, *dz = data.dz.ptr, *z = data.z.ptr,
             *dx = data.dx.ptr, *dw1 = data.dw1.ptr, *dw2 = data.dw2.ptr;
        s24_ffn_options opts;
        s24_ffn_options_default(&opts);
        s24_ffn* ffn = nullptr;
        s24_saved* saved = nullptr;
        TRY(s24_ffn_create(ctx, T, d, f, S24_BF16, &opts, &ffn));
        TRY(s24_ffn_tune(ffn));
        TRY(s24_saved_create(ffn, &saved));
        auto step = [&] {
            TRY(s24_ffn_forward(ffn, x, w1, w2, z, saved));
            TRY(s24_ffn_backward(ffn, saved, x, w1, w2, dz, dx, dw1, dw2));
        };
        Timer timer(ctx);
        const double direct = timer.median(step);  // warms up every buffer and plan as well
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        cudaError_t err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
        if (err == cudaSuccess) {
            step();
            err = cudaStreamEndCapture(stream, &graph);
        }
        if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
        if (err != cudaSuccess) {
            std::printf("  capture failed: %s: %s\n", cudaGetErrorName(err), cudaGetErrorString(err));
            (void)cudaGetLastError();
            rc = 1;
        } else {
            size_t nodes = 0;
            (void)cudaGraphGetNodes(graph, nullptr, &nodes);
            const double replay = timer.median([&] {
                if (cudaGraphLaunch(exec, stream) != cudaSuccess) {
                    std::fprintf(stderr, "FAIL cudaGraphLaunch\n");
                    std::exit(1);
                }
            });
            std::printf("  forward + backward: call by call %.3f ms, CUDA graph replay %.3f ms (%zu nodes): %+.3f ms\n",
                        direct, replay, nodes, replay - direct);
            (void)cudaGraphExecDestroy(exec);
            (void)cudaGraphDestroy(graph);
        }
        TRY(s24_context_synchronize(ctx));
        TRY(s24_saved_destroy(saved));
        TRY(s24_ffn_destroy(ffn));
    }
    TRY(s24_context_set_stream(ctx, nullptr));
    TRY(s24_context_destroy(ctx));
    (void)cudaStreamDestroy(stream);
    return rc;
}

// ---- cachecheck -------------------------------------------------------------------------------------------

int check_failures = 0;

void expect(bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
    if (!ok) ++check_failures;
}

std::vector<std::string> lines_of(const std::string& path) {
    std::vector<std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

// One tuned s24_spmm (bf16, a [m, k] packed, c transposed or not) against s24_gemm of the unpacked a; returns
// max |sparse - dense| / max |dense| (infinity on a NaN).
double spmm_error(s24_context* ctx, int64_t m, int64_t n, int64_t k, int c_t) {
    size_t packed = 0;
    TRY(s24_packed_size(S24_LAYOUT_CUSPARSELT, S24_BF16, m, k, &packed));
    Buffer a(ctx, m * k * 2), ap(ctx, packed), ad(ctx, m * k * 2), b(ctx, k * n * 2), c(ctx, m * n * 2),
        ref(ctx, m * n * 2);
    fill_normal(ctx, a.ptr, m * k, 0.f, 1.f, 7);
    fill_normal(ctx, b.ptr, k * n, 0.f, 1.f, 8);
    TRY(s24_compress24(ctx, S24_BF16, m, k, a.ptr, S24_LAYOUT_CUSPARSELT, ap.ptr));
    TRY(s24_decompress24(ctx, S24_BF16, m, k, ap.ptr, S24_LAYOUT_CUSPARSELT, ad.ptr));
    TRY(s24_memset(ctx, c.ptr, 0xff, m * n * 2));
    TRY(s24_spmm(ctx, S24_BF16, m, n, k, ap.ptr, S24_LAYOUT_CUSPARSELT, b.ptr, 0, c_t, c.ptr));
    if (c_t) TRY(s24_gemm(ctx, S24_BF16, n, m, k, b.ptr, 1, ad.ptr, 1, ref.ptr));  // c^T = b^T a^T
    else TRY(s24_gemm(ctx, S24_BF16, m, n, k, ad.ptr, 0, b.ptr, 0, ref.ptr));
    std::vector<uint16_t> got(m * n), want(m * n);
    TRY(s24_memcpy(ctx, got.data(), c.ptr, m * n * 2, S24_COPY_CONTEXT_TO_HOST));
    TRY(s24_memcpy(ctx, want.data(), ref.ptr, m * n * 2, S24_COPY_CONTEXT_TO_HOST));
    auto value = [](uint16_t h) {
        const uint32_t u = (uint32_t)h << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    };
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double g = value(got[i]), w = value(want[i]);
        if (!std::isfinite(g)) return INFINITY;
        max_diff = std::max(max_diff, std::fabs(g - w));
        max_ref = std::max(max_ref, std::fabs(w));
    }
    return max_diff / std::max(max_ref, 1e-30);
}

int run_cachecheck() {
    char dir[] = "/tmp/s24-plan-cache-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
        std::fprintf(stderr, "FAIL mkdtemp\n");
        return 1;
    }
    setenv("SPARSE24_CACHE_DIR", dir, 1);
    unsetenv("SPARSE24_PLAN_CACHE");
    const std::string path = std::string(dir) + "/plans/cusparselt-plans.txt";
    const int64_t m = 256, n = 128, k = 512;
    auto session = [&](const char* what) {
        s24_context* ctx = nullptr;
        TRY(s24_context_create(S24_BACKEND_CUDA, 0, &ctx));
        TRY(s24_context_set_algorithm_search(ctx, 1));
        const double e0 = spmm_error(ctx, m, n, k, 0), e1 = spmm_error(ctx, m, n, k, 1);
        char text[160];
        std::snprintf(text, sizeof text, "%s: tuned spmm agrees with the dense product (errors %.2g, %.2g)", what, e0, e1);
        expect(e0 <= 1e-2 && e1 <= 1e-2, text);
        TRY(s24_context_destroy(ctx));
    };
    auto entries = [&] {
        int n_ok = 0;
        for (const std::string& line : lines_of(path))
            if (line.find(" 256 128 512 0 0 -> ") != std::string::npos || line.find(" 256 128 512 0 1 -> ") != std::string::npos)
                ++n_ok;
        return n_ok;
    };
    session("first context");
    expect(entries() == 2, "the plan cache has one line for each of the two GEMMs: " + path);
    for (const std::string& line : lines_of(path)) std::printf("  %s\n", line.c_str());
    session("second context (plans read back)");
    expect(entries() == 2, "still one line each");

    // Damage: garbage, a truncated line, and the two requests pointing at an algorithm id that does not exist.
    std::vector<std::string> damaged = {"garbage without an arrow", "a b c -> row_c 1 2"};
    for (std::string line : lines_of(path)) {
        const size_t arrow = line.find(" -> ");
        if (arrow == std::string::npos) continue;
        const std::string form = line.substr(arrow + 4, line.find(' ', arrow + 4) - arrow - 4);
        damaged.push_back(line.substr(0, arrow) + " -> " + form + " 99999 0 0 0 0.001");
    }
    {
        std::ofstream out(path, std::ios::trunc);
        for (const std::string& line : damaged) out << line << "\n";
    }
    session("third context (damaged cache)");
    int bogus = 0, garbage = 0;
    for (const std::string& line : lines_of(path)) {
        if (line.find(" 99999 ") != std::string::npos) ++bogus;
        if (line.find("garbage") != std::string::npos || line.find("a b c") == 0) ++garbage;
    }
    expect(entries() == 2 && bogus == 0 && garbage == 0,
           "the damaged file was rewritten: valid lines for both GEMMs, no bogus algorithm, no garbage");
    {
        s24_context* ctx = nullptr;
        TRY(s24_context_create(S24_BACKEND_CUDA, 0, &ctx));
        TRY(s24_plan_cache_clear(ctx));
        TRY(s24_context_destroy(ctx));
    }
    expect(!std::ifstream(path).good(), "s24_plan_cache_clear deleted the file");
    std::printf("%s: %d failed\n", check_failures ? "FAIL" : "PASS", check_failures);
    return check_failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a step killed by its time limit keeps what it printed
    std::vector<std::string> args(argv + 1, argv + argc);
    bool retune = false;
    std::vector<std::string> rest;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--tune") retune = true;
        else if (args[i] == "--reps" && i + 1 < args.size()) reps = std::max(1, std::atoi(args[++i].c_str()));
        else if (args[i] == "--only" && i + 1 < args.size()) only = args[++i];
        else rest.push_back(args[i]);
    }
    if (rest.size() == 1 && rest[0] == "cachecheck") return run_cachecheck();
    if (rest.size() == 1 && rest[0] == "clear") {
        s24_context* ctx = nullptr;
        TRY(s24_context_create(S24_BACKEND_CUDA, 0, &ctx));
        TRY(s24_plan_cache_clear(ctx));
        TRY(s24_context_destroy(ctx));
        std::printf("plan cache cleared\n");
        return 0;
    }
    if (rest.size() == 4 && (rest[0] == "gemms" || rest[0] == "ffn" || rest[0] == "graph")) {
        const int64_t T = std::atoll(rest[1].c_str()), d = std::atoll(rest[2].c_str()), f = std::atoll(rest[3].c_str());
        if (T > 0 && d > 0 && f > 0)
            return rest[0] == "gemms" ? run_gemms(T, d, f, retune) : rest[0] == "ffn" ? run_ffn(T, d, f) : run_graph(T, d, f);
    }
    std::fprintf(stderr, "usage: %s gemms T d f [--tune] [--reps N] [--only z|dx|dw2|dw1] | ffn T d f [--reps N] | "
                 "graph T d f [--reps N] | clear | cachecheck\n", argv[0]);
    return 2;
}
