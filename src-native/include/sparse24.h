/*
 * sparse24 — 2:4 activation sparsity for Squared-ReLU feed-forward layers.
 *
 * The C API. Everything is row-major. Weights use PyTorch's Linear layout (out x in):
 *   X [T, d], W1 [f, d], W2 [d, f], Z [T, d]     (T tokens, d model width, f FFN width)
 *
 *   forward   H = X W1^T;  Yhat = S24_rows(relu(H)^2);  Z = Yhat W2^T
 *   backward  dYhat = dZ W2;  dH = dYhat * 2 sqrt(Yhat) (on Yhat's mask);  dX = dH W1
 *             dW2 = dZ^T Yhat,  dW1 = dH^T X   (split: dense features exact, the rest 2:4 along tokens)
 *
 * Conventions
 *  - Every function returns an s24_status; on failure s24_last_error() (thread-local) says why.
 *    Nothing aborts, nothing prints.
 *  - Pointers to tensors live in the context's memory space: device memory for a CUDA context, host
 *    memory for a CPU context. Work on a CUDA context is enqueued on the context's stream and returns
 *    without waiting, except where a function says it synchronizes.
 *  - A context may be used from several threads: calls on one context are serialized by a lock.
 *    s24_context_destroy waits for the calls in flight, then fails later calls on the context; its FFNs, saved
 *    states and events stay valid until destroyed themselves (destroy them in any order; the context's memory
 *    goes with the last of them; s24_free works until then). Using a handle after its own destroy returned
 *    is undefined.
 *  - Freeing memory (s24_free, s24_saved_destroy) first waits for the work enqueued on the context's stream.
 *  - NaN propagates: the 2:4 selection ranks NaN above every number (ties go to the lower index) and
 *    relu(NaN) = NaN. Size products that overflow are S24_ERROR_INVALID_ARGUMENT.
 *  - dtypes: S24_BF16 and S24_FP16 on every backend; S24_FP32 on the CPU backend only.
 *    Storage is rounded to the dtype (round-to-nearest-even); arithmetic accumulates in fp32.
 */
#ifndef SPARSE24_H
#define SPARSE24_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Status and errors                                                                              */

typedef enum s24_status {
    S24_OK = 0,
    S24_ERROR_INVALID_ARGUMENT = 1,    /* null pointer, bad shape, bad dtype, bad option value      */
    S24_ERROR_NOT_SUPPORTED = 2,       /* valid request this backend or device cannot do            */
    S24_ERROR_BACKEND_UNAVAILABLE = 4, /* no CUDA device or driver                                  */
    S24_ERROR_LIBRARY_NOT_FOUND = 5,   /* cuSPARSELt or cuBLASLt could not be loaded                */
    S24_ERROR_CUDA = 6,                /* a CUDA runtime call failed (message has the CUDA name)     */
    S24_ERROR_CUBLAS = 7,              /* a cuBLASLt call failed (message has the status name)       */
    S24_ERROR_CUSPARSELT = 8,          /* a cuSPARSELt call failed (message has the status name)     */
    S24_ERROR_OUT_OF_MEMORY = 9,
    S24_ERROR_VALIDATION_FAILED = 10,  /* a self-check against the reference failed                 */
    S24_ERROR_INTERNAL = 11
} s24_status;

/* The enum's name, e.g. "S24_ERROR_INVALID_ARGUMENT". Never NULL. */
const char* s24_status_name(s24_status status);
/* Message of the last failed call on this thread ("" if none). Valid until the next call on this thread. */
const char* s24_last_error(void);
/* Library version, "MAJOR.MINOR.PATCH". */
const char* s24_version(void);

/* ---------------------------------------------------------------------------------------------- */
/* Types                                                                                          */

typedef enum s24_backend {
    S24_BACKEND_AUTO = 0, /* CUDA when a usable device and cuSPARSELt/cuBLASLt are present, else CPU */
    S24_BACKEND_CPU = 1,  /* the reference backend: runs anywhere                                    */
    S24_BACKEND_CUDA = 2
} s24_backend;

typedef enum s24_dtype {
    S24_FP32 = 0,
    S24_BF16 = 1,
    S24_FP16 = 2
} s24_dtype;

