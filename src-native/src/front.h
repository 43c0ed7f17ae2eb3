// The C API's opaque objects and the helpers shared by api.cpp and ffn.cpp.
#pragma once

#include "backend.h"
#include "sparse24.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>

struct s24_context {
    std::mutex lock;  // serializes every call on this context (and its plans, saved states, events)
    std::unique_ptr<s24::Backend> backend;
    s24_backend kind;
    bool algorithm_search = false;  // s24_context_set_algorithm_search, for s24_spmm
};

struct s24_event {
    s24_context* ctx;
    void* handle;
};

struct s24_ffn {
    s24_context* ctx;
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

const char* dtype_name(s24_dtype dtype);
const char* layout_name(s24_layout layout);
void check_dtype(const s24_context* ctx, s24_dtype dtype, const char* what);
size_t packed_bytes(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols);

// Sub-allocates one scratch buffer: add() sizes, then base() the scratch, then at() the pointers.
class ScratchPlan {
public:
    size_t add(size_t bytes) {
        size_t offset = total_;
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

// guarded() plus a null check of the context and its lock.
template <class Body>
s24_status locked(const s24_context* ctx, Body&& body) {
    if (ctx == nullptr) {
        set_last_error("context is NULL");
        return S24_ERROR_INVALID_ARGUMENT;
    }
    std::lock_guard<std::mutex> hold(const_cast<s24_context*>(ctx)->lock);
    return guarded(body);
}

}  // namespace s24
