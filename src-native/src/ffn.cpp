// The FFN: forward and split backward composed from the backend's building blocks (the same code
// drives the CPU reference and the CUDA backend; only the packed layouts differ).
#include "front.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace s24 {
namespace {

// Number of features the split backward computes densely: ceil(fraction * f) rounded up to a multiple
// of 8 (at most f), where fraction is the decimal the float stands for (0.05f is 0.0500000007: f * 1e-7
// absorbs float rounding, so 5% of 100 is 5 before the rounding, not 6). The multiple of 8 keeps the
// leading dimension of the gathered [T, k] dense columns 16-byte aligned: with k = 820 the two dense-
// feature GEMMs took 1.26 ms on an H100 at 16384x4096x16384 (cuBLASLt's unaligned kernels).
int64_t dense_feature_count(float fraction, int64_t features) {
    int64_t k = (int64_t)std::ceil((double)fraction * (double)features - (double)features * 1e-7);
    if (k <= 0) return 0;
    k = (k + 7) / 8 * 8;
    return k > features ? features : k;
}

void check_options(const s24_ffn_options& o) {
    auto flag = [](int32_t v) { return v == 0 || v == 1; };
    require(flag(o.sparse_forward), "options.sparse_forward must be 0 or 1, got ", o.sparse_forward);
    require(flag(o.sparse_backward), "options.sparse_backward must be 0 or 1, got ", o.sparse_backward);
    require(flag(o.permute_tokens), "options.permute_tokens must be 0 or 1, got ", o.permute_tokens);
    require(flag(o.algorithm_search), "options.algorithm_search must be 0 or 1, got ", o.algorithm_search);
    require(flag(o.fused_grad_split), "options.fused_grad_split must be 0 or 1, got ", o.fused_grad_split);
    require(o.dense_fraction >= 0.f && o.dense_fraction <= 1.f, "options.dense_fraction must be in [0, 1], got ",
            o.dense_fraction);
    require(!o.sparse_backward || o.sparse_forward,
            "options.sparse_backward = 1 needs sparse_forward = 1 (the split acts on the 2:4 activations)");
}

// Layout of Yhat [T, f] (and dH): the backend's choice, kept only where its sparse GEMMs
// (Z = Yhat W2^T and dX = dH W1, both m=T n=d k=f) can take it.
s24_layout choose_y_layout(const s24_context* ctx, const s24_ffn& f) {
    if (!f.options.sparse_forward) return S24_LAYOUT_DENSE;
    s24_layout layout = ctx->backend->ffn_layout(f.dtype, f.tokens, f.d_ff);
    if (layout == S24_LAYOUT_CUSPARSELT &&
        !ctx->backend->sparse_gemm_available(f.dtype, f.tokens, f.d_model, f.d_ff, layout))
        return S24_LAYOUT_DENSE;
    return layout;
}

// Layout of the backward's transposed operands [f, T] (dW2^T = Yt dZ, dW1 = dHt X: m=f n=d k=T).
s24_layout choose_t_layout(const s24_context* ctx, const s24_ffn& f) {
    if (!f.options.sparse_backward) return S24_LAYOUT_DENSE;
    s24_layout layout = ctx->backend->ffn_layout(f.dtype, f.d_ff, f.tokens);
    if (layout == S24_LAYOUT_ROW && f.tokens % 4 != 0) return S24_LAYOUT_DENSE;  // spmm's k must be T itself
    if (layout == S24_LAYOUT_CUSPARSELT &&
        !ctx->backend->sparse_gemm_available(f.dtype, f.d_ff, f.d_model, f.tokens, layout))
        return S24_LAYOUT_DENSE;
    return layout;
}

size_t elem(const s24_ffn& f) { return s24_dtype_size(f.dtype); }

void check_ffn(const s24_ffn* ffn) {
    require(ffn != nullptr, "ffn is NULL");
    require(!ffn->destroyed, "ffn: used after s24_ffn_destroy");
}

// Drops one reference to the plan; frees it (and its reference to the context) when it was the last.
void release_ffn(s24_ffn* ffn) {
    s24_context* ctx = ffn->ctx;
    {
        std::lock_guard<std::mutex> g(ctx->gate);
        if (--ffn->refs > 0) return;
    }
    delete ffn;
    release_context(ctx);
}

// The sparse GEMMs' algorithm: the tuned plan (FFN option algorithm_search) or cuSPARSELt's default.
SpmmAlgorithm algorithm(const s24_ffn& f) {
    return f.options.algorithm_search ? SpmmAlgorithm::TUNED : SpmmAlgorithm::DEFAULT;
}

// Calls on the backend's side stream for the life of the object (Backend::begin_side / end_side); the
// main stream waits for them only at Backend::wait_side.
class SideStream {
public:
    explicit SideStream(Backend& be) : be_(be) { be_.begin_side(); }
    ~SideStream() { be_.end_side(); }
    SideStream(const SideStream&) = delete;
    SideStream& operator=(const SideStream&) = delete;

private:
    Backend& be_;
};


// Where the forward's and backward's temporaries sit in the context's scratch buffer, and where a saved
// state's parts sit in its one allocation (offsets in bytes; one definition serves the calls and the
// size queries).
struct ForwardScratch {
    size_t h, y, total;
    explicit ForwardScratch(const s24_ffn& f) {
        ScratchPlan p;
        h = p.add(array_bytes(f.tokens, f.d_ff, elem(f), "H [T, f]"));  // H [T, f]
        y = p.add(checked_packed_bytes(f.y_layout, f.dtype, f.tokens, f.d_ff));  // Yhat when nothing is saved
        total = p.total();
    }
};

struct BackwardScratch {
    size_t dy, dh, dense, perm, rows, t_packed, dense_cols, dense_prod, total;
    explicit BackwardScratch(const s24_ffn& f) {
        const int64_t T = f.tokens, d = f.d_model, n = f.d_ff, k = f.dense_features;
        const bool split = f.options.sparse_backward, permute = split && f.options.permute_tokens;
        const int64_t t_cols = split_out_cols(f.t_layout, T);
        ScratchPlan p;
        dy = p.add(array_bytes(T, n, elem(f), "dYhat [T, f]"));                    // dYhat [T, f]
        dh = p.add(checked_packed_bytes(f.y_layout, f.dtype, T, n));                       // dH, packed like Yhat
        dense = p.add(split ? 0 : array_bytes(T, n, elem(f), "Yhat [T, f]"));     // unpacked Yhat or dH
        perm = p.add(permute ? array_bytes(T, 1, sizeof(int32_t), "perm [T]") : 0);  // token permutation
        rows = p.add(permute ? array_bytes(T, d, elem(f), "X [T, d]") : 0);          // dZ or X permuted
        t_packed = p.add(split ? checked_packed_bytes(f.t_layout, f.dtype, n, t_cols) : 0);  // [f, T] operand
        dense_cols = p.add(split ? array_bytes(T, k, elem(f), "dense columns [T, k]") : 0);  // [T, k]
        dense_prod = p.add(split ? array_bytes(d, k, elem(f), "dense product [d, k]") : 0);  // [d, k] / [k, d]
        total = p.total();
    }
};

struct SavedParts {
    size_t y, counts, dense_idx, is_dense, totals, total;
    explicit SavedParts(const s24_ffn& f) {
        ScratchPlan p;
        y = p.add(checked_packed_bytes(f.y_layout, f.dtype, f.tokens, f.d_ff));
        counts = p.add(array_bytes(f.d_ff, 1, sizeof(int32_t), "counts [f]"));
        dense_idx = p.add(array_bytes(f.dense_features > 0 ? f.dense_features : 1, 1, sizeof(int32_t), "dense_idx"));
        is_dense = p.add((size_t)f.d_ff);
        totals = p.add(6 * sizeof(int64_t));
        total = p.total();
    }
};

size_t workspace_bytes(const s24_ffn& f) {
    size_t fwd = ForwardScratch(f).total, bwd = BackwardScratch(f).total;
    return fwd > bwd ? fwd : bwd;
}

// ---- forward -----------------------------------------------------------------------------------------

void forward(s24_ffn& f, const void* x, const void* w1, const void* w2, void* z, s24_saved* saved) {
    Backend& be = *f.ctx->backend;
    const int64_t T = f.tokens, d = f.d_model, n = f.d_ff;

    const ForwardScratch plan(f);
    char* scratch = (char*)be.scratch(plan.total);
    void* h = scratch + plan.h;
    void* y = saved ? saved->y_packed : (void*)(scratch + plan.y);

    be.gemm(f.dtype, T, n, d, x, false, w1, true, h);  // H = X W1^T
    be.sparsify24_rows(f.dtype, T, n, h, !f.options.sparse_forward, f.y_layout, y, saved ? saved->counts : nullptr,
                       saved ? saved->totals : nullptr);
    if (saved && f.options.sparse_backward && f.dense_features > 0 && f.side_stream) {
        // The dense-feature selection (one block, latency-bound) runs beside Z's GEMM.
        SideStream side(be);
        be.select_dense_features(n, saved->counts, f.dense_features, saved->dense_idx, saved->is_dense);
    }
    be.spmm(f.dtype, T, d, n, y, f.y_layout, w2, true, z, false, algorithm(f));  // Z = Yhat W2^T

    if (saved) {
        if (f.options.sparse_backward && f.dense_features > 0 && !f.side_stream)
            be.select_dense_features(n, saved->counts, f.dense_features, saved->dense_idx, saved->is_dense);
        else if (f.options.sparse_backward && f.dense_features == 0)
            be.fill(saved->is_dense, 0, (size_t)n);
        be.fill(saved->totals + 2, 0, 4 * sizeof(int64_t));
        if (f.side_stream) be.wait_side();  // the selection is done before anything reads the saved state
        saved->step = f.next_step++;
        saved->forward_done = true;
        saved->backward_done = false;
        saved->backward_sparse = false;
    }
}

// ---- backward ----------------------------------------------------------------------------------------

// Weight gradients exactly: dW2 = dZ^T Yhat, dW1 = dH^T X (dense GEMMs on the unpacked operands).
void exact_weight_grads(s24_ffn& f, const s24_saved& s, const void* x, const void* dz, const void* dh_packed,
                        void* dense_tmp, void* dw1, void* dw2) {
    Backend& be = *f.ctx->backend;
    const int64_t T = f.tokens, d = f.d_model, n = f.d_ff;
    auto unpacked = [&](const void* packed) -> const void* {
        if (f.y_layout == S24_LAYOUT_DENSE) return packed;
        be.decompress24(f.dtype, T, n, packed, f.y_layout, dense_tmp);
        return dense_tmp;
    };
    if (dw2) be.gemm(f.dtype, d, n, T, dz, true, unpacked(s.y_packed), false, dw2);
    if (dw1) be.gemm(f.dtype, n, d, T, unpacked(dh_packed), true, x, false, dw1);
}

struct SplitBuffers {
    int32_t* perm;      // [T] or null (no permutation)
    void* rows_perm;    // [T, d]: dZ or X in permuted token order
    void* t_packed;     // [f, T] in t_layout
    void* dense_cols;   // [T, k]
    void* dense_prod;   // [d, k] or [k, d]
};

// One split weight gradient. For dW2 (transposed_out): dW2^T [f, d] = Yt [f, T] dZp [T, d], written as
// dW2 [d, f]; dense features: dW2[:, D] = dZp^T Yd. For dW1: dW1 [f, d] = dHt [f, T] Xp [T, d];
// dense features: dW1[D, :] = dHd^T Xp. src_packed NULL: b.t_packed and b.dense_cols already hold the
// split (the fused dH pass wrote them).
void split_weight_grad(s24_ffn& f, const s24_saved& s, const void* src_packed, const void* rows_in,
                       const SplitBuffers& b, bool transposed_out, int64_t* totals, void* dw) {
    Backend& be = *f.ctx->backend;
    const int64_t T = f.tokens, d = f.d_model, n = f.d_ff, k = f.dense_features;
    const void* rows_p = rows_in;
    if (b.perm) {
        be.gather_rows(f.dtype, T, d, rows_in, b.perm, b.rows_perm);
        rows_p = b.rows_perm;
    }
    if (src_packed)  // (null: the fused grad_split24 wrote dH's split already)
        be.sparsify24_cols_split(f.dtype, T, n, src_packed, f.y_layout, b.perm, s.is_dense, s.dense_idx, k,
                                 f.t_layout, b.t_packed, k > 0 ? b.dense_cols : nullptr, totals);
    // The dense features' GEMM (k = 5% of the features: too small to fill the GPU) runs on the side stream
    // beside the sparse GEMM; the scatter into dw waits for both (the sparse GEMM writes zeros there).
    auto dense_features_gemm = [&] {
        if (transposed_out) be.gemm(f.dtype, d, k, T, rows_p, true, b.dense_cols, false, b.dense_prod);
        else be.gemm(f.dtype, k, d, T, b.dense_cols, true, rows_p, false, b.dense_prod);
    };
    if (k > 0 && f.side_stream) {
        SideStream side(be);
        dense_features_gemm();
    }
    if (k < n) be.spmm(f.dtype, n, d, T, b.t_packed, f.t_layout, rows_p, false, dw, transposed_out, algorithm(f));
    if (k == 0) return;
    if (f.side_stream) be.wait_side();
    else dense_features_gemm();
    if (transposed_out) be.scatter_cols(f.dtype, d, k, b.dense_prod, s.dense_idx, n, dw);
    else be.scatter_rows(f.dtype, k, d, b.dense_prod, s.dense_idx, dw);
}

void backward(s24_ffn& f, s24_saved& s, const void* x, const void* w1, const void* w2, const void* dz, void* dx,
              void* dw1, void* dw2) {
    Backend& be = *f.ctx->backend;
    const int64_t T = f.tokens, d = f.d_model, n = f.d_ff;
    const bool split = f.options.sparse_backward && (dw1 || dw2);

    const BackwardScratch plan(f);
    char* scratch = (char*)be.scratch(plan.total);
    void* dy = scratch + plan.dy;
    void* dh = scratch + plan.dh;

    be.gemm(f.dtype, T, n, d, dz, false, w2, false, dy);                // dYhat = dZ W2
    SplitBuffers b{split && f.options.permute_tokens ? (int32_t*)(scratch + plan.perm) : nullptr, scratch + plan.rows,
                   scratch + plan.t_packed, scratch + plan.dense_cols, scratch + plan.dense_prod};
    if (split && dw1 && f.options.fused_grad_split) {
        // dW2's split first (it shares t_packed and dense_cols), then dH and its split in one pass
        if (b.perm) be.token_permutation(f.options.seed, s.step, T, b.perm);
        if (dw2) split_weight_grad(f, s, s.y_packed, dz, b, true, s.totals + 2, dw2);
        be.grad_split24(f.dtype, T, n, dy, s.y_packed, f.y_layout, dh, b.perm, s.is_dense, s.dense_idx,
                        f.dense_features, f.t_layout, b.t_packed, f.dense_features > 0 ? b.dense_cols : nullptr,
                        s.totals + 4);
        if (dx) be.spmm(f.dtype, T, d, n, dh, f.y_layout, w1, false, dx, false, algorithm(f));  // dX = dH W1
        split_weight_grad(f, s, nullptr, x, b, false, s.totals + 4, dw1);
    } else {
        be.masked_grad24(f.dtype, T, n, dy, s.y_packed, f.y_layout, dh);    // dH = dYhat * 2 sqrt(Yhat)
        if (dx) be.spmm(f.dtype, T, d, n, dh, f.y_layout, w1, false, dx, false, algorithm(f));  // dX = dH W1
        if (!split) {
            exact_weight_grads(f, s, x, dz, dh, scratch + plan.dense, dw1, dw2);
        } else {
            if (b.perm) be.token_permutation(f.options.seed, s.step, T, b.perm);
            if (dw2) split_weight_grad(f, s, s.y_packed, dz, b, true, s.totals + 2, dw2);
            if (dw1) split_weight_grad(f, s, dh, x, b, false, s.totals + 4, dw1);
        }
    }
    s.backward_done = true;
    s.backward_sparse = split;
}

}  // namespace
}  // namespace s24