/* Size in bytes of one element, 0 for an unknown dtype. */
size_t s24_dtype_size(s24_dtype dtype);

/* How a 2:4-sparse matrix [rows, cols] (2 non-zeros at most in each group of 4 consecutive columns
 * of a row) is stored. All packed layouts keep the values as a row-major [rows, cols/2] array
 * (the two kept values of each group, lower column first) followed by the metadata, in one buffer.
 * Each group's metadata is a 4-bit nibble: bits 0-1 the column (0..3) of the first kept value,
 * bits 2-3 that of the second; first < second. Where a group has fewer than two non-zeros, zeros are
 * kept at the lowest free positions so the pair stays ordered. */
typedef enum s24_layout {
    S24_LAYOUT_DENSE = 0,     /* not packed: the pruned dense [rows, cols] matrix                     */
    S24_LAYOUT_ROW = 1,       /* metadata row-major: byte (r, g/2) holds group g of row r, even g in
                                 the low nibble; (cols/4 + 1)/2 bytes per row. Any rows, cols % 4 == 0 */
    S24_LAYOUT_CUSPARSELT = 2 /* metadata in the order cuSPARSELt's sparse GEMM reads it (16-bit dtypes,
                                 rows % 64 == 0, cols % 64 == 0). The nibble of (row r, group g) is in
                                 byte (r/64)*8*cols + (g/8)*256 + ((r%64)/16)*64 + (r%8)*8 + (g%4)*2
                                 + (g%8)/4 of the metadata, high nibble when r%16 >= 8. Checked against
                                 cuSPARSELt's own compression when a CUDA context is created.       */
} s24_layout;

/* Bytes of a packed [rows, cols] matrix in `layout` (values + metadata). */
s24_status s24_packed_size(s24_layout layout, s24_dtype dtype, int64_t rows, int64_t cols, size_t* bytes);

/* ---------------------------------------------------------------------------------------------- */
/* Context: backend, device, stream, library handles, workspace, plan cache                       */

typedef struct s24_context s24_context;

typedef struct s24_context_info {
    int32_t backend;               /* s24_backend actually in use (never AUTO)                        */
    int32_t device;                /* CUDA device ordinal, -1 on CPU                                  */
    int32_t compute_capability;    /* major*10 + minor, 0 on CPU                                      */
    int32_t multiprocessors;       /* 0 on CPU                                                        */
    int32_t direct_layout;         /* 1: our kernels write cuSPARSELt's layout directly (verified at
                                      creation); 0: they write pruned dense and cuSPARSELt compresses */
    int32_t cusparselt_version;    /* e.g. 801 for 0.8.1, 0 on CPU                                    */
    int32_t cublaslt_version;      /* e.g. 130101, 0 on CPU                                           */
    int32_t cpu_threads;           /* threads the CPU backend uses                                    */
    char device_name[128];
    char cusparselt_path[256];     /* the library file that was loaded, "" on CPU                     */
    char cublaslt_path[256];
    char fallback_reason[512];     /* AUTO on the CPU: why CUDA is not used (e.g. "no NVIDIA driver
                                      (libcuda.so.1 not found: ...)", "cuSPARSELt ... not found;
                                      searched: ..."); "" otherwise                                     */
} s24_context_info;

/* device: CUDA device ordinal (ignored for CPU). With AUTO, a missing GPU or missing libraries
 * select the CPU backend; with CUDA they are errors (BACKEND_UNAVAILABLE / LIBRARY_NOT_FOUND naming
 * the library and the paths searched; SPARSE24_CUSPARSELT_PATH and SPARSE24_CUBLASLT_PATH, a file or
 * a directory, are tried first). */
