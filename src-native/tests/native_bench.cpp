// s24_native_check bench [file]: kernel and FFN timings, sparse vs dense (CUDA events, median), optionally
// written as JSON.
#include "native_support.h"

namespace s24test {

int run_bench(const char* json_path) {
    s24_context* ctx = nullptr;
    S24_TRY(s24_context_create(S24_BACKEND_CUDA, 0, &ctx));
    s24_context_info info;
    S24_TRY(s24_context_get_info(ctx, &info));
    std::printf("sparse24 %s, device %s, direct_layout %d\n", s24_version(), info.device_name, info.direct_layout);
    std::mt19937 rng(7);
    Timer timer(ctx);
    FILE* json = json_path ? std::fopen(json_path, "w") : nullptr;
    if (json) std::fprintf(json, "{\"device\": \"%s\", \"results\": [\n", info.device_name);
    bool first = true;
    auto record = [&](const char* what, int64_t T, int64_t d, int64_t f, double ms, double ref_ms, double bytes) {
        std::printf("%-28s T=%-6lld d=%-5lld f=%-6lld %8.3f ms", what, (long long)T, (long long)d, (long long)f, ms);
        if (ref_ms > 0) std::printf("  dense %8.3f ms  speedup %.3fx", ref_ms, ref_ms / ms);
        if (bytes > 0) std::printf("  %.0f GB/s", bytes / ms / 1e6);
        std::printf("\n");
        if (json)
            std::fprintf(json, "%s{\"what\": \"%s\", \"T\": %lld, \"d\": %lld, \"f\": %lld, \"ms\": %.5f, \"dense_ms\": %.5f, \"gbps\": %.1f}",
                         first ? "" : ",\n", what, (long long)T, (long long)d, (long long)f, ms, ref_ms,
                         bytes > 0 ? bytes / ms / 1e6 : 0.0);
        first = false;
    };
    {  // copy bandwidth (bytes read + written)
        size_t bytes = (size_t)1 << 30;
        Buffer a(ctx, bytes), b(ctx, bytes);
        S24_TRY(s24_memset(ctx, a.ptr, 1, bytes));
        double ms = timer.median([&](int) { S24_TRY(s24_memcpy(ctx, b.ptr, a.ptr, bytes, S24_COPY_CONTEXT_TO_CONTEXT)); });
        record("copy (device to device)", 0, 0, 0, ms, 0, 2.0 * bytes);
    }
    struct Shape { int64_t T, d, f; };
    for (Shape s : {Shape{16384, 2048, 8192}, Shape{16384, 4096, 16384}, Shape{8192, 8192, 28672}}) {
        const int64_t T = s.T, d = s.d, f = s.f;
        Host16 hx = random16(S24_BF16, (size_t)T * f, rng, 1.f, -1.2f);  // ~90% negatives: sparse activations
        Buffer h(ctx, hx.bits.data(), hx.bits.size() * 2);
        Buffer y(ctx, packed_size(S24_LAYOUT_CUSPARSELT, S24_BF16, T, f));
        Buffer cnt(ctx, f * 4), tot(ctx, 16);
        double ms = timer.median([&](int) {
            S24_TRY(s24_sparsify24_rows(ctx, S24_BF16, T, f, h.ptr, 0, S24_LAYOUT_CUSPARSELT, y.ptr, (int32_t*)cnt.ptr,
                                        (int64_t*)tot.ptr));
        });
        record("sparsify24_rows (fused)", T, d, f, ms, 0, (double)T * f * 2 + (double)y.bytes);
        Buffer t(ctx, packed_size(S24_LAYOUT_CUSPARSELT, S24_BF16, f, T)), isd(ctx, f);
        S24_TRY(s24_memset(ctx, isd.ptr, 0, f));
        std::vector<int32_t> perm(T);
        S24_TRY(s24_token_permutation(1, 0, T, perm.data()));
        Buffer pb(ctx, perm.data(), T * 4);
        ms = timer.median([&](int) {
            S24_TRY(s24_sparsify24_cols_split(ctx, S24_BF16, T, f, y.ptr, S24_LAYOUT_CUSPARSELT, (int32_t*)pb.ptr,
                                              (uint8_t*)isd.ptr, nullptr, 0, S24_LAYOUT_CUSPARSELT, t.ptr, nullptr,
                                              nullptr));
        });
        record("cols_split (transpose 2:4)", T, d, f, ms, 0, (double)y.bytes + (double)t.bytes);
        // the four GEMMs of the FFN, sparse (default / searched algorithm) vs dense cuBLASLt
        Host16 w = random16(S24_BF16, (size_t)d * f, rng, 0.02f), xr = random16(S24_BF16, (size_t)T * d, rng);
        Buffer wb(ctx, w.bits.data(), w.bits.size() * 2), xb(ctx, xr.bits.data(), xr.bits.size() * 2),
            out(ctx, (size_t)std::max(T, f) * d * 2), dy(ctx, (size_t)T * f * 2);
        {
            double ms = timer.median([&](int) {
                S24_TRY(s24_masked_grad24(ctx, S24_BF16, T, f, h.ptr, y.ptr, S24_LAYOUT_CUSPARSELT, dy.ptr));
            });
            record("masked_grad24", T, d, f, ms, 0, (double)T * f * 2 + 2.0 * y.bytes);
            ms = timer.median([&](int) { S24_TRY(s24_gather_rows(ctx, S24_BF16, T, d, xb.ptr, (int32_t*)pb.ptr, out.ptr)); });
            record("gather_rows [T, d]", T, d, f, ms, 0, 4.0 * T * d);
        }
        // sparse: c = a (packed) times b (bt: b^T), ct: c stored transposed. dense: the same product as the
        // dense FFN computes it: dm x dn = op(dense_a) op(dense_b).
        struct Gemm { const char* name; int64_t m, n, k; const void* a; const void* b; bool bt, ct;
                      int64_t dm, dn; const void* dense_a; bool dense_at; const void* dense_b; bool dense_bt; };
        Gemm gemms[] = {
            {"GEMM Z = Y W2^T", T, d, f, y.ptr, wb.ptr, true, false, T, d, h.ptr, false, wb.ptr, true},
            {"GEMM Z (C col-major)", T, d, f, y.ptr, wb.ptr, true, true, T, d, h.ptr, false, wb.ptr, true},
            {"GEMM dX = dH W1", T, d, f, y.ptr, wb.ptr, false, false, T, d, h.ptr, false, wb.ptr, false},
            {"GEMM dW2^T = Yt dZ (C col)", f, d, T, t.ptr, xb.ptr, false, true, d, f, xb.ptr, true, h.ptr, false},
            {"GEMM dW1 = dHt X", f, d, T, t.ptr, xb.ptr, false, false, f, d, h.ptr, true, xb.ptr, false},
        };
        for (const Gemm& g : gemms) {
            double sp[2];
            for (int search = 0; search < 2; ++search) {
                S24_TRY(s24_context_set_algorithm_search(ctx, search));
                sp[search] = timer.median([&](int) {
                    S24_TRY(s24_spmm(ctx, S24_BF16, g.m, g.n, g.k, g.a, S24_LAYOUT_CUSPARSELT, g.b, g.bt, g.ct,
                                     out.ptr));
                });
            }
            S24_TRY(s24_context_set_algorithm_search(ctx, 0));
            // dense: same FLOPs, same operand orientations as the dense FFN uses
            const int64_t kk = g.k;
            double de = timer.median([&](int) {
                S24_TRY(s24_gemm(ctx, S24_BF16, g.dm, g.dn, kk, g.dense_a, g.dense_at, g.dense_b, g.dense_bt, out.ptr));
            });
            record(g.name, T, d, f, sp[0], de, 0);
            std::printf("   searched algorithm: %8.3f ms  speedup %.3fx; dense %.0f TFLOP/s\n", sp[1], de / sp[1],
                        2.0 * T * d * f / de / 1e9);
        }
    }
    for (Shape s : {Shape{16384, 2048, 8192}, Shape{16384, 4096, 16384}, Shape{8192, 8192, 28672}}) {
        const int64_t T = s.T, d = s.d, f = s.f;
        const float shift = sparse_w1_mean(d);
        Host16 x = random16(S24_BF16, (size_t)T * d, rng, 1.f, 0.5f), w1 = random16(S24_BF16, (size_t)f * d, rng, 0.02f, shift),
               w2 = random16(S24_BF16, (size_t)d * f, rng, 0.02f), dzh = random16(S24_BF16, (size_t)T * d, rng);
        Buffer xb(ctx, x.bits.data(), x.bits.size() * 2), w1b(ctx, w1.bits.data(), w1.bits.size() * 2),
            w2b(ctx, w2.bits.data(), w2.bits.size() * 2), dzb(ctx, dzh.bits.data(), dzh.bits.size() * 2),
            z(ctx, (size_t)T * d * 2), dx(ctx, (size_t)T * d * 2), dw1(ctx, (size_t)f * d * 2), dw2(ctx, (size_t)d * f * 2);
        double fwd[3], bwd[3];
        s24_sparsity sp{};
        for (int sparse = 0; sparse < 3; ++sparse) {  // dense, sparse, sparse with algorithm search
            s24_ffn_options o;
            s24_ffn_options_default(&o);
            o.sparse_forward = sparse > 0;
            o.sparse_backward = sparse > 0;
            o.algorithm_search = sparse == 2;
            s24_ffn* ffn = nullptr;
            s24_saved* saved = nullptr;
            S24_TRY(s24_ffn_create(ctx, T, d, f, S24_BF16, &o, &ffn));
            S24_TRY(s24_saved_create(ffn, &saved));
            fwd[sparse] = timer.median([&](int) { S24_TRY(s24_ffn_forward(ffn, xb.ptr, w1b.ptr, w2b.ptr, z.ptr, saved)); });
            bwd[sparse] = timer.median([&](int) {
                S24_TRY(s24_ffn_backward(ffn, saved, xb.ptr, w1b.ptr, w2b.ptr, dzb.ptr, dx.ptr, dw1.ptr, dw2.ptr));
            });
            if (sparse == 1) S24_TRY(s24_saved_sparsity(saved, &sp));
            s24_saved_destroy(saved);
            s24_ffn_destroy(ffn);
        }
        record("FFN forward", T, d, f, fwd[1], fwd[0], 0);
        record("FFN backward", T, d, f, bwd[1], bwd[0], 0);
        record("FFN forward+backward", T, d, f, fwd[1] + bwd[1], fwd[0] + bwd[0], 0);
        record("FFN forward (searched)", T, d, f, fwd[2], fwd[0], 0);
        record("FFN backward (searched)", T, d, f, bwd[2], bwd[0], 0);
        record("FFN fwd+bwd (searched)", T, d, f, fwd[2] + bwd[2], fwd[0] + bwd[0], 0);
        std::printf("   activation sparsity %.3f, forward 2:4 dropped %.4f of non-zeros\n",
                    1.0 - (double)sp.activation_nonzeros / ((double)T * f),
                    sp.activation_nonzeros ? 1.0 - (double)sp.forward_kept / sp.activation_nonzeros : 0.0);
    }
    if (json) {
        std::fprintf(json, "\n]}\n");
        std::fclose(json);
    }
    s24_context_destroy(ctx);
    return 0;
}

}  // namespace s24test
