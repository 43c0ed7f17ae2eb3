// The C API front end: argument validation, error capture, locking, dispatch to the backend.
// The FFN entry points are in ffn.cpp.
#include "front.h"
#include "layout.h"
#include "shared.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>

namespace s24 {

namespace {
thread_local std::string last_error;
}

void check_dtype(const s24_context* ctx, s24_dtype dtype, const char* what) {
    require(dtype == S24_FP32 || dtype == S24_BF16 || dtype == S24_FP16, what, ": unknown dtype ", (int)dtype,
            " (expected S24_FP32, S24_BF16 or S24_FP16)");
    if (dtype == S24_FP32 && ctx->kind == S24_BACKEND_CUDA)
        fail(S24_ERROR_NOT_SUPPORTED, msg(what, ": FP32 is supported on the CPU backend only; use BF16 or FP16 on CUDA"));
}

size_t checked_packed_bytes(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols) {
    const size_t elem = s24::dtype_size(dtype);
    const char* what = "packed matrix size";
    size_t values = 0, meta = 0;
    switch (layout) {
        case S24_LAYOUT_DENSE: return array_bytes(rows, cols, elem, what);
        case S24_LAYOUT_ROW:
            values = array_bytes(rows, cols / 2, elem, what);
            meta = array_bytes(rows, s24::row_layout_meta_stride(cols), 1, what);
            break;
        case S24_LAYOUT_CUSPARSELT:
            values = array_bytes(rows, cols / 2, elem, what);
            meta = array_bytes(rows, cols / 8, 1, what);
            break;
        default: return 0;
    }
    require(values <= kMaxBytes - meta, what, ": [", rows, ", ", cols, "] needs more than ", kMaxBytes, " bytes");
    return values + meta;
}

void release_context(s24_context* ctx) {
    {
        std::unique_lock<std::mutex> g(ctx->gate);
        if (--ctx->refs > 0) return;
        ctx->idle.wait(g, [&] { return ctx->calls == 0; });  // callers turned away still leaving the gate
    }
    delete ctx;
}

void set_last_error(const std::string& message) { last_error = message; }

namespace {

void check_matrix(int64_t rows, int64_t cols, const char* what) {
    require(rows >= 1 && cols >= 1, what, ": shape [", rows, ", ", cols, "] must be positive");
    require(rows < (int64_t(1) << 31) && cols < (int64_t(1) << 31), what, ": shape [", rows, ", ", cols,
            "] exceeds 2^31-1 in a dimension");
}

void check_groups(int64_t cols, const char* what) {
    require(cols % 4 == 0, what, ": the 2:4 dimension (", cols, ") must be a multiple of 4");
}

void check_layout(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols, const char* what) {
    require(layout == S24_LAYOUT_DENSE || layout == S24_LAYOUT_ROW || layout == S24_LAYOUT_CUSPARSELT, what,
            ": unknown layout ", (int)layout);
    if (layout == S24_LAYOUT_CUSPARSELT) {
        require(dtype != S24_FP32, what, ": the CUSPARSELT layout holds 16-bit values (BF16 or FP16), not FP32");
        require(cusparselt_shape(rows, cols), what, ": the CUSPARSELT layout needs rows and cols multiples of ",
                kCusparseltMultiple, ", got [", rows, ", ", cols, "]");
    }
}

void check_packed(const s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, s24_layout layout,
                  const char* what) {
    check_dtype(ctx, dtype, what);
    check_matrix(rows, cols, what);
    check_groups(cols, what);
    check_layout(layout, dtype, rows, cols, what);
}

// The token-wise split's arguments, shared by sparsify24_cols_split and grad_split24 (op names the call):
// source [tokens, features] packed in in_layout, output [features, tokens] in out_layout, k dense features.
void check_split(const s24_context* ctx, const char* op, s24_dtype dtype, int64_t tokens, int64_t features,
                 s24_layout in_layout, s24_layout out_layout, int64_t k, const void* t_packed, const uint8_t* is_dense,
                 const int32_t* dense_idx, const void* dense_cols) {
    check_packed(ctx, dtype, tokens, features, in_layout, (std::string(op) + " source").c_str());
    check_layout(out_layout, dtype, features, tokens, (std::string(op) + " output").c_str());
    require(tokens % 4 == 0 || out_layout != S24_LAYOUT_CUSPARSELT, op,
            ": tokens % 4 != 0 needs out_layout DENSE or ROW");
    require(k >= 0 && k <= features, "k must be in [0, features = ", features, "], got ", k);
    require_pointer(t_packed, "t_packed");
    if (k > 0) {
        require_pointer(is_dense, "is_dense");
        require_pointer(dense_idx, "dense_idx");
        require_pointer(dense_cols, "dense_cols");
    }
}

}  // namespace
}  // namespace s24

