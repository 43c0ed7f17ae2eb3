// Internal interface between the C API front end (api.cpp, ffn.cpp) and the backends (cpu/, cuda/).
//
// The front end validates every argument (shapes, dtypes, null pointers, layout constraints) before
// it calls a backend, so a backend may assume valid input. Backends report failures by throwing
// s24::Error (status + message); api.cpp turns that into a status and s24_last_error().
// All pointers are in the backend's memory space (device memory for CUDA, host memory for CPU) and
// all work is ordered on the backend's current stream.
#pragma once

#include "retention.h"
#include "sparse24.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace s24 {

// A failure with its status. Messages name the argument / library call and the expected value.
class Error : public std::runtime_error {
public:
    Error(s24_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    s24_status status() const { return status_; }

private:
    s24_status status_;
};

[[noreturn]] inline void fail(s24_status status, const std::string& message) { throw Error(status, message); }

// How a sparse GEMM's algorithm is chosen: cuSPARSELt's default, or the tuned plan (every algorithm
// timed and validated once per shape, the choice kept in memory and on disk).
enum class SpmmAlgorithm { DEFAULT, TUNED };

// One candidate of a sparse GEMM's tuning (s24_plan_candidate), and a tuning's report.
struct SpmmCandidate {
    int form;  // s24_plan_form
    int algorithm, split_k, split_k_mode, split_k_buffers;
    bool valid;
    bool searched;  // cusparseLtMatmulSearch's choice
    float ms;
    double error;
};
struct SpmmTuning {
    std::vector<SpmmCandidate> candidates;
    int64_t chosen = -1;  // index into candidates
};

class Backend {
public:
    virtual ~Backend() = default;

    // --- context -------------------------------------------------------------------------------
    virtual void info(s24_context_info* info) const = 0;
    virtual void set_stream(void* stream) = 0;  // must wait for work on the previous stream first
    virtual void* stream() const = 0;
    virtual void synchronize() = 0;

    // --- memory --------------------------------------------------------------------------------
    virtual void* allocate(size_t bytes) = 0;  // throws OUT_OF_MEMORY; never returns nullptr for bytes > 0
    virtual void release(void* ptr) = 0;
    virtual void copy(void* dst, const void* src, size_t bytes, s24_copy_kind kind) = 0;
    virtual void fill(void* ptr, int value, size_t bytes) = 0;

    // A forward's saved state (only this context's work touches it). release_saved returns it in stream order,
    // after the work enqueued so far (set_stream chains streams, so that is all of this context's work), without
    // waiting. CUDA keeps a memory pool of the context's own for it: cudaMalloc + a synchronizing cudaFree per
    // forward stalled the host every layer of a training step.
    virtual void* allocate_saved(size_t bytes) { return allocate(bytes); }
    virtual void release_saved(void* ptr) {
        synchronize();
        release(ptr);
    }

    // Scratch for one FFN call (the front end asks once per call and sub-allocates): valid until the
    // call returns (calls on a context are serialized and stream-ordered, so one growing buffer serves
    // them all; the retention rule may release it between calls). Contents undefined. Building blocks
    // must NOT use it: they keep their own workspaces (GEMM workspaces, selection temporaries), since the
    // FFN passes pointers into this buffer to them.
    virtual void* scratch(size_t bytes) = 0;

    // --- memory kept between calls (retention.h) ---------------------------------------------------
    // Every buffer a backend keeps between calls and grows on demand is a RetainedBuffer registered in
    // retention_ by its constructor. The front end calls end_call() after every call that succeeded.
    void end_call() { release(retention_.end_call(), false); }
    // A new rule (calls >= 0), applied at once.
    void set_retention(size_t max_bytes, int64_t calls) { release(retention_.set_rule(max_bytes, calls), false); }
    // Releases every retained buffer now, and what the saved states' pool keeps; fails while they cannot be
    // (see quiesce).
    void trim() {
        release(retention_.all(), true);
        if (quiesce()) trim_saved();
    }
    const Retention& retention() const { return retention_; }

    // --- events (stream-ordered timing) -----------------------------------------------------------
    virtual void* event_create() = 0;
    virtual void event_destroy(void* event) = 0;
    virtual void event_record(void* event) = 0;
    virtual float event_elapsed_ms(void* start, void* end) = 0;  // waits for end

    // --- what the FFN uses ------------------------------------------------------------------------
    // The packed layout this backend gives the FFN's 2:4 operands of [rows, cols] (Yhat is [T, f],
    // the transposed operands [f, T]): CUDA returns CUSPARSELT where the shape and the verified
    // layout allow the sparse GEMM, else DENSE; CPU returns ROW.
    virtual s24_layout ffn_layout(s24_dtype dtype, int64_t rows, int64_t cols) const = 0;
    // Whether spmm with this packed layout runs on sparse tensor cores (false on CPU).
    virtual bool sparse_gemm_available(s24_dtype dtype, int64_t m, int64_t n, int64_t k, s24_layout layout) const = 0;