s24_status s24_context_create(s24_backend backend, int32_t device, s24_context** out);
/* Waits for the context's pending work, then frees it. NULL is a no-op. */
s24_status s24_context_destroy(s24_context* ctx);
s24_status s24_context_get_info(const s24_context* ctx, s24_context_info* info);
/* CUDA: the cudaStream_t to enqueue on (NULL = the legacy default stream). CPU: must be NULL. */
s24_status s24_context_set_stream(s24_context* ctx, void* stream);
s24_status s24_context_get_stream(const s24_context* ctx, void** stream);
/* Blocks until all work enqueued through this context has finished. */
s24_status s24_context_synchronize(s24_context* ctx);
/* 1: s24_spmm runs tuned plans (see s24_spmm_tune: tuned once per shape, or read back from the plan
 * cache on disk and validated); 0 (default): cuSPARSELt's default algorithm. FFN plans follow their own
 * algorithm_search option. No effect on the CPU backend. */
s24_status s24_context_set_algorithm_search(s24_context* ctx, int32_t on);

/* Scratch retention. A context keeps, between calls, the temporaries its calls grow on demand: the FFN's scratch
 * buffer (s24_ffn_workspace_size; one per context, shared by its plans) and, on CUDA, the cuBLASLt workspaces
 * (32 MiB per stream) and the sparse GEMM's workspace and temporaries. A call counts when it uses any of them
 * (FFN forwards and backwards; on CUDA also s24_ffn_tune, s24_spmm, s24_gemm, s24_spmm_tune). The rule, applied
 * after every counted call that succeeds and when it is set:
 *   if together they hold more than max_bytes, each one larger than the most the last `calls` counted calls
 *   asked of it (this call included; with calls = 0, none) is released;
 * so after a call the context holds at most max(max_bytes, what the last `calls` calls needed), and a one-off
 * large call (e.g. T = 65536 once) stops holding memory `calls` counted calls later. The next call that needs a
 * released buffer allocates it again. Defaults: max_bytes = 256 MiB, calls = 64 (a training step of L layers
 * sharing the context makes 2L counted calls: calls >= L + 1 keeps the backward's scratch across the forwards).
 * max_bytes = 0 with calls = 0 releases everything after every call; max_bytes = SIZE_MAX never releases (until
 * s24_context_trim or s24_context_destroy). calls < 0 is S24_ERROR_INVALID_ARGUMENT.
 * A release on CUDA first waits for the work on the context's stream and side stream (as s24_free does). While a
 * stream of the context is being captured into a CUDA graph nothing is released (the graph replays into these
 * buffers: keep max_bytes = SIZE_MAX while such a graph is in use). */
s24_status s24_context_set_scratch_retention(s24_context* ctx, size_t max_bytes, int64_t calls);
/* Releases every retained buffer now (waiting for the context's stream first); the next call allocates what it
 * needs. On CUDA it also gives back the device memory of freed saved states, which a pool of the context keeps
 * for later forwards between trims (the live saved states' memory at most at its peak; s24_saved_create takes it
 * from the pool and s24_saved_destroy returns it in stream order, without waiting).
 * S24_ERROR_NOT_SUPPORTED while a stream of the context is being captured into a CUDA graph. */
s24_status s24_context_trim(s24_context* ctx);

typedef struct s24_context_memory {
    size_t retained_bytes;    /* held between calls now: ffn_scratch_bytes + workspace_bytes                 */
    size_t ffn_scratch_bytes; /* the FFN's scratch buffer                                                   */
    size_t workspace_bytes;   /* the building blocks' workspaces and temporaries (0 on the CPU backend)     */
    size_t retain_max_bytes;  /* the retention rule (s24_context_set_scratch_retention)                     */
    int64_t retain_calls;
    int64_t releases;         /* buffers released so far by the rule and by s24_context_trim                */
} s24_context_memory;
/* What the context holds between calls and its retention rule. */
s24_status s24_context_get_memory(const s24_context* ctx, s24_context_memory* memory);

/* Tuned sparse GEMM plans. Tuning a GEMM shape runs every cuSPARSELt algorithm id (and the choice of
 * cusparseLtMatmulSearch) in every allowed form on random operands of that shape, checks each against
 * cuBLASLt's dense product (relative error <= 1e-2, no NaN), times the valid ones (median of 9 runs) and
 * keeps the fastest. The choice is kept by the context and written to the plan cache file,
 * ${SPARSE24_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/sparse24}/plans/cusparselt-plans.txt, keyed by GPU name
 * and UUID, driver, cuSPARSELt version, dtype, shape and transposes (SPARSE24_PLAN_CACHE=0: no file). A
 * new context reads the choice back, validates it once on random operands and uses it: no new tuning.
 * A corrupt or stale file costs a tuning run, never a wrong result. */