using namespace s24;

extern "C" {

void s24_ffn_options_default(s24_ffn_options* options) {
    if (options == nullptr) return;
    options->sparse_forward = 1;
    options->sparse_backward = 1;
    options->dense_fraction = 0.05f;
    options->permute_tokens = 1;
    options->seed = 0x5eed24;
    options->algorithm_search = 1;
    options->fused_grad_split = 0;
}

s24_status s24_ffn_create(s24_context* ctx, int64_t tokens, int64_t d_model, int64_t d_ff, s24_dtype dtype,
                          const s24_ffn_options* options, s24_ffn** out) {
    return locked(ctx, [&] {
        require_pointer(out, "out");
        *out = nullptr;
        require(tokens >= 1 && tokens < (int64_t(1) << 31), "tokens must be in [1, 2^31), got ", tokens);
        require(d_model >= 1 && d_model < (int64_t(1) << 31), "d_model must be in [1, 2^31), got ", d_model);
        require(d_ff >= 4 && d_ff < (int64_t(1) << 31), "d_ff must be in [4, 2^31), got ", d_ff);
        require(d_ff % 4 == 0, "d_ff must be a multiple of 4 (2:4 groups run along it), got ", d_ff);
        check_dtype(ctx, dtype, "ffn");
        s24_ffn_options opts;
        if (options) opts = *options; else s24_ffn_options_default(&opts);
        check_options(opts);
        auto f = std::make_unique<s24_ffn>();
        f->ctx = ctx;
        f->tokens = tokens;
        f->d_model = d_model;
        f->d_ff = d_ff;
        f->dtype = dtype;
        f->options = opts;
        f->dense_features = opts.sparse_backward ? dense_feature_count(opts.dense_fraction, d_ff) : 0;
        f->y_layout = choose_y_layout(ctx, *f);
        f->t_layout = choose_t_layout(ctx, *f);
        f->next_step = 0;
        workspace_bytes(*f);    // INVALID_ARGUMENT naming the size if scratch or saved sizes overflow
        SavedParts parts(*f);
        (void)parts;
        const char* side = std::getenv("SPARSE24_SIDE_STREAM");
        f->side_stream = side == nullptr || std::strcmp(side, "0") != 0;
        *out = f.release();
        std::lock_guard<std::mutex> g(ctx->gate);
        ++ctx->refs;
    });
}

s24_status s24_ffn_destroy(s24_ffn* ffn) {
    if (ffn == nullptr) return S24_OK;
    s24_status status = locked(ffn->ctx, [&] {  // waits for calls in flight on the context
        std::lock_guard<std::mutex> g(ffn->ctx->gate);
        require(!ffn->destroyed, "ffn: s24_ffn_destroy was already called");
        ffn->destroyed = true;
    }, true);
    if (status == S24_OK) release_ffn(ffn);
    return status;
}

s24_status s24_ffn_tune(s24_ffn* ffn) {
    if (ffn == nullptr) {
        set_last_error("ffn is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    return locked(ffn->ctx, [&] {
        s24_ffn& f = *ffn;
        Backend& be = *f.ctx->backend;
        const int64_t T = f.tokens, d = f.d_model, n = f.d_ff;
        if (f.y_layout == S24_LAYOUT_CUSPARSELT) {
            be.prepare_spmm(f.dtype, T, d, n, true, false, algorithm(f));   // Z = Yhat W2^T
            be.prepare_spmm(f.dtype, T, d, n, false, false, algorithm(f));  // dX = dH W1
        }
        if (f.t_layout == S24_LAYOUT_CUSPARSELT && f.dense_features < n) {
            be.prepare_spmm(f.dtype, n, d, T, false, true, algorithm(f));   // dW2^T = Yt dZp, stored as dW2
            be.prepare_spmm(f.dtype, n, d, T, false, false, algorithm(f));  // dW1 = dHt Xp
        }
    });
}

s24_status s24_ffn_get_info(const s24_ffn* ffn, s24_ffn_info* info) {
    return guarded([&] {
        check_ffn(ffn);
        require_pointer(info, "info");
        std::memset(info, 0, sizeof(*info));
        info->tokens = ffn->tokens;
        info->d_model = ffn->d_model;
        info->d_ff = ffn->d_ff;
        info->dtype = ffn->dtype;
        info->sparse_forward_path = ffn->y_layout == S24_LAYOUT_CUSPARSELT;
        info->sparse_backward_path = ffn->t_layout == S24_LAYOUT_CUSPARSELT;
        info->dense_features = ffn->dense_features;
        info->workspace_bytes = workspace_bytes(*ffn);
        info->saved_bytes = SavedParts(*ffn).total;
    });
}

s24_status s24_ffn_workspace_size(const s24_ffn* ffn, size_t* bytes) {
    return guarded([&] {
        check_ffn(ffn);
        require_pointer(bytes, "bytes");
        *bytes = workspace_bytes(*ffn);
    });
}

s24_status s24_saved_create(s24_ffn* ffn, s24_saved** out) {
    if (ffn == nullptr) {
        set_last_error("ffn is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    return locked(ffn->ctx, [&] {
        require_pointer(out, "out");
        *out = nullptr;
        Backend& be = *ffn->ctx->backend;
        check_ffn(ffn);
        const SavedParts parts(*ffn);
        auto s = std::make_unique<s24_saved>();
        s->ffn = ffn;
        s->memory = be.allocate_saved(parts.total);
        char* base = (char*)s->memory;
        s->y_packed = base + parts.y;
        s->counts = (int32_t*)(base + parts.counts);
        s->dense_idx = (int32_t*)(base + parts.dense_idx);
        s->is_dense = (uint8_t*)(base + parts.is_dense);
        s->totals = (int64_t*)(base + parts.totals);
        try {
            be.fill(s->totals, 0, 6 * sizeof(int64_t));
        } catch (...) {
            be.release_saved(s->memory);
            throw;
        }
        *out = s.release();
        std::lock_guard<std::mutex> g(ffn->ctx->gate);
        ++ffn->refs;
    });
}

s24_status s24_saved_destroy(s24_saved* saved) {
    if (saved == nullptr) return S24_OK;
    s24_ffn* ffn = saved->ffn;
    s24_status status = locked(ffn->ctx, [&] { ffn->ctx->backend->release_saved(saved->memory); }, true);
    delete saved;
    release_ffn(ffn);
    return status;
}

s24_status s24_ffn_forward(s24_ffn* ffn, const void* x, const void* w1, const void* w2, void* z, s24_saved* saved) {
    if (ffn == nullptr) {
        set_last_error("ffn is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    return locked(ffn->ctx, [&] {
        check_ffn(ffn);
        require_pointer(x, "x");
        require_pointer(w1, "w1");
        require_pointer(w2, "w2");
        require_pointer(z, "z");
        require(saved == nullptr || saved->ffn == ffn, "saved was created for another ffn plan");
        forward(*ffn, x, w1, w2, z, saved);
    });
}

s24_status s24_ffn_backward(s24_ffn* ffn, const s24_saved* saved, const void* x, const void* w1, const void* w2,
                            const void* dz, void* dx, void* dw1, void* dw2) {
    if (ffn == nullptr) {
        set_last_error("ffn is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    return locked(ffn->ctx, [&] {
        check_ffn(ffn);
        require_pointer(saved, "saved");
        require(saved->ffn == ffn, "saved was created for another ffn plan");
        require(saved->forward_done, "saved holds no forward yet: call s24_ffn_forward with it first");
        require_pointer(x, "x");
        require_pointer(w1, "w1");
        require_pointer(w2, "w2");
        require_pointer(dz, "dz");
        backward(*ffn, const_cast<s24_saved&>(*saved), x, w1, w2, dz, dx, dw1, dw2);
    });
}

s24_status s24_saved_sparsity(const s24_saved* saved, s24_sparsity* out) {
    if (saved == nullptr) {
        set_last_error("saved is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    return locked(saved->ffn->ctx, [&] {
        require_pointer(out, "out");
        const s24_ffn& f = *saved->ffn;
        std::memset(out, 0, sizeof(*out));
        out->tokens = f.tokens;
        out->features = f.d_ff;
        out->step = saved->forward_done ? saved->step : -1;
        if (!saved->forward_done) return;
        int64_t t[6];
        f.ctx->backend->copy(t, saved->totals, sizeof(t), S24_COPY_CONTEXT_TO_HOST);
        out->activation_nonzeros = t[0];
        out->forward_kept = t[1];
        out->forward_sparse = f.options.sparse_forward;
        out->dense_features = f.dense_features;
        out->backward_done = saved->backward_done;
        out->backward_sparse = saved->backward_sparse;
        if (saved->backward_sparse) {
            out->dw2_sparse_nonzeros = t[2];
            out->dw2_sparse_kept = t[3];
            out->dw1_sparse_nonzeros = t[4];
            out->dw1_sparse_kept = t[5];
        }
    });
}

s24_status s24_saved_dense_features(const s24_saved* saved, int32_t* idx, int64_t capacity, int64_t* count) {
    if (saved == nullptr) {
        set_last_error("saved is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    return locked(saved->ffn->ctx, [&] {
        require_pointer(count, "count");
        require(capacity >= 0, "capacity must be >= 0, got ", capacity);
        require(capacity == 0 || idx != nullptr, "idx is NULL but capacity = ", capacity);
        const s24_ffn& f = *saved->ffn;
        *count = saved->forward_done ? f.dense_features : 0;
        int64_t n = *count < capacity ? *count : capacity;
        if (n > 0) f.ctx->backend->copy(idx, saved->dense_idx, (size_t)n * sizeof(int32_t), S24_COPY_CONTEXT_TO_HOST);
    });
}

}  // extern "C"
