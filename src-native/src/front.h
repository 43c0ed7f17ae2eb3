// The C API's opaque objects and the helpers shared by api.cpp and ffn.cpp.
#pragma once

#include "backend.h"
#include "layout.h"
#include "sparse24.h"

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>

// Lifetimes: a context lives while its handle or any FFN or event of it is alive (refs); an FFN while its
// handle or any saved state of it is alive. s24_context_destroy waits for the calls in flight, makes new
// calls fail cleanly, and frees the context once its last FFN and event are destroyed too.
struct s24_context {
    std::mutex lock;  // serializes every call on this context (and its plans, saved states, events)
    std::unique_ptr<s24::Backend> backend;
    s24_backend kind;
    bool algorithm_search = false;  // s24_context_set_algorithm_search, for s24_spmm
    std::string fallback_reason;    // AUTO on the CPU: why CUDA was not used
    // Guarded by `gate` (never held across a call body):
    std::mutex gate;
    std::condition_variable idle;  // signalled when `calls` drops to 0
    int64_t calls = 0;             // calls in flight (running, waiting for `lock`, or being turned away)
    int64_t refs = 1;              // the handle + each FFN and event
    bool destroyed = false;        // s24_context_destroy has begun
};

struct s24_event {
    s24_context* ctx;
    void* handle;
};

struct s24_ffn {
    s24_context* ctx;
    int64_t refs = 1;        // the handle + each saved state (guarded by ctx->gate)
    bool destroyed = false;  // s24_ffn_destroy has run (saved states keep the plan alive)
    int64_t tokens, d_model, d_ff;
    s24_dtype dtype;
    s24_ffn_options options;
    int64_t dense_features;  // k: features computed densely in the split backward
    s24_layout y_layout;     // Yhat [T, f] and dH, packed
    s24_layout t_layout;     // the backward's transposed operands [f, T]
    int64_t next_step;       // the permutation step of the next saved forward
    bool side_stream;        // latency-bound steps on the backend's side stream (SPARSE24_SIDE_STREAM=0: off)
};

struct s24_saved {
    s24_ffn* ffn;
    void* memory;        // one allocation holding everything below
    void* y_packed;      // Yhat in ffn->y_layout
    int32_t* counts;     // kept non-zeros per feature [f]
    int32_t* dense_idx;  // [k]
    uint8_t* is_dense;   // [f]
    int64_t* totals;     // [6]: forward before/kept, dW2 before/kept, dW1 before/kept
    int64_t step = -1;
    bool forward_done = false;
    bool backward_done = false;
    bool backward_sparse = false;
};

namespace s24 {

// Builds a message from streamable parts: msg("x has ", n, " rows").
template <class... Parts>
std::string msg(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}

template <class... Parts>
void require(bool condition, const Parts&... parts) {
    if (!condition) fail(S24_ERROR_INVALID_ARGUMENT, msg(parts...));
}

inline void require_pointer(const void* p, const char* name) {
    require(p != nullptr, name, " is NULL");
}

void check_dtype(const s24_context* ctx, s24_dtype dtype, const char* what);

// Largest byte count any size computation may reach (so that it also fits a signed 64-bit integer).
constexpr uint64_t kMaxBytes = uint64_t(INT64_MAX);

// a * b, or INVALID_ARGUMENT naming `what` and the factors when the product exceeds kMaxBytes.
inline size_t checked_mul(uint64_t a, uint64_t b, const char* what) {
    uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r) || r > kMaxBytes)
        fail(S24_ERROR_INVALID_ARGUMENT, msg(what, ": ", a, " * ", b, " exceeds ", kMaxBytes, " bytes"));
    return (size_t)r;
}
// Bytes of a [rows, cols] array of `elem`-byte elements, overflow-checked.
inline size_t array_bytes(int64_t rows, int64_t cols, size_t elem, const char* what) {
    return checked_mul(checked_mul((uint64_t)rows, (uint64_t)cols, what), elem, what);
}

// Overflow-checked packed_bytes (layout.h): INVALID_ARGUMENT naming the shape when it exceeds kMaxBytes.
size_t checked_packed_bytes(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols);

// Sub-allocates one scratch buffer: add() returns each part's offset (256-byte aligned), total() its size.
// Offsets and the total are overflow-checked (INVALID_ARGUMENT).
class ScratchPlan {
public:
    size_t add(size_t bytes) {
        size_t offset = total_;
        require(bytes <= kMaxBytes - 255 && total_ <= kMaxBytes - (bytes + 255) / 256 * 256,
                "scratch plan: ", total_, " + ", bytes, " bytes exceeds ", kMaxBytes);
        total_ += (bytes + 255) / 256 * 256;
        return offset;
    }
    size_t total() const { return total_; }

private:
    size_t total_ = 0;
};

// Records the message s24_last_error() returns on this thread.
void set_last_error(const std::string& message);

// Runs a C API body: returns its status, records the message of a failure for s24_last_error().
template <class Body>
s24_status guarded(Body&& body) {
    try {
        body();
        return S24_OK;
    } catch (const Error& e) {
        set_last_error(e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_last_error("host memory allocation failed");
        return S24_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_last_error(msg("internal error: ", e.what()));
        return S24_ERROR_INTERNAL;
    } catch (...) {
        set_last_error("internal error: unknown exception");
        return S24_ERROR_INTERNAL;
    }
}

// Counts a call on `ctx` in flight (so that s24_context_destroy waits for it) for its scope. A call that
// arrives once the context is being destroyed fails cleanly, unless it frees a child (`releasing`).
class CallGuard {
public:
    CallGuard(s24_context* ctx, bool releasing) : ctx_(ctx) {
        std::lock_guard<std::mutex> g(ctx->gate);
        ++ctx->calls;  // turned-away callers count too, until they have left the gate
        admitted_ = releasing || !ctx->destroyed;
    }
    ~CallGuard() {
        std::lock_guard<std::mutex> g(ctx_->gate);
        if (--ctx_->calls == 0) ctx_->idle.notify_all();
    }
    bool admitted() const { return admitted_; }

private:
    s24_context* ctx_;
    bool admitted_ = false;
};

// guarded() plus a null check of the context, the in-flight count and the context's lock; after a body that
// succeeded, the retention rule (Backend::end_call) may release the scratch the call no longer needs.
// releasing: the call frees a child of the context (allowed while the context is being destroyed).
template <class Body>
s24_status locked(const s24_context* ctx, Body&& body, bool releasing = false) {
    if (ctx == nullptr) {
        set_last_error("context is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    s24_context* c = const_cast<s24_context*>(ctx);
    CallGuard call(c, releasing);
    if (!call.admitted()) {
        set_last_error("the context has been destroyed (s24_context_destroy)");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    std::lock_guard<std::mutex> hold(c->lock);
    return guarded([&] {
        body();
        c->backend->end_call();
    });
}

// Drops one reference to `ctx` and frees it when it was the last (its handle destroyed, no FFN or event left).
void release_context(s24_context* ctx);

}  // namespace s24