typedef enum s24_plan_form {
    S24_PLAN_ROW_C = 0,        /* c [m, n] row-major (c_transposed: then transposed by a kernel)      */
    S24_PLAN_COL_C = 1,        /* c_transposed only: cuSPARSELt writes a column-major C (tuned only when
                                  SPARSE24_SPMM_FORMS names col_c: it faulted once on an H100)      */
    S24_PLAN_STRUCTURED_B = 2  /* c_transposed only: c^T = op(b)^T a^T with a as cuSPARSELt's B (tuned
                                  only when SPARSE24_SPMM_FORMS names structured_b: a tuning candidate
                                  faulted on an H200 with cuSPARSELt 0.8.0)                          */
} s24_plan_form;

typedef struct s24_plan_candidate {
    int32_t form;            /* s24_plan_form                                                         */
    int32_t algorithm;       /* CUSPARSELT_MATMUL_ALG_CONFIG_ID (-1: the form could not be planned)   */
    int32_t split_k, split_k_mode, split_k_buffers;  /* as the plan reports them                      */
    int32_t valid;           /* 1: agreed with the dense product                                      */
    int32_t searched;        /* 1: the configuration cusparseLtMatmulSearch chose                     */
    float ms;                /* median time of a valid candidate (NaN otherwise)                      */
    float error;             /* max |sparse - dense| / max |dense| (NaN if it did not run)            */
} s24_plan_candidate;

/* Tunes the sparse GEMM of s24_spmm's shape (a [m, k] in the CUSPARSELT layout) again, ignoring earlier
 * choices; keeps and stores the fastest valid candidate. Copies min(capacity, count) candidates, in the
 * order tried; *count gets their number and *chosen the index of the winner. Synchronizes; allocates
 * the operands of the shape for the time of the call. NOT_SUPPORTED on the CPU backend and for shapes
 * that do not run on cuSPARSELt. c_transposed = 1 with only ROW_C allowed (the default) tunes, and shares,
 * the plan of c_transposed = 0 (the same GEMM; the candidates' times leave out the transpose). */
s24_status s24_spmm_tune(s24_context* ctx, s24_dtype dtype, int64_t m, int64_t n, int64_t k, int32_t b_transposed,
                         int32_t c_transposed, s24_plan_candidate* candidates, int64_t capacity, int64_t* count,
                         int64_t* chosen);
/* Drops the context's sparse GEMM plans and deletes the plan cache file (every GPU's choices). */
s24_status s24_plan_cache_clear(s24_context* ctx);

/* Memory in the context's space: cudaMalloc on CUDA, 64-byte aligned host memory on CPU. */
s24_status s24_malloc(s24_context* ctx, size_t bytes, void** out);
s24_status s24_free(s24_context* ctx, void* ptr);

typedef enum s24_copy_kind {
    S24_COPY_HOST_TO_CONTEXT = 0,
    S24_COPY_CONTEXT_TO_HOST = 1,
    S24_COPY_CONTEXT_TO_CONTEXT = 2
} s24_copy_kind;
/* Copies in stream order; host-involving copies return once the host buffer may be reused/read. */
s24_status s24_memcpy(s24_context* ctx, void* dst, const void* src, size_t bytes, s24_copy_kind kind);
/* Sets every byte of [ptr, ptr+bytes) to `value` (used to poison outputs in tests). */
s24_status s24_memset(s24_context* ctx, void* ptr, int32_t value, size_t bytes);

/* Timing in stream order (CUDA events; host clock on CPU), for benchmarks. */
typedef struct s24_event s24_event;
s24_status s24_event_create(s24_context* ctx, s24_event** out);
s24_status s24_event_destroy(s24_event* event);
/* Records the event on the context's current stream. */
s24_status s24_event_record(s24_event* event);
/* Milliseconds between two recorded events of one context; waits for `end`. */
s24_status s24_event_elapsed_ms(const s24_event* start, const s24_event* end, float* ms);

