// Tuning and validation of cuSPARSELt plans (see plan_tuning.h).
#include "cuda/plan_tuning.h"

#include "cuda/kernels.h"
#include "shared.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

namespace s24 {
namespace cuda {
namespace {

// ---- random operands and comparisons on the device -----------------------------------------------------

// Values here are multiples of 1/8 in [-2, 2]: exact in bf16 and fp16, so truncation encodes bf16.
__device__ uint16_t encode16(float v, int dtype) {
    return dtype == S24_BF16 ? (uint16_t)(__float_as_uint(v) >> 16) : __half_as_ushort(__float2half_rn(v));
}

__device__ float decode16(uint16_t bits, int dtype) {
    return dtype == S24_BF16 ? __uint_as_float((uint32_t)bits << 16) : __half2float(__ushort_as_half(bits));
}

// n values (n % 4 == 0), 2:4 along the flat order: in each group two distinct positions (uniform over
// the 6 pairs) hold non-zero multiples of 1/8 in [-2, 2], the other two zero.
__global__ void random_24_kernel(uint16_t* out, int64_t n, int dtype, uint64_t seed) {
    const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
    for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < n / 4; g += (int64_t)gridDim.x * blockDim.x) {
        const uint64_t r = splitmix64(seed ^ splitmix64((uint64_t)g));
        const int* pair = pairs[r % 6];
        uint16_t v[4];
        for (int i = 0; i < 4; ++i) v[i] = encode16(0.0f, dtype);
        for (int i = 0; i < 2; ++i) {
            const uint64_t bits = r >> (8 + 8 * i);
            const float x = (float)((bits & 15) + 1) / 8.0f;
            v[pair[i]] = encode16((bits & 16) ? -x : x, dtype);
        }
        for (int i = 0; i < 4; ++i) out[4 * g + i] = v[i];
    }
}

// n values, multiples of 1/8 in [-1, 1].
__global__ void random_dense_kernel(uint16_t* out, int64_t n, int dtype, uint64_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = encode16((float)((int)(splitmix64(seed ^ splitmix64((uint64_t)i)) % 17) - 8) / 8.0f, dtype);
}

// result[0] = bits of max |got - want|, result[1] = bits of max |want|, result[2] = 1 if got has a NaN or
// an infinity. want is [m, n] row-major; got the same, or [n, m] row-major (transposed).
__global__ void compare_kernel(const uint16_t* got, const uint16_t* want, int64_t m, int64_t n, bool transposed,
                               int dtype, unsigned* result) {
    float max_diff = 0.0f, max_ref = 0.0f;
    unsigned bad = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < m * n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / n, col = i % n;
        const float w = decode16(want[i], dtype);
        const float g = decode16(transposed ? got[col * m + row] : got[i], dtype);
        if (!isfinite(g)) bad = 1;
        else max_diff = fmaxf(max_diff, fabsf(g - w));
        max_ref = fmaxf(max_ref, fabsf(w));
    }
    for (int offset = 16; offset > 0; offset /= 2) {
        max_diff = fmaxf(max_diff, __shfl_xor_sync(0xffffffffu, max_diff, offset));
        max_ref = fmaxf(max_ref, __shfl_xor_sync(0xffffffffu, max_ref, offset));
        bad |= __shfl_xor_sync(0xffffffffu, bad, offset);
    }
    if (threadIdx.x % 32 == 0) {
        atomicMax(&result[0], __float_as_uint(max_diff));  // non-negative floats order like their bits
        atomicMax(&result[1], __float_as_uint(max_ref));
        if (bad) atomicOr(&result[2], 1u);
    }
}

// result[3] += the number of 32-bit words where a and b differ (bytes % 4 == 0).
__global__ void count_differences_kernel(const uint32_t* a, const uint32_t* b, int64_t words, unsigned* result) {
    unsigned count = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < words; i += (int64_t)gridDim.x * blockDim.x)
        count += a[i] != b[i];
    if (count) atomicAdd(&result[3], count);
}

constexpr int kBlocks = 1024, kThreads = 256;

void check_kernel(const char* what) { check_cuda(cudaGetLastError(), what); }

// ---- the operands of one request -------------------------------------------------------------------------