using namespace s24;

extern "C" {

const char* s24_status_name(s24_status status) {
    switch (status) {
        case S24_OK: return "S24_OK";
        case S24_ERROR_INVALID_ARGUMENT: return "S24_ERROR_INVALID_ARGUMENT";
        case S24_ERROR_NOT_SUPPORTED: return "S24_ERROR_NOT_SUPPORTED";
        case S24_ERROR_BACKEND_UNAVAILABLE: return "S24_ERROR_BACKEND_UNAVAILABLE";
        case S24_ERROR_LIBRARY_NOT_FOUND: return "S24_ERROR_LIBRARY_NOT_FOUND";
        case S24_ERROR_CUDA: return "S24_ERROR_CUDA";
        case S24_ERROR_CUBLAS: return "S24_ERROR_CUBLAS";
        case S24_ERROR_CUSPARSELT: return "S24_ERROR_CUSPARSELT";
        case S24_ERROR_OUT_OF_MEMORY: return "S24_ERROR_OUT_OF_MEMORY";
        case S24_ERROR_VALIDATION_FAILED: return "S24_ERROR_VALIDATION_FAILED";
        case S24_ERROR_INTERNAL: return "S24_ERROR_INTERNAL";
    }
    return "S24_UNKNOWN_STATUS";
}

const char* s24_last_error(void) { return last_error.c_str(); }

#if defined(S24_BENCH_PLAIN_RANK_KEYS)
const char* s24_version(void) { return "0.1.0+plain-rank-keys"; }  // benchmark build (CMakeLists.txt)
#else
const char* s24_version(void) { return "0.1.0"; }
#endif

size_t s24_dtype_size(s24_dtype dtype) { return (size_t)dtype_size(dtype); }

s24_status s24_packed_size(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols, size_t* bytes) {
    return guarded([&] {
        require_pointer(bytes, "bytes");
        require(s24_dtype_size(dtype) != 0, "dtype: unknown dtype ", (int)dtype);
        check_matrix(rows, cols, "packed matrix");
        check_groups(cols, "packed matrix");
        check_layout(layout, dtype, rows, cols, "packed matrix");
        *bytes = checked_packed_bytes(layout, dtype, rows, cols);
    });
}

// ---- context ---------------------------------------------------------------------------------------

s24_status s24_context_create(s24_backend backend, int32_t device, s24_context** out) {
    return guarded([&] {
        require_pointer(out, "out");
        *out = nullptr;
        require(backend == S24_BACKEND_AUTO || backend == S24_BACKEND_CPU || backend == S24_BACKEND_CUDA,
                "backend: unknown value ", (int)backend, " (expected AUTO, CPU or CUDA)");
        auto ctx = std::make_unique<s24_context>();
        if (backend == S24_BACKEND_CPU) {
            ctx->backend = create_cpu_backend();
            ctx->kind = S24_BACKEND_CPU;
        } else if (backend == S24_BACKEND_CUDA) {
            require(device >= 0, "device: CUDA device ordinal must be >= 0, got ", device);
            ctx->backend = create_cuda_backend(device);
            ctx->kind = S24_BACKEND_CUDA;
        } else {
            try {
                ctx->backend = create_cuda_backend(device < 0 ? 0 : device);
                ctx->kind = S24_BACKEND_CUDA;
            } catch (const Error& e) {
                if (e.status() != S24_ERROR_BACKEND_UNAVAILABLE && e.status() != S24_ERROR_LIBRARY_NOT_FOUND) throw;
                ctx->backend = create_cpu_backend();
                ctx->kind = S24_BACKEND_CPU;
                ctx->fallback_reason = e.what();
            }
        }
        *out = ctx.release();
    });
}

s24_status s24_context_destroy(s24_context* ctx) {
    if (ctx == nullptr) return S24_OK;
    {
        std::unique_lock<std::mutex> g(ctx->gate);
        if (ctx->destroyed) {
            set_last_error("context: s24_context_destroy was already called");
            return S24_ERROR_INVALID_ARGUMENT;
        }
        ctx->destroyed = true;  // new calls fail from now on; wait for those in flight
        ctx->idle.wait(g, [&] { return ctx->calls == 0; });
    }
    s24_status status;
    {
        std::lock_guard<std::mutex> hold(ctx->lock);
        status = guarded([&] { ctx->backend->synchronize(); });
    }
    release_context(ctx);
    return status;
}

s24_status s24_context_get_info(const s24_context* ctx, s24_context_info* info) {
    return locked(ctx, [&] {
        require_pointer(info, "info");
        std::memset(info, 0, sizeof(*info));
        ctx->backend->info(info);
        info->backend = ctx->kind;
        std::snprintf(info->fallback_reason, sizeof(info->fallback_reason), "%s", ctx->fallback_reason.c_str());
    });
}

s24_status s24_context_set_stream(s24_context* ctx, void* stream) {
    return locked(ctx, [&] {
        require(ctx->kind == S24_BACKEND_CUDA || stream == nullptr,
                "stream: the CPU backend has no streams; pass NULL");
        ctx->backend->set_stream(stream);
    });
}

s24_status s24_context_get_stream(const s24_context* ctx, void** stream) {
    return locked(ctx, [&] {
        require_pointer(stream, "stream");
        *stream = ctx->backend->stream();
    });
}

s24_status s24_context_synchronize(s24_context* ctx) {
    return locked(ctx, [&] { ctx->backend->synchronize(); });
}

s24_status s24_context_set_algorithm_search(s24_context* ctx, int32_t on) {
    return locked(ctx, [&] {
        require(on == 0 || on == 1, "on must be 0 or 1, got ", on);
        ctx->algorithm_search = on != 0;
    });
}

s24_status s24_context_set_scratch_retention(s24_context* ctx, size_t max_bytes, int64_t calls) {
    return locked(ctx, [&] {
        require(calls >= 0, "calls must be >= 0 (0: keep nothing a call does not need), got ", calls);
        ctx->backend->set_retention(max_bytes, calls);
    });
}

s24_status s24_context_trim(s24_context* ctx) {
    return locked(ctx, [&] { ctx->backend->trim(); });
}

s24_status s24_context_get_memory(const s24_context* ctx, s24_context_memory* memory) {
    return locked(ctx, [&] {
        require_pointer(memory, "memory");
        const Retention& r = ctx->backend->retention();
        std::memset(memory, 0, sizeof(*memory));
        memory->retained_bytes = r.held();
        memory->ffn_scratch_bytes = r.held(true);
        memory->workspace_bytes = memory->retained_bytes - memory->ffn_scratch_bytes;
        memory->retain_max_bytes = r.max_bytes();
        memory->retain_calls = r.calls();
        memory->releases = r.releases();
    });
}

// ---- memory ----------------------------------------------------------------------------------------

s24_status s24_malloc(s24_context* ctx, size_t bytes, void** out) {
    return locked(ctx, [&] {
        require_pointer(out, "out");
        *out = nullptr;
        *out = ctx->backend->allocate(bytes == 0 ? 1 : bytes);
    });
}

s24_status s24_free(s24_context* ctx, void* ptr) {
    return locked(ctx, [&] {
        if (ptr == nullptr) return;
        ctx->backend->synchronize();  // work enqueued on the memory finishes before it is freed
        ctx->backend->release(ptr);
    }, true);  // also while the context is being destroyed (its FFNs, saved states or events keep it)
}

s24_status s24_memcpy(s24_context* ctx, void* dst, const void* src, size_t bytes, s24_copy_kind kind) {
    return locked(ctx, [&] {
        require(kind == S24_COPY_HOST_TO_CONTEXT || kind == S24_COPY_CONTEXT_TO_HOST ||
                    kind == S24_COPY_CONTEXT_TO_CONTEXT,
                "kind: unknown copy kind ", (int)kind);
        if (bytes == 0) return;
        require_pointer(dst, "dst");
        require_pointer(src, "src");
        ctx->backend->copy(dst, src, bytes, kind);
    });
}

s24_status s24_memset(s24_context* ctx, void* ptr, int32_t value, size_t bytes) {
    return locked(ctx, [&] {
        if (bytes == 0) return;
        require_pointer(ptr, "ptr");
        ctx->backend->fill(ptr, value & 0xff, bytes);
    });
}

// ---- events ----------------------------------------------------------------------------------------

s24_status s24_event_create(s24_context* ctx, s24_event** out) {
    return locked(ctx, [&] {
        require_pointer(out, "out");
        *out = nullptr;
        void* handle = ctx->backend->event_create();
        *out = new s24_event{ctx, handle};
        std::lock_guard<std::mutex> g(ctx->gate);
        ++ctx->refs;
    });
}

s24_status s24_event_destroy(s24_event* event) {
    if (event == nullptr) return S24_OK;
    s24_context* ctx = event->ctx;
    s24_status status = locked(ctx, [&] { ctx->backend->event_destroy(event->handle); }, true);
    delete event;
    release_context(ctx);
    return status;
}

s24_status s24_event_record(s24_event* event) {
    if (event == nullptr) {
        set_last_error("event is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    return locked(event->ctx, [&] { event->ctx->backend->event_record(event->handle); });
}

s24_status s24_event_elapsed_ms(const s24_event* start, const s24_event* end, float* ms) {
    if (start == nullptr || end == nullptr) {
        set_last_error(start == nullptr ? "start is NULL" : "end is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    return locked(start->ctx, [&] {
        require_pointer(ms, "ms");
        require(start->ctx == end->ctx, "start and end events belong to different contexts");
        *ms = start->ctx->backend->event_elapsed_ms(start->handle, end->handle);
    });
}

// ---- building blocks -------------------------------------------------------------------------------

s24_status s24_sparsify24_rows(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* h,
                               int32_t keep_all, s24_layout layout, void* packed, int32_t* col_counts,
                               int64_t* totals) {
    return locked(ctx, [&] {
        check_packed(ctx, dtype, rows, cols, layout, "sparsify24_rows");
        require_pointer(h, "h");
        require_pointer(packed, "packed");
        require(!keep_all || layout == S24_LAYOUT_DENSE, "keep_all = 1 writes plain relu^2: layout must be DENSE, got ",
                layout_name(layout));
        ctx->backend->sparsify24_rows(dtype, rows, cols, h, keep_all != 0, layout, packed, col_counts, totals);
    });
}

s24_status s24_compress24(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* dense,
                          s24_layout layout, void* packed) {
    return locked(ctx, [&] {
        check_packed(ctx, dtype, rows, cols, layout, "compress24");
        require_pointer(dense, "dense");
        require_pointer(packed, "packed");
        ctx->backend->compress24(dtype, rows, cols, dense, layout, packed);
    });
}

s24_status s24_decompress24(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* packed,
                            s24_layout layout, void* dense) {
    return locked(ctx, [&] {
        check_packed(ctx, dtype, rows, cols, layout, "decompress24");
        require_pointer(packed, "packed");
        require_pointer(dense, "dense");
        ctx->backend->decompress24(dtype, rows, cols, packed, layout, dense);
    });
}

s24_status s24_masked_grad24(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* dy,
                             const void* y_packed, s24_layout layout, void* dh_packed) {
    return locked(ctx, [&] {
        check_packed(ctx, dtype, rows, cols, layout, "masked_grad24");
        require_pointer(dy, "dy");
        require_pointer(y_packed, "y_packed");
        require_pointer(dh_packed, "dh_packed");
        ctx->backend->masked_grad24(dtype, rows, cols, dy, y_packed, layout, dh_packed);
    });
}

s24_status s24_select_dense_features(s24_context* ctx, int64_t features, const int32_t* counts, int64_t k,
                                     int32_t* dense_idx, uint8_t* is_dense) {
    return locked(ctx, [&] {
        require(features >= 1 && features < (int64_t(1) << 31), "features must be in [1, 2^31), got ", features);
        require(k >= 0 && k <= features, "k must be in [0, features = ", features, "], got ", k);
        require_pointer(counts, "counts");
        require(k == 0 || dense_idx != nullptr, "dense_idx is NULL but k = ", k);
        ctx->backend->select_dense_features(features, counts, k, dense_idx, is_dense);
    });
}

s24_status s24_sparsify24_cols_split(s24_context* ctx, s24_dtype dtype, int64_t tokens, int64_t features,
                                     const void* src_packed, s24_layout in_layout, const int32_t* perm,
                                     const uint8_t* is_dense, const int32_t* dense_idx, int64_t k,
                                     s24_layout out_layout, void* t_packed, void* dense_cols, int64_t* totals) {
    return locked(ctx, [&] {
        check_split(ctx, "sparsify24_cols_split", dtype, tokens, features, in_layout, out_layout, k, t_packed,
                    is_dense, dense_idx, dense_cols);
        require_pointer(src_packed, "src_packed");
        ctx->backend->sparsify24_cols_split(dtype, tokens, features, src_packed, in_layout, perm, is_dense, dense_idx,
                                            k, out_layout, t_packed, dense_cols, totals);
    });
}

s24_status s24_grad_split24(s24_context* ctx, s24_dtype dtype, int64_t tokens, int64_t features, const void* dy,
                            const void* y_packed, s24_layout in_layout, void* dh_packed, const int32_t* perm,
                            const uint8_t* is_dense, const int32_t* dense_idx, int64_t k, s24_layout out_layout,
                            void* t_packed, void* dense_cols, int64_t* totals) {
    return locked(ctx, [&] {
        check_split(ctx, "grad_split24", dtype, tokens, features, in_layout, out_layout, k, t_packed, is_dense,
                    dense_idx, dense_cols);
        require_pointer(dy, "dy");
        require_pointer(y_packed, "y_packed");
        require_pointer(dh_packed, "dh_packed");
        require(dh_packed != y_packed && dh_packed != dy && t_packed != dh_packed,
                "grad_split24: dh_packed must not alias dy or y_packed, nor t_packed dh_packed");
        ctx->backend->grad_split24(dtype, tokens, features, dy, y_packed, in_layout, dh_packed, perm, is_dense,
                                   dense_idx, k, out_layout, t_packed, dense_cols, totals);
    });
}

s24_status s24_gather_rows(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* in,
                           const int32_t* perm, void* out) {
    return locked(ctx, [&] {
        check_dtype(ctx, dtype, "gather_rows");
        check_matrix(rows, cols, "gather_rows");
        require_pointer(in, "in");
        require_pointer(out, "out");
        ctx->backend->gather_rows(dtype, rows, cols, in, perm, out);
    });
}

s24_status s24_spmm(s24_context* ctx, s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_packed,
                    s24_layout a_layout, const void* b, int32_t b_transposed, int32_t c_transposed, void* c) {
    return locked(ctx, [&] {
        check_packed(ctx, dtype, m, k, a_layout, "spmm operand a [m, k]");
        check_matrix(k, n, "spmm operand b");
        require_pointer(a_packed, "a_packed");
        require_pointer(b, "b");
        require_pointer(c, "c");
        ctx->backend->spmm(dtype, m, n, k, a_packed, a_layout, b, b_transposed != 0, c, c_transposed != 0,
                           ctx->algorithm_search ? SpmmAlgorithm::TUNED : SpmmAlgorithm::DEFAULT);
    });
}

s24_status s24_spmm_tune(s24_context* ctx, s24_dtype dtype, int64_t m, int64_t n, int64_t k, int32_t b_transposed,
                         int32_t c_transposed, s24_plan_candidate* candidates, int64_t capacity, int64_t* count,
                         int64_t* chosen) {
    return locked(ctx, [&] {
        check_packed(ctx, dtype, m, k, S24_LAYOUT_CUSPARSELT, "spmm_tune operand a [m, k]");
        check_matrix(k, n, "spmm_tune operand b");
        require(b_transposed == 0 || b_transposed == 1, "b_transposed must be 0 or 1, got ", b_transposed);
        require(c_transposed == 0 || c_transposed == 1, "c_transposed must be 0 or 1, got ", c_transposed);
        require(capacity >= 0, "capacity must be >= 0, got ", capacity);
        require(capacity == 0 || candidates != nullptr, "candidates is NULL but capacity = ", capacity);
        require_pointer(count, "count");
        require_pointer(chosen, "chosen");
        SpmmTuning report;
        ctx->backend->tune_spmm(dtype, m, n, k, b_transposed != 0, c_transposed != 0, &report);
        *count = (int64_t)report.candidates.size();
        *chosen = report.chosen;
        for (int64_t i = 0; i < capacity && i < *count; ++i) {
            const SpmmCandidate& c = report.candidates[(size_t)i];
            s24_plan_candidate& out = candidates[i];
            out.form = c.form;
            out.algorithm = c.algorithm;
            out.split_k = c.split_k;
            out.split_k_mode = c.split_k_mode;
            out.split_k_buffers = c.split_k_buffers;
            out.valid = c.valid ? 1 : 0;
            out.searched = c.searched ? 1 : 0;
            out.ms = c.ms;
            out.error = (float)c.error;
        }
    });
}

s24_status s24_plan_cache_clear(s24_context* ctx) {
    return locked(ctx, [&] { ctx->backend->clear_plans(); });
}

s24_status s24_gemm(s24_context* ctx, s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a,
                    int32_t a_transposed, const void* b, int32_t b_transposed, void* c) {
    return locked(ctx, [&] {
        check_dtype(ctx, dtype, "gemm");
        check_matrix(m, k, "gemm operand a");
        check_matrix(k, n, "gemm operand b");
        require_pointer(a, "a");
        require_pointer(b, "b");
        require_pointer(c, "c");
        ctx->backend->gemm(dtype, m, n, k, a, a_transposed != 0, b, b_transposed != 0, c);
    });
}

s24_status s24_token_permutation(uint64_t seed, int64_t step, int64_t tokens, int32_t* perm) {
    return guarded([&] {
        require(tokens >= 1 && tokens < (int64_t(1) << 31), "tokens must be in [1, 2^31), got ", tokens);
        require(step >= 0, "step must be >= 0, got ", step);
        require_pointer(perm, "perm");
        Permutation p = make_permutation(seed, step, tokens);
        for (int64_t i = 0; i < tokens; ++i) perm[i] = (int32_t)permute_index(p, (uint32_t)i);
    });
}

}  // extern "C"