    // --- building blocks (semantics: sparse24.h) ----------------------------------------------------
    virtual void sparsify24_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* h, bool keep_all,
                                 s24_layout layout, void* packed, int32_t* col_counts, int64_t* totals) = 0;
    virtual void compress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dense, s24_layout layout,
                            void* packed) = 0;
    virtual void decompress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* packed, s24_layout layout,
                              void* dense) = 0;
    virtual void masked_grad24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dy, const void* y_packed,
                               s24_layout layout, void* dh_packed) = 0;
    virtual void select_dense_features(int64_t features, const int32_t* counts, int64_t k, int32_t* dense_idx,
                                       uint8_t* is_dense) = 0;
    virtual void sparsify24_cols_split(s24_dtype dtype, int64_t tokens, int64_t features, const void* src_packed,
                                       s24_layout in_layout, const int32_t* perm, const uint8_t* is_dense,
                                       const int32_t* dense_idx, int64_t k, s24_layout out_layout, void* t_packed,
                                       void* dense_cols, int64_t* totals) = 0;
    // masked_grad24 (dy, y_packed -> dh_packed), then sparsify24_cols_split of dh_packed: the reference
    // composition; a backend overrides it with a fused pass where it has one.
    virtual void grad_split24(s24_dtype dtype, int64_t tokens, int64_t features, const void* dy, const void* y_packed,
                              s24_layout in_layout, void* dh_packed, const int32_t* perm, const uint8_t* is_dense,
                              const int32_t* dense_idx, int64_t k, s24_layout out_layout, void* t_packed,
                              void* dense_cols, int64_t* totals) {
        masked_grad24(dtype, tokens, features, dy, y_packed, in_layout, dh_packed);
        sparsify24_cols_split(dtype, tokens, features, dh_packed, in_layout, perm, is_dense, dense_idx, k, out_layout,
                              t_packed, dense_cols, totals);
    }
    virtual void gather_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* in, const int32_t* perm,
                             void* out) = 0;
    // c_transposed: c is stored as [n, m] row-major (c^T), i.e. column-major [m, n].
    virtual void spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_packed, s24_layout a_layout,
                      const void* b, bool b_transposed, void* c, bool c_transposed, SpmmAlgorithm algorithm) = 0;
    // Creates (and with TUNED tunes, or reads from disk and validates) the plan spmm would use, without
    // running it. No-op where spmm has no plans.
    virtual void prepare_spmm(s24_dtype /*dtype*/, int64_t /*m*/, int64_t /*n*/, int64_t /*k*/, bool /*b_transposed*/,
                              bool /*c_transposed*/, SpmmAlgorithm /*algorithm*/) {}
    // Tunes the sparse GEMM again (ignoring earlier choices), keeps and stores the choice, reports every
    // candidate. NOT_SUPPORTED where there is nothing to tune.
    virtual void tune_spmm(s24_dtype /*dtype*/, int64_t /*m*/, int64_t /*n*/, int64_t /*k*/, bool /*b_transposed*/,
                           bool /*c_transposed*/, SpmmTuning* /*report*/) {
        fail(S24_ERROR_NOT_SUPPORTED, "spmm tuning: this backend has no sparse GEMM plans (CUDA with cuSPARSELt only)");
    }
    // Drops the plans (and the tuned choices, in memory and on disk).
    virtual void clear_plans() {}
    // The side stream, for latency-bound steps beside the main stream's work. begin_side(): the side stream
    // waits for the work enqueued so far and later calls run on it; end_side(): calls run on the main stream
    // again (no wait); wait_side(): the main stream waits for the side stream's work so far. No-ops on the CPU.
    virtual void begin_side() {}
    virtual void end_side() {}
    virtual void wait_side() {}
    virtual void gemm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a, bool a_transposed,
                      const void* b, bool b_transposed, void* c) = 0;

    // --- FFN helpers ----------------------------------------------------------------------------------
    // perm (int32 [tokens]) = s24_token_permutation(seed, step, tokens), computed where perm lives.
    virtual void token_permutation(uint64_t seed, int64_t step, int64_t tokens, int32_t* perm) = 0;
    // dst[r, idx[j]] = src[r, j] for r < rows, j < k (dst has dst_cols columns).
    virtual void scatter_cols(s24_dtype dtype, int64_t rows, int64_t k, const void* src, const int32_t* idx,
                              int64_t dst_cols, void* dst) = 0;
    // dst[idx[j], :] = src[j, :] for j < k (rows of `cols` elements).
    virtual void scatter_rows(s24_dtype dtype, int64_t k, int64_t cols, const void* src, const int32_t* idx,
                              void* dst) = 0;

protected:
    // Waits for the work that may still use the retained buffers. False where they cannot be freed now
    // (CUDA: a stream of the context is being captured into a graph); nothing is freed then.
    virtual bool quiesce() { return true; }
    // Gives back the memory of released saved states that a pool keeps for later forwards (after quiesce).
    virtual void trim_saved() {}

    Retention retention_;

private:
    void release(const std::vector<RetainedBuffer*>& buffers, bool required) {
        if (buffers.empty()) return;
        if (!quiesce()) {
            if (required)
                fail(S24_ERROR_NOT_SUPPORTED, "s24_context_trim: a stream of the context is being captured into a "
                                              "CUDA graph; trim after the capture ends");
            return;  // the next call's end releases them
        }
        for (RetainedBuffer* b : buffers) b->free_now();
        retention_.released(buffers.size());
    }
};

// Factories. create_cuda_backend throws BACKEND_UNAVAILABLE / LIBRARY_NOT_FOUND with a clear message.
std::unique_ptr<Backend> create_cpu_backend();
std::unique_ptr<Backend> create_cuda_backend(int device);

}  // namespace s24