struct Operands {
    const SpmmRequest request;
    DeviceBuffer a_dense{"plan tuning: a"}, a_ours{"plan tuning: a packed by sparse24"},
        a_theirs{"plan tuning: a compressed by cuSPARSELt"}, compress_buffer{"plan tuning: compression buffer"},
        b{"plan tuning: b"}, ref{"plan tuning: dense product"}, out{"plan tuning: sparse product"},
        transposed{"plan tuning: transposed product"}, result{"plan tuning: comparison"};
    size_t es = 2;

    Operands(TuneContext& ctx, const SpmmRequest& r, uint64_t seed) : request(r) {
        const cudaStream_t s = ctx.stream;
        const s24_dtype dtype = (s24_dtype)r.dtype;
        const int64_t a_elems = r.m * r.k, b_elems = r.n * r.k, c_elems = r.m * r.n;
        random_24_kernel<<<kBlocks, kThreads, 0, s>>>((uint16_t*)a_dense.get(a_elems * es, s), a_elems, r.dtype,
                                                      seed ^ 0xa11ce);
        check_kernel("plan tuning: random_24_kernel");
        random_dense_kernel<<<kBlocks, kThreads, 0, s>>>((uint16_t*)b.get(b_elems * es, s), b_elems, r.dtype,
                                                         seed ^ 0xb0b);
        check_kernel("plan tuning: random_dense_kernel");
        if (ctx.direct_layout)
            launch_compress24(dtype, r.m, r.k, a_dense.get(0, s), S24_LAYOUT_CUSPARSELT,
                              a_ours.get(packed_bytes(), s), s);
        ctx.blas.gemm(dtype, r.m, r.n, r.k, a_dense.get(0, s), false, b.get(0, s), r.b_transposed,
                      ref.get(c_elems * es, s), ctx.blas_workspace, s);
        out.get(c_elems * es, s);
        result.get(4 * sizeof(unsigned), s);
    }

    size_t packed_bytes() const { return (size_t)request.m * (size_t)(request.k / 2) * es + (size_t)request.m * request.k / 8; }

