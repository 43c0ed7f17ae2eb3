// The CPU reference backend: every building block of sparse24.h on host memory, written to be
// obviously right rather than fast. Values are read exactly as floats, arithmetic is fp32 (GEMMs
// accumulate each output in k order), and results are rounded once to the dtype when stored. Pure data
// movement (copies, gathers, packing) keeps the exact bit patterns. Loops over rows run on a few
// threads; every output element is computed by one thread, so results do not depend on the thread count.
#include "backend.h"
#include "cpu/packed.h"
#include "cpu/parallel.h"
#include "shared.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace s24 {
namespace {

using cpu::load;
using cpu::load_raw;
using cpu::PackedView;
using cpu::PackedWriter;
using cpu::parallel_for;
using cpu::store_raw;

constexpr size_t kAlignment = 64;

[[noreturn]] void fail_out_of_memory(size_t bytes, const char* what) {
    fail(S24_ERROR_OUT_OF_MEMORY, std::string("CPU backend: cannot allocate ") + std::to_string(bytes) +
                                      " bytes of host memory (" + what + ")");
}

// A temporary host array; failure to allocate is an s24::Error, never std::bad_alloc.
template <class T>
std::vector<T> make_buffer(int64_t count) {
    try {
        return std::vector<T>((size_t)count);
    } catch (const std::bad_alloc&) {
        fail_out_of_memory((size_t)count * sizeof(T), "temporary buffer");
    } catch (const std::length_error&) {
        fail_out_of_memory((size_t)count * sizeof(T), "temporary buffer");
    }
}

void* aligned_allocate(size_t bytes, const char* what) {
    const size_t rounded = std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    if (rounded < bytes) fail_out_of_memory(bytes, what);  // overflow
    void* p = std::aligned_alloc(kAlignment, rounded);
    if (!p) fail_out_of_memory(bytes, what);
    return p;
}

// The score of the forward's selection: relu(h); relu(NaN) is NaN (it propagates, and select24 keeps it).
inline float relu_score(float x) { return x > 0.f || x != x ? x : 0.f; }

// relu(x)^2: squared in fp32, rounded once to the dtype (raw bits).
inline uint32_t relu_squared(float x, s24_dtype dtype) {
    const float r = relu_score(x);
    return encode(r * r, dtype);
}

// Counts of non-zero values, per column and in total, gathered per thread range and merged under a lock.
struct NonzeroTotals {
    std::mutex mutex;
    int64_t before = 0;  // non-zeros before the 2:4 selection
    int64_t kept = 0;    // non-zeros the selection kept

    void add(int64_t b, int64_t k) {
        std::lock_guard<std::mutex> lock(mutex);
        before += b;
        kept += k;
    }
    void write(int64_t* totals) const {
        if (!totals) return;
        totals[0] = before;
        totals[1] = kept;
    }
};

// The FFN's scratch: host memory kept between calls and grown on demand (retention.h).
class HostScratch final : public RetainedBuffer {
public:
    ~HostScratch() override { std::free(ptr_); }
    void* get(size_t bytes) {
        asked(bytes);
        if (bytes > bytes_ || !ptr_) {
            free_now();
            ptr_ = aligned_allocate(bytes, "scratch");
            bytes_ = bytes;
        }
        return ptr_;
    }
    size_t held() const override { return bytes_; }
    void free_now() override {
        std::free(ptr_);
        ptr_ = nullptr;
        bytes_ = 0;
    }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

// An event of the CPU backend: the host clock when it was last recorded (work is synchronous).
struct HostEvent {
    std::chrono::steady_clock::time_point time;
};

class CpuBackend final : public Backend {
public:
    CpuBackend() : threads_(cpu::default_threads()) { retention_.add(&scratch_, true); }

    // --- context ---------------------------------------------------------------------------------