/* ---------------------------------------------------------------------------------------------- */
/* The FFN                                                                                        */

typedef struct s24_ffn_options {
    int32_t sparse_forward;   /* 1 (default): Yhat = S24_rows(relu(H)^2), sparse GEMM. 0: dense relu^2   */
    int32_t sparse_backward;  /* 1 (default): split weight-gradient GEMMs (needs sparse_forward).
                                 0: exact dense weight gradients (of the 2:4-masked forward)            */
    float dense_fraction;     /* share of features computed densely in the split, in [0, 1]; 0.05.
                                 The split takes ceil(dense_fraction * d_ff) features rounded up to a
                                 multiple of 8, at most d_ff (s24_ffn_info.dense_features)            */
    int32_t permute_tokens;   /* 1 (default): a fresh token permutation each step before token-wise 2:4 */
    uint64_t seed;            /* permutation seed; the forward call number s (from 0) uses
                                 s24_token_permutation(seed, s, ...)                                    */
    int32_t algorithm_search; /* 1 (default): tuned sparse GEMM plans (s24_spmm_tune; the first call of a
                                 shape tunes it unless the plan cache has it; s24_ffn_tune does it ahead).
                                 0: cuSPARSELt's default algorithm, which measured 1.0-1.3x against
                                 dense on an H100 where the searched one gave 1.5-1.85x                   */
    int32_t fused_grad_split; /* 0 (default): the sparse backward computes dH and its split in two passes
                                 (s24_masked_grad24, then s24_sparsify24_cols_split of dH). 1: one pass
                                 (s24_grad_split24); same results, but slower today (H200: 0.95 vs
                                 0.71 ms at 16384x16384)                                               */
} s24_ffn_options;

/* Fills the defaults listed above (seed 0x5eed24). */
void s24_ffn_options_default(s24_ffn_options* options);

typedef struct s24_ffn s24_ffn;

/* A plan for one shape and dtype. tokens >= 1, d_model >= 1, d_ff >= 4 and a multiple of 4.
 * Shapes the fast CUDA path cannot take (see s24_ffn_info) run the same function densely. */
s24_status s24_ffn_create(s24_context* ctx, int64_t tokens, int64_t d_model, int64_t d_ff, s24_dtype dtype,
                          const s24_ffn_options* options, s24_ffn** out);
s24_status s24_ffn_destroy(s24_ffn* ffn);
/* Prepares the plan's sparse GEMM plans now (tuned, or read from the plan cache and validated, with
 * algorithm_search = 1), so that the first forward and backward do not pay for it. Synchronizes. */
s24_status s24_ffn_tune(s24_ffn* ffn);

typedef struct s24_ffn_info {
    int64_t tokens, d_model, d_ff;
    int32_t dtype;
    int32_t sparse_forward_path;  /* 1 if the forward runs sparse GEMMs on this backend and shape      */
    int32_t sparse_backward_path; /* 1 if the backward runs sparse GEMMs on this backend and shape     */
    int64_t dense_features;       /* features computed densely in the split backward                  */
    size_t workspace_bytes;       /* scratch the context needs for this plan (shared across plans; kept
                                     between calls by s24_context_set_scratch_retention's rule)         */
    size_t saved_bytes;           /* memory one s24_saved of this plan holds                          */
} s24_ffn_info;
s24_status s24_ffn_get_info(const s24_ffn* ffn, s24_ffn_info* info);
/* Scratch bytes the context needs for this plan (one buffer per context, grown on demand, released by the
 * retention rule: s24_context_set_scratch_retention). */
s24_status s24_ffn_workspace_size(const s24_ffn* ffn, size_t* bytes);

/* What the forward keeps for the backward: the packed Yhat, per-feature non-zero counts, the dense
 * feature set, the step number, statistics. Allocated in the FFN's context. */
typedef struct s24_saved s24_saved;
s24_status s24_saved_create(s24_ffn* ffn, s24_saved** out);
s24_status s24_saved_destroy(s24_saved* saved);