    // Compresses a for the plan (cuSPARSELt) and sets plan.direct: our packing is byte-identical to it.
    // Returns the operand the plan's matmul should read.
    const void* prepare(TuneContext& ctx, SparseLt::Plan& plan) {
        const cudaStream_t s = ctx.stream;
        void* theirs = a_theirs.get(plan.compressed_bytes, s);
        ctx.lt.compress(plan, a_dense.get(0, s), theirs, compress_buffer.get(plan.compress_buffer_bytes, s), s);
        plan.direct = false;
        if (ctx.direct_layout && plan.compressed_bytes == packed_bytes()) {
            check_cuda(cudaMemsetAsync(result.get(0, s), 0, 4 * sizeof(unsigned), s), "cudaMemsetAsync");
            count_differences_kernel<<<kBlocks, kThreads, 0, s>>>((const uint32_t*)a_ours.get(0, s),
                                                                  (const uint32_t*)theirs,
                                                                  (int64_t)(packed_bytes() / 4),
                                                                  (unsigned*)result.get(0, s));
            check_kernel("plan tuning: count_differences_kernel");
            unsigned r[4];
            check_cuda(cudaMemcpyAsync(r, result.get(0, s), sizeof r, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
            check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize");
            plan.direct = r[3] == 0;
        }
        return plan.direct ? a_ours.get(0, s) : theirs;
    }

    // c into `out` (and, for a ROW_C plan of a c_transposed request, its transpose into `transposed`), with
    // the work spmm adds around the matmul: where the plan cannot read our packing, the re-pack (decompress
    // our packing, compress with cuSPARSELt; a is exactly 2:4, so this rewrites the same values).
    void run(TuneContext& ctx, const SparseLt::Plan& plan, const void* a) {
        const cudaStream_t s = ctx.stream;
        if (!plan.direct && ctx.direct_layout) {
            launch_decompress24((s24_dtype)request.dtype, request.m, request.k, a_ours.get(0, s), S24_LAYOUT_CUSPARSELT,
                                a_dense.get(0, s), s);
            ctx.lt.compress(plan, a_dense.get(0, s), a_theirs.get(0, s), compress_buffer.get(0, s), s);
        }
        ctx.lt.matmul(plan, a, b.get(0, s), out.get(0, s), ctx.lt_workspace.get(plan.workspace_bytes, s), s);
        if (request.c_transposed && plan.key.form == SpmmForm::ROW_C)
            launch_transpose((s24_dtype)request.dtype, request.m, request.n, out.get(0, s),
                             transposed.get(request.m * request.n * es, s), s);
    }

    // max |out - ref| / max |ref| (infinity if out has a NaN or an infinity); out poisoned first.
    double error(TuneContext& ctx, const SparseLt::Plan& plan, const void* a) {
        const cudaStream_t s = ctx.stream;
        check_cuda(cudaMemsetAsync(out.get(0, s), 0xff, request.m * request.n * es, s), "cudaMemsetAsync");
        run(ctx, plan, a);
        check_cuda(cudaMemsetAsync(result.get(0, s), 0, 4 * sizeof(unsigned), s), "cudaMemsetAsync");
        compare_kernel<<<kBlocks, kThreads, 0, s>>>((const uint16_t*)out.get(0, s), (const uint16_t*)ref.get(0, s),
                                                    request.m, request.n, plan.key.form != SpmmForm::ROW_C,
                                                    request.dtype, (unsigned*)result.get(0, s));
        check_kernel("plan tuning: compare_kernel");
        unsigned r[4];
        check_cuda(cudaMemcpyAsync(r, result.get(0, s), sizeof r, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
        check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize");
        float max_diff, max_ref;
        std::memcpy(&max_diff, &r[0], 4);
        std::memcpy(&max_ref, &r[1], 4);
        if (r[2] != 0) return std::numeric_limits<double>::infinity();
        return (double)max_diff / std::max((double)max_ref, 1e-30);
    }

    // Median milliseconds of `reps` runs after 2 warm-up runs; a candidate whose second warm-up run already
    // takes longer than `cutoff` ms is no contender: that run's time is returned.
    float time(TuneContext& ctx, const SparseLt::Plan& plan, const void* a, int reps, float cutoff) {
        const cudaStream_t s = ctx.stream;
        cudaEvent_t start = nullptr, end = nullptr;
        check_cuda(cudaEventCreate(&start), "cudaEventCreate");
        struct Guard {
            cudaEvent_t& a;
            cudaEvent_t& b;
            ~Guard() {
                if (a) (void)cudaEventDestroy(a);
                if (b) (void)cudaEventDestroy(b);
            }
        } guard{start, end};
        check_cuda(cudaEventCreate(&end), "cudaEventCreate");
        run(ctx, plan, a);
        float warm = 0.0f;
        check_cuda(cudaEventRecord(start, s), "cudaEventRecord");
        run(ctx, plan, a);
        check_cuda(cudaEventRecord(end, s), "cudaEventRecord");
        check_cuda(cudaEventSynchronize(end), "cudaEventSynchronize");
        check_cuda(cudaEventElapsedTime(&warm, start, end), "cudaEventElapsedTime");
        if (warm > cutoff) return warm;
        std::vector<float> ms(reps);
        for (int i = 0; i < reps; ++i) {
            check_cuda(cudaEventRecord(start, s), "cudaEventRecord");
            run(ctx, plan, a);
            check_cuda(cudaEventRecord(end, s), "cudaEventRecord");
            check_cuda(cudaEventSynchronize(end), "cudaEventSynchronize");
            check_cuda(cudaEventElapsedTime(&ms[i], start, end), "cudaEventElapsedTime");
        }
        std::sort(ms.begin(), ms.end());
        return reps % 2 ? ms[reps / 2] : 0.5f * (ms[reps / 2 - 1] + ms[reps / 2]);
    }
};

uint64_t seed_of(const SpmmRequest& r) {
    return splitmix64((uint64_t)r.m * 1000003u ^ (uint64_t)r.n * 10007u ^ (uint64_t)r.k ^ (uint64_t)r.dtype << 40);
}

}  // namespace

std::unique_ptr<SparseLt::Plan> tune_plan(TuneContext& ctx, const SpmmRequest& request,
                                          const std::vector<SpmmForm>& forms, int reps, SpmmTuning* report) {
    Operands ops(ctx, request, seed_of(request));
    SpmmTuning local;
    SpmmTuning& out = report ? *report : local;
    out.candidates.clear();
    out.chosen = -1;
    SpmmForm best_form = SpmmForm::ROW_C;
    AlgConfig best_config;
    float best_ms = std::numeric_limits<float>::infinity();

    for (SpmmForm form : forms) {
        const SpmmKey key{request.dtype, request.m, request.n, request.k, request.b_transposed, form};
        std::vector<AlgConfig> configs;
        AlgConfig searched_config;  // id -1: the search failed
        const void* a = nullptr;
        try {
            std::unique_ptr<SparseLt::Plan> base = ctx.lt.create_plan(key);
            a = ops.prepare(ctx, *base);
            const int max_id = ctx.lt.max_alg_id(*base);
            for (int id = 0; id <= max_id; ++id) {
                AlgConfig c;
                c.id = id;
                configs.push_back(c);
            }
            // cusparseLtMatmulSearch's choice (it also tries split-K), where it differs from the plain ids.
            try {
                std::unique_ptr<SparseLt::Plan> searched = ctx.lt.create_plan(key);
                ctx.lt.search(*searched, a, ops.b.get(0, ctx.stream), ops.out.get(0, ctx.stream),
                              ctx.lt_workspace.get(searched->workspace_bytes, ctx.stream), ctx.stream);
                AlgConfig c = searched->config;
                if (c.split_k <= 1) c = AlgConfig{c.id, 0, 0, 0};
                if (std::find(configs.begin(), configs.end(), c) == configs.end()) configs.push_back(c);
                searched_config = c;
            } catch (const Error&) {
                (void)cudaGetLastError();
            }
        } catch (const Error&) {
            (void)cudaGetLastError();
            SpmmCandidate failed{(int)form, -1, 0, 0, 0, false, false, NAN, NAN};
            out.candidates.push_back(failed);  // the form itself is not available for this shape
            continue;
        }
        // Everything below each candidate's own plan shares the form's compressed operand `a`.
        for (const AlgConfig& config : configs) {
            SpmmCandidate c{(int)form, config.id, config.split_k, 0, 0, false, config == searched_config, NAN, NAN};
            try {
                std::unique_ptr<SparseLt::Plan> plan = ctx.lt.create_plan(key, config);
                plan->direct = a == ops.a_ours.get(0, ctx.stream);
                c.split_k = plan->config.split_k;
                c.split_k_mode = plan->config.split_k_mode;
                c.split_k_buffers = plan->config.split_k_buffers;
                c.error = ops.error(ctx, *plan, a);
                c.valid = c.error <= kPlanTolerance;
                if (c.valid) c.ms = ops.time(ctx, *plan, a, reps, 2.0f * best_ms);  // 2x the best: not timed further
            } catch (const Error&) {
                (void)cudaGetLastError();
                c.valid = false;
            }
            // A sticky fault makes every later call fail: report it now instead of a wrong "no valid plan".
            check_cuda(cudaStreamSynchronize(ctx.stream), "cudaStreamSynchronize (after a tuning candidate)");
            if (c.valid && c.ms < best_ms) {
                best_ms = c.ms;
                best_form = form;
                best_config = config;
                out.chosen = (int64_t)out.candidates.size();
            }
            out.candidates.push_back(c);
        }
    }
    if (out.chosen < 0)
        fail(S24_ERROR_VALIDATION_FAILED, "spmm tuning: no cuSPARSELt algorithm agreed with cuBLASLt's dense product" +
                                              request.describe());
    const SpmmKey key{request.dtype, request.m, request.n, request.k, request.b_transposed, best_form};
    std::unique_ptr<SparseLt::Plan> plan = ctx.lt.create_plan(key, best_config);
    ops.prepare(ctx, *plan);
    return plan;
}

double validate_plan(TuneContext& ctx, SparseLt::Plan& plan) {
    const SpmmKey& key = plan.key;
    const SpmmRequest request{key.dtype, key.m, key.n, key.k, key.b_transposed, key.c_transposed()};
    Operands ops(ctx, request, seed_of(request) ^ 0x7a11da7e);
    const void* a = ops.prepare(ctx, plan);
    return ops.error(ctx, plan, a);
}

}  // namespace cuda
}  // namespace s24