    void info(s24_context_info* info) const override {
        std::memset(info, 0, sizeof *info);
        info->backend = S24_BACKEND_CPU;
        info->device = -1;
        info->cpu_threads = threads_;
        std::strncpy(info->device_name, "CPU", sizeof info->device_name - 1);
    }
    void set_stream(void* /*stream*/) override {}  // the front end accepts only nullptr on CPU
    void* stream() const override { return nullptr; }
    void synchronize() override {}

    // --- memory ----------------------------------------------------------------------------------

    void* allocate(size_t bytes) override { return aligned_allocate(bytes, "s24_malloc"); }
    void release(void* ptr) override { std::free(ptr); }
    void copy(void* dst, const void* src, size_t bytes, s24_copy_kind /*kind*/) override {
        if (bytes > 0) std::memmove(dst, src, bytes);
    }
    void fill(void* ptr, int value, size_t bytes) override {
        if (bytes > 0) std::memset(ptr, value, bytes);
    }
    void* scratch(size_t bytes) override { return scratch_.get(bytes); }

    // --- events: host clock readings -----------------------------------------------------------------

    void* event_create() override {
        auto* event = new (std::nothrow) HostEvent{std::chrono::steady_clock::now()};
        if (!event) fail_out_of_memory(sizeof(HostEvent), "event");
        return event;
    }
    void event_destroy(void* event) override { delete static_cast<HostEvent*>(event); }
    void event_record(void* event) override { static_cast<HostEvent*>(event)->time = std::chrono::steady_clock::now(); }
    float event_elapsed_ms(void* start, void* end) override {
        const auto elapsed = static_cast<HostEvent*>(end)->time - static_cast<HostEvent*>(start)->time;
        return std::chrono::duration<float, std::milli>(elapsed).count();
    }

    // --- what the FFN uses -------------------------------------------------------------------------

    s24_layout ffn_layout(s24_dtype, int64_t, int64_t) const override { return S24_LAYOUT_ROW; }
    bool sparse_gemm_available(s24_dtype, int64_t, int64_t, int64_t, s24_layout) const override { return false; }

    // --- building blocks ---------------------------------------------------------------------------

    void sparsify24_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* h, bool keep_all,
                         s24_layout layout, void* packed, int32_t* col_counts, int64_t* totals) override {
        if (keep_all) layout = S24_LAYOUT_DENSE;
        PackedWriter out(dtype, layout, rows, cols, packed);
        out.clear_meta();
        if (col_counts) std::fill(col_counts, col_counts + cols, 0);
        NonzeroTotals counted;
        std::mutex counts_mutex;
        parallel_for(rows, meta_row_block(layout), 8.0 * (double)cols, threads_, [&](int64_t begin, int64_t end) {
            std::vector<int32_t> counts = make_buffer<int32_t>(col_counts ? cols : 0);
            int64_t before = 0, kept = 0;
            auto count_kept = [&](int64_t c) {
                ++kept;
                if (col_counts) ++counts[(size_t)c];
            };
            for (int64_t r = begin; r < end; ++r) {
                if (keep_all) {
                    for (int64_t c = 0; c < cols; ++c) {
                        const uint32_t square = relu_squared(load(h, dtype, r * cols + c), dtype);
                        store_raw(packed, dtype, r * cols + c, square);
                        if (decode(square, dtype) != 0.f) {
                            ++before;
                            count_kept(c);
                        }
                    }
                    continue;
                }
                for (int64_t g = 0; g < cols / 4; ++g) {
                    float score[4];
                    uint32_t square[4];
                    bool nonzero[4];
                    for (int j = 0; j < 4; ++j) {
                        const float x = load(h, dtype, r * cols + 4 * g + j);
                        score[j] = relu_score(x);
                        square[j] = relu_squared(x, dtype);
                        nonzero[j] = decode(square[j], dtype) != 0.f;
                        before += nonzero[j];
                    }
                    // Select on relu(h) (relu^2 is monotone on it), keep the squares.
                    const unsigned nib = select24(score[0], score[1], score[2], score[3]);
                    const int first = cpu::nibble_first(nib), second = cpu::nibble_second(nib);
                    out.write_group(r, g, nib, square[first], square[second]);
                    if (nonzero[first]) count_kept(4 * g + first);
                    if (nonzero[second]) count_kept(4 * g + second);
                }
            }
            counted.add(before, kept);
            if (col_counts) {
                std::lock_guard<std::mutex> lock(counts_mutex);
                for (int64_t c = 0; c < cols; ++c) col_counts[c] += counts[(size_t)c];
            }
        });
        counted.write(totals);
    }