/* Z = relu(X W1^T)^2 [2:4 along f] W2^T. saved may be NULL (inference: nothing kept). With saved,
 * the call consumes one step of the permutation sequence. */
s24_status s24_ffn_forward(s24_ffn* ffn, const void* x, const void* w1, const void* w2, void* z,
                           s24_saved* saved);
/* Gradients for the forward that filled `saved`. x, w1, w2 must be the forward's inputs. Any of dx,
 * dw1, dw2 may be NULL to skip it. dw1/dw2 are overwritten (not accumulated). */
s24_status s24_ffn_backward(s24_ffn* ffn, const s24_saved* saved, const void* x, const void* w1, const void* w2,
                            const void* dz, void* dx, void* dw1, void* dw2);

typedef struct s24_sparsity {
    int64_t tokens, features;
    int64_t step;                 /* which permutation step the forward used (-1: no saved forward)   */
    int64_t activation_nonzeros;  /* non-zeros of relu(H)^2 before 2:4 (over T*f)                    */
    int64_t forward_kept;         /* non-zeros kept by the row-wise 2:4                                */
    int64_t dense_features;       /* features computed densely in the split backward                   */
    int64_t dw2_sparse_nonzeros;  /* non-zeros of Yhat on the sparse features, before token-wise 2:4   */
    int64_t dw2_sparse_kept;      /* ... kept by the token-wise 2:4                                    */
    int64_t dw1_sparse_nonzeros;  /* same for dH                                                       */
    int64_t dw1_sparse_kept;
    int32_t forward_sparse;       /* 1 if the forward applied 2:4                                       */
    int32_t backward_sparse;      /* 1 if a backward has run with the split (token-wise 2:4)            */
    int32_t backward_done;        /* 1 once a backward has used this saved state                        */
} s24_sparsity;
/* Statistics of the forward (and backward, if run) that used `saved`. Synchronizes the stream. */
s24_status s24_saved_sparsity(const s24_saved* saved, s24_sparsity* out);
/* The dense features chosen for this step (the most non-zeros, ties: lower index), ascending index
 * order. Copies min(capacity, count) indices to the host array idx; *count gets the full number.
 * Synchronizes the stream. */
s24_status s24_saved_dense_features(const s24_saved* saved, int32_t* idx, int64_t capacity, int64_t* count);

/* The token permutation of a step (host function, same on every backend): perm[i] is the original
 * token at permuted position i. A bijection on [0, tokens) from a keyed Feistel network. */
s24_status s24_token_permutation(uint64_t seed, int64_t step, int64_t tokens, int32_t* perm);

/* ---------------------------------------------------------------------------------------------- */
/* Building blocks (what the FFN is made of; all pointers in the context's memory space)          */

/* Yhat = S24_rows(relu(h)^2) of h [rows, cols]: in each group of 4 columns keep the 2 largest of
 * relu(h) (ties: lower column), square only those, write packed in `layout`. keep_all = 1 skips the
 * 2:4 selection (plain relu^2, layout must be DENSE).
 * col_counts (int32 [cols], may be NULL): kept non-zeros per column.
 * totals (int64 [2], may be NULL): {non-zeros of relu(h)^2 before 2:4, kept}. Both overwritten. */
s24_status s24_sparsify24_rows(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* h,
                               int32_t keep_all, s24_layout layout, void* packed, int32_t* col_counts,
                               int64_t* totals);

/* packed = 2:4 of a dense [rows, cols] matrix, keeping the 2 largest |values| per group (ties: lower
 * column): lossless on a matrix that is already 2:4. */
s24_status s24_compress24(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* dense,
                          s24_layout layout, void* packed);
/* dense [rows, cols] = the packed matrix with zeros at the dropped positions. */
s24_status s24_decompress24(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* packed,
                            s24_layout layout, void* dense);

/* dH = dYhat * 2 sqrt(Yhat) on Yhat's kept positions, packed in Yhat's layout and metadata.
 * dy: dense [rows, cols]; y_packed, dh_packed: [rows, cols] in `layout`. */
s24_status s24_masked_grad24(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* dy,
                             const void* y_packed, s24_layout layout, void* dh_packed);

