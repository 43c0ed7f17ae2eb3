// s24_native_check breakdown T d f: each step of the FFN timed alone, next to the FFN calls.
#include "native_support.h"

namespace s24test {

// Times every step of the FFN's forward and backward separately (building blocks on the same buffers
// the FFN uses) next to the FFN calls themselves, for one shape: where the sparse FFN's time goes.
int run_breakdown(int64_t T, int64_t d, int64_t f) {
    s24_context* ctx = nullptr;
    S24_TRY(s24_context_create(S24_BACKEND_CUDA, 0, &ctx));
    S24_TRY(s24_context_set_algorithm_search(ctx, 1));
    std::mt19937 rng(11);
    Timer timer(ctx);
    const float shift = sparse_w1_mean(d);
    Host16 x = random16(S24_BF16, (size_t)T * d, rng, 1.f, 0.5f), w1 = random16(S24_BF16, (size_t)f * d, rng, 0.02f, shift),
           w2 = random16(S24_BF16, (size_t)d * f, rng, 0.02f), dzh = random16(S24_BF16, (size_t)T * d, rng);
    {  // every Buffer is freed before the context is destroyed
        Buffer xb(ctx, x.bits.data(), x.bits.size() * 2), w1b(ctx, w1.bits.data(), w1.bits.size() * 2),
            w2b(ctx, w2.bits.data(), w2.bits.size() * 2), dzb(ctx, dzh.bits.data(), dzh.bits.size() * 2),
            z(ctx, (size_t)T * d * 2), dx(ctx, (size_t)T * d * 2), dw1(ctx, (size_t)f * d * 2), dw2(ctx, (size_t)d * f * 2);
        const int64_t k = std::min(f, ((f * 5 + 99) / 100 + 7) / 8 * 8);  // as the FFN's split: 5%, multiple of 8
        Buffer h(ctx, (size_t)T * f * 2), y(ctx, packed_size(S24_LAYOUT_CUSPARSELT, S24_BF16, T, f)), cnt(ctx, f * 4),
            tot(ctx, 16), dy(ctx, (size_t)T * f * 2), dh(ctx, y.bytes), perm(ctx, T * 4), rows(ctx, (size_t)T * d * 2),
            t(ctx, packed_size(S24_LAYOUT_CUSPARSELT, S24_BF16, f, T)), idx(ctx, k * 4), isd(ctx, f),
            dcols(ctx, (size_t)T * k * 2), dprod(ctx, (size_t)d * k * 2), ydense(ctx, (size_t)T * f * 2);
        auto line = [&](const char* what, double ms) { std::printf("  %-40s %8.3f ms\n", what, ms); };
        std::printf("breakdown T=%lld d=%lld f=%lld (bf16, searched algorithms)\n", (long long)T, (long long)d, (long long)f);
        for (int sparse = 1; sparse >= 0; --sparse) {
            s24_ffn_options o;
            s24_ffn_options_default(&o);
            o.sparse_forward = o.sparse_backward = sparse;
            s24_ffn* ffn = nullptr;
            s24_saved* saved = nullptr;
            S24_TRY(s24_ffn_create(ctx, T, d, f, S24_BF16, &o, &ffn));
            S24_TRY(s24_saved_create(ffn, &saved));
            line(sparse ? "FFN forward (sparse)" : "FFN forward (dense)",
                 timer.median([&](int) { S24_TRY(s24_ffn_forward(ffn, xb.ptr, w1b.ptr, w2b.ptr, z.ptr, saved)); }));
            line(sparse ? "FFN backward (sparse)" : "FFN backward (dense)", timer.median([&](int) {
                S24_TRY(s24_ffn_backward(ffn, saved, xb.ptr, w1b.ptr, w2b.ptr, dzb.ptr, dx.ptr, dw1.ptr, dw2.ptr));
            }));
            s24_saved_destroy(saved);
            s24_ffn_destroy(ffn);
        }
        const s24_layout L = S24_LAYOUT_CUSPARSELT;
        line("fwd: H = X W1^T (gemm)", timer.median([&](int) { S24_TRY(s24_gemm(ctx, S24_BF16, T, f, d, xb.ptr, 0, w1b.ptr, 1, h.ptr)); }));
        line("fwd: sparsify24_rows + counts", timer.median([&](int) {
            S24_TRY(s24_sparsify24_rows(ctx, S24_BF16, T, f, h.ptr, 0, L, y.ptr, (int32_t*)cnt.ptr, (int64_t*)tot.ptr)); }));
        line("fwd: relu^2 dense (keep_all)", timer.median([&](int) {
            S24_TRY(s24_sparsify24_rows(ctx, S24_BF16, T, f, h.ptr, 1, S24_LAYOUT_DENSE, ydense.ptr, nullptr, nullptr)); }));
        line("fwd: Z = Yhat W2^T (spmm)", timer.median([&](int) { S24_TRY(s24_spmm(ctx, S24_BF16, T, d, f, y.ptr, L, w2b.ptr, 1, 0, z.ptr)); }));
        line("fwd: Z = Y W2^T (dense gemm)", timer.median([&](int) { S24_TRY(s24_gemm(ctx, S24_BF16, T, d, f, ydense.ptr, 0, w2b.ptr, 1, z.ptr)); }));
        line("fwd: select_dense_features", timer.median([&](int) {
            S24_TRY(s24_select_dense_features(ctx, f, (int32_t*)cnt.ptr, k, (int32_t*)idx.ptr, (uint8_t*)isd.ptr)); }));
        line("bwd: dY = dZ W2 (gemm)", timer.median([&](int) { S24_TRY(s24_gemm(ctx, S24_BF16, T, f, d, dzb.ptr, 0, w2b.ptr, 0, dy.ptr)); }));
        line("bwd: masked_grad24", timer.median([&](int) { S24_TRY(s24_masked_grad24(ctx, S24_BF16, T, f, dy.ptr, y.ptr, L, dh.ptr)); }));
        line("bwd: dX = dH W1 (spmm)", timer.median([&](int) { S24_TRY(s24_spmm(ctx, S24_BF16, T, d, f, dh.ptr, L, w1b.ptr, 0, 0, dx.ptr)); }));
        std::vector<int32_t> p(T);
        S24_TRY(s24_token_permutation(1, 0, T, p.data()));
        S24_TRY(s24_memcpy(ctx, perm.ptr, p.data(), T * 4, S24_COPY_HOST_TO_CONTEXT));
        line("bwd: gather_rows (dZ or X)", timer.median([&](int) {
            S24_TRY(s24_gather_rows(ctx, S24_BF16, T, d, dzb.ptr, (int32_t*)perm.ptr, rows.ptr)); }));
        line("bwd: cols_split (Yhat or dH)", timer.median([&](int) {
            S24_TRY(s24_sparsify24_cols_split(ctx, S24_BF16, T, f, y.ptr, L, (int32_t*)perm.ptr, (uint8_t*)isd.ptr,
                                              (int32_t*)idx.ptr, k, L, t.ptr, dcols.ptr, (int64_t*)tot.ptr)); }));
        line("bwd: dW2 = (Yt dZp)^T (spmm, c^T)", timer.median([&](int) {
            S24_TRY(s24_spmm(ctx, S24_BF16, f, d, T, t.ptr, L, rows.ptr, 0, 1, dw2.ptr)); }));
        line("bwd: dW1 = dHt Xp (spmm)", timer.median([&](int) { S24_TRY(s24_spmm(ctx, S24_BF16, f, d, T, t.ptr, L, rows.ptr, 0, 0, dw1.ptr)); }));
        line("bwd: dense features dZp^T Yd (gemm)", timer.median([&](int) {
            S24_TRY(s24_gemm(ctx, S24_BF16, d, k, T, rows.ptr, 1, dcols.ptr, 0, dprod.ptr)); }));
        line("bwd: dense features dHd^T Xp (gemm)", timer.median([&](int) {
            S24_TRY(s24_gemm(ctx, S24_BF16, k, d, T, dcols.ptr, 1, rows.ptr, 0, dprod.ptr)); }));
        line("bwd: dense dW2 = dZ^T Y (gemm)", timer.median([&](int) { S24_TRY(s24_gemm(ctx, S24_BF16, d, f, T, dzb.ptr, 1, ydense.ptr, 0, dw2.ptr)); }));
    }
    s24_context_destroy(ctx);
    return 0;
}

}  // namespace s24test