    void compress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dense, s24_layout layout,
                    void* packed) override {
        PackedWriter out(dtype, layout, rows, cols, packed);
        out.clear_meta();
        parallel_for(rows, meta_row_block(layout), 8.0 * (double)cols, threads_, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                for (int64_t g = 0; g < cols / 4; ++g) {
                    uint32_t raw[4];
                    float score[4];
                    for (int j = 0; j < 4; ++j) {
                        raw[j] = load_raw(dense, dtype, r * cols + 4 * g + j);
                        score[j] = std::fabs(decode(raw[j], dtype));
                    }
                    const unsigned nib = select24(score[0], score[1], score[2], score[3]);
                    out.write_group(r, g, nib, raw[cpu::nibble_first(nib)], raw[cpu::nibble_second(nib)]);
                }
            }
        });
    }

    void decompress24(s24_dtype dtype, int64_t rows, int64_t cols, const void* packed, s24_layout layout,
                      void* dense) override {
        const PackedView in(dtype, layout, rows, cols, packed);
        parallel_for(rows, 1, 4.0 * (double)cols, threads_, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r)
                for (int64_t c = 0; c < cols; ++c) store_raw(dense, dtype, r * cols + c, in.raw(r, c));
        });
    }

    // dh = dy * 2 * sqrt(y), evaluated left to right in fp32 and rounded once, on y's stored positions
    // (every position for DENSE; both slots of each group, padding zeros included, for packed layouts).
    void masked_grad24(s24_dtype dtype, int64_t rows, int64_t cols, const void* dy, const void* y_packed,
                       s24_layout layout, void* dh_packed) override {
        auto grad = [&](int64_t dy_index, uint32_t y_raw) {
            return encode(load(dy, dtype, dy_index) * 2.f * std::sqrt(decode(y_raw, dtype)), dtype);
        };
        if (layout == S24_LAYOUT_DENSE) {
            parallel_for(rows, 1, 8.0 * (double)cols, threads_, [&](int64_t begin, int64_t end) {
                for (int64_t i = begin * cols; i < end * cols; ++i)
                    store_raw(dh_packed, dtype, i, grad(i, load_raw(y_packed, dtype, i)));
            });
            return;
        }
        const PackedView y(dtype, layout, rows, cols, y_packed);
        const int64_t values_bytes = y.values_bytes();
        const size_t meta = packed_meta_bytes(layout, rows, cols);
        if (meta > 0) std::memcpy(static_cast<uint8_t*>(dh_packed) + values_bytes, y.meta(), meta);
        parallel_for(rows, 1, 8.0 * (double)cols, threads_, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                for (int64_t g = 0; g < cols / 4; ++g) {
                    const unsigned nib = y.nibble(r, g);
                    const int64_t slot = r * (cols / 2) + 2 * g;
                    const int pos[2] = {cpu::nibble_first(nib), cpu::nibble_second(nib)};
                    for (int s = 0; s < 2; ++s)
                        store_raw(dh_packed, dtype, slot + s,
                                  grad(r * cols + 4 * g + pos[s], load_raw(y_packed, dtype, slot + s)));
                }
            }
        });
    }

    void select_dense_features(int64_t features, const int32_t* counts, int64_t k, int32_t* dense_idx,
                               uint8_t* is_dense) override {
        std::vector<int32_t> order = make_buffer<int32_t>(features);
        for (int64_t f = 0; f < features; ++f) order[(size_t)f] = (int32_t)f;
        // Most non-zeros first, ties: lower index first (a strict total order, so the result is unique).
        std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
            return counts[a] != counts[b] ? counts[a] > counts[b] : a < b;
        });
        std::sort(order.begin(), order.begin() + k);
        for (int64_t j = 0; j < k; ++j) dense_idx[j] = order[(size_t)j];
        if (is_dense) {
            std::fill(is_dense, is_dense + features, (uint8_t)0);
            for (int64_t j = 0; j < k; ++j) is_dense[dense_idx[j]] = 1;
        }
    }

    // t [features, tokens'] = 2:4 along tokens of src^T with tokens permuted; tokens' = tokens rounded up
    // to a multiple of 4 for ROW (the padding columns are zeros), tokens for DENSE and CUSPARSELT.
    void sparsify24_cols_split(s24_dtype dtype, int64_t tokens, int64_t features, const void* src_packed,
                               s24_layout in_layout, const int32_t* perm, const uint8_t* is_dense,
                               const int32_t* dense_idx, int64_t k, s24_layout out_layout, void* t_packed,
                               void* dense_cols, int64_t* totals) override {
        const PackedView src(dtype, in_layout, tokens, features, src_packed);
        auto token = [&](int64_t i) -> int64_t { return perm ? perm[i] : i; };

        const int64_t out_cols = split_out_cols(out_layout, tokens);
        const int64_t groups = (tokens + 3) / 4;
        PackedWriter out(dtype, out_layout, features, out_cols, t_packed);
        out.clear_meta();
        NonzeroTotals counted;
        parallel_for(features, meta_row_block(out_layout), 16.0 * (double)tokens, threads_,
                     [&](int64_t begin, int64_t end) {
            int64_t before = 0, kept = 0;
            for (int64_t f = begin; f < end; ++f) {
                const bool dense_feature = is_dense && is_dense[f];
                for (int64_t g = 0; g < groups; ++g) {
                    uint32_t raw[4];
                    float score[4];
                    bool nonzero[4];
                    for (int j = 0; j < 4; ++j) {
                        const int64_t i = 4 * g + j;
                        raw[j] = (!dense_feature && i < tokens) ? src.raw(token(i), f) : 0;  // zero padding
                        const float v = decode(raw[j], dtype);
                        score[j] = std::fabs(v);
                        nonzero[j] = v != 0.f;
                        before += nonzero[j];
                    }
                    const unsigned nib = select24(score[0], score[1], score[2], score[3]);
                    const int first = cpu::nibble_first(nib), second = cpu::nibble_second(nib);
                    out.write_group(f, g, nib, raw[first], raw[second]);
                    kept += nonzero[first] + nonzero[second];
                }
            }
            counted.add(before, kept);
        });
        counted.write(totals);

        if (dense_cols && k > 0) {
            parallel_for(tokens, 1, 4.0 * (double)k, threads_, [&](int64_t begin, int64_t end) {
                for (int64_t i = begin; i < end; ++i)
                    for (int64_t j = 0; j < k; ++j)
                        store_raw(dense_cols, dtype, i * k + j, src.raw(token(i), dense_idx[j]));
            });
        }
    }

    void gather_rows(s24_dtype dtype, int64_t rows, int64_t cols, const void* in, const int32_t* perm,
                     void* out) override {
        const size_t row_bytes = (size_t)cols * (size_t)dtype_size(dtype);
        const uint8_t* src = static_cast<const uint8_t*>(in);
        uint8_t* dst = static_cast<uint8_t*>(out);
        for (int64_t i = 0; i < rows; ++i) {
            const int64_t from = perm ? perm[i] : i;
            if (row_bytes > 0) std::memcpy(dst + (size_t)i * row_bytes, src + (size_t)from * row_bytes, row_bytes);
        }
    }

    void spmm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a_packed, s24_layout a_layout,
              const void* b, bool b_transposed, void* c, bool c_transposed, SpmmAlgorithm) override {
        const PackedView a(dtype, a_layout, m, k, a_packed);
        auto load_a_row = [&](int64_t i, float* row) {
            for (int64_t p = 0; p < k; ++p) row[p] = a.value(i, p);
        };
        multiply(dtype, m, n, k, load_a_row, b, b_transposed, c, c_transposed);
    }

    void gemm(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const void* a, bool a_transposed, const void* b,
              bool b_transposed, void* c) override {
        auto load_a_row = [&](int64_t i, float* row) {
            for (int64_t p = 0; p < k; ++p) row[p] = load(a, dtype, a_transposed ? p * m + i : i * k + p);
        };
        multiply(dtype, m, n, k, load_a_row, b, b_transposed, c, false);
    }

    // --- FFN helpers ---------------------------------------------------------------------------------

    void token_permutation(uint64_t seed, int64_t step, int64_t tokens, int32_t* perm) override {
        if (tokens <= 0) return;
        const Permutation p = make_permutation(seed, step, tokens);
        for (int64_t i = 0; i < tokens; ++i) perm[i] = (int32_t)permute_index(p, (uint32_t)i);
    }

    void scatter_cols(s24_dtype dtype, int64_t rows, int64_t k, const void* src, const int32_t* idx,
                      int64_t dst_cols, void* dst) override {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < k; ++j)
                store_raw(dst, dtype, r * dst_cols + idx[j], load_raw(src, dtype, r * k + j));
    }

    void scatter_rows(s24_dtype dtype, int64_t k, int64_t cols, const void* src, const int32_t* idx,
                      void* dst) override {
        const size_t row_bytes = (size_t)cols * (size_t)dtype_size(dtype);
        if (row_bytes == 0) return;
        for (int64_t j = 0; j < k; ++j)
            std::memcpy(static_cast<uint8_t*>(dst) + (size_t)idx[j] * row_bytes,
                        static_cast<const uint8_t*>(src) + (size_t)j * row_bytes, row_bytes);
    }