/* The k features with the most non-zeros (ties: lower index first). dense_idx (int32 [k]) gets them
 * in ascending index order; is_dense (uint8 [features], may be NULL) gets 1 for chosen features, else 0. */
s24_status s24_select_dense_features(s24_context* ctx, int64_t features, const int32_t* counts, int64_t k,
                                     int32_t* dense_idx, uint8_t* is_dense);

/* The backward's feature-wise split of a row-packed src [tokens, features] (in `in_layout`):
 *  - t_packed [features, tokens] in `out_layout`: the transpose, tokens taken in permuted order
 *    (column i is token perm[i]; perm NULL = identity), 2:4 along tokens keeping the 2 largest |values|
 *    per group of 4 (ties: lower position); rows of dense features are all zero. If tokens % 4 != 0
 *    the last group is zero-padded (only with out_layout DENSE or ROW): a DENSE output has `tokens`
 *    columns, a ROW output tokens rounded up to a multiple of 4 (the padding columns hold zeros).
 *  - dense_cols [tokens, k] (dense, may be NULL when k == 0): column j is feature dense_idx[j],
 *    rows in permuted order.
 *  - totals (int64 [2], may be NULL): {non-zeros on sparse features before the 2:4, kept}. */
s24_status s24_sparsify24_cols_split(s24_context* ctx, s24_dtype dtype, int64_t tokens, int64_t features,
                                     const void* src_packed, s24_layout in_layout, const int32_t* perm,
                                     const uint8_t* is_dense, const int32_t* dense_idx, int64_t k,
                                     s24_layout out_layout, void* t_packed, void* dense_cols, int64_t* totals);

/* The backward's masked gradient and the split of its result in one call: exactly
 * s24_masked_grad24(dy, y_packed, in_layout -> dh_packed) followed by
 * s24_sparsify24_cols_split(dh_packed, in_layout, perm, is_dense, dense_idx, k, out_layout -> t_packed,
 * dense_cols, totals), same arguments and outputs. On CUDA with y_packed in the CUSPARSELT layout (and
 * dy, y_packed, dh_packed 16-byte aligned) one kernel does both: dH is written once and never read back
 * (fewer bytes, but on an H200 slower than the two kernels: docs/kernels.md). */
s24_status s24_grad_split24(s24_context* ctx, s24_dtype dtype, int64_t tokens, int64_t features, const void* dy,
                            const void* y_packed, s24_layout in_layout, void* dh_packed, const int32_t* perm,
                            const uint8_t* is_dense, const int32_t* dense_idx, int64_t k, s24_layout out_layout,
                            void* t_packed, void* dense_cols, int64_t* totals);

/* out [rows, cols] = in[perm[i], :] for each row i (perm NULL: plain copy). */
s24_status s24_gather_rows(s24_context* ctx, s24_dtype dtype, int64_t rows, int64_t cols, const void* in,
                           const int32_t* perm, void* out);

/* c [m, n] = a [m, k] (2:4 along k, packed in `a_layout`) times b, where b is [n, k] (b_transposed = 1,
 * c = a b^T) or [k, n] (b_transposed = 0, c = a b); c_transposed = 1 stores c as [n, m] (c^T). On CUDA a CUSPARSELT-layout a runs on cuSPARSELt
 * (plan cached per shape; where the context's layout check failed, direct_layout = 0, a is first
 * re-packed by cusparseLtSpMMACompress); other layouts are decompressed and multiplied densely.
 * fp32 accumulation. */
s24_status s24_spmm(s24_context* ctx, s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_packed,
                    s24_layout a_layout, const void* b, int32_t b_transposed, int32_t c_transposed, void* c);

/* c [m, n] = op(a) op(b) with dense row-major a and b: a is [m, k] (a_transposed = 0) or [k, m] (1);
 * b is [k, n] (b_transposed = 0) or [n, k] (1). cuBLASLt on CUDA. fp32 accumulation. */
s24_status s24_gemm(s24_context* ctx, s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a,
                    int32_t a_transposed, const void* b, int32_t b_transposed, void* c);

#ifdef __cplusplus
}
#endif

#endif /* SPARSE24_H */