private:
    // c = A op(b) where A [m, k] is given row by row by load_a_row; b is [k, n] or, transposed, [n, k].
    // Each c(i, j) = sum over p = 0..k-1 in order of A(i, p) * B(p, j) in fp32, rounded once when stored
    // at (i, j), or at (j, i) of an [n, m] matrix when c_transposed.
    template <class LoadARow>
    void multiply(s24_dtype dtype, int64_t m, int64_t n, int64_t k, const LoadARow& load_a_row, const void* b,
                  bool b_transposed, void* c, bool c_transposed) {
        std::vector<float> bf = make_buffer<float>(k * n);  // B as float [k, n]
        parallel_for(k, 1, 4.0 * (double)n, threads_, [&](int64_t begin, int64_t end) {
            for (int64_t p = begin; p < end; ++p)
                for (int64_t j = 0; j < n; ++j)
                    bf[(size_t)(p * n + j)] = load(b, dtype, b_transposed ? j * k + p : p * n + j);
        });
        parallel_for(m, 1, 2.0 * (double)n * (double)k, threads_, [&](int64_t begin, int64_t end) {
            std::vector<float> a_row = make_buffer<float>(k);
            std::vector<float> acc = make_buffer<float>(n);
            for (int64_t i = begin; i < end; ++i) {
                load_a_row(i, a_row.data());
                std::fill(acc.begin(), acc.end(), 0.f);
                for (int64_t p = 0; p < k; ++p) {
                    const float ap = a_row[(size_t)p];
                    const float* b_row = bf.data() + p * n;
                    for (int64_t j = 0; j < n; ++j) acc[(size_t)j] += ap * b_row[j];
                }
                for (int64_t j = 0; j < n; ++j)
                    store_raw(c, dtype, c_transposed ? j * m + i : i * n + j, encode(acc[(size_t)j], dtype));
            }
        });
    }

    int threads_;
    HostScratch scratch_;
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend() {
    try {
        return std::make_unique<CpuBackend>();
    } catch (const std::bad_alloc&) {
        fail_out_of_memory(sizeof(CpuBackend), "CPU backend");
    }
}

}  // namespace s24
