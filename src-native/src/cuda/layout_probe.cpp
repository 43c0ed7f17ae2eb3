#include "cuda/layout_probe.h"

#include "cuda/cuda_util.h"
#include "cuda/kernels.h"
#include "cuda/random_operands.h"
#include "layout.h"

#include <cstdio>
#include <exception>
#include <vector>

namespace s24 {
namespace cuda {
namespace {

// "" when our compression of one random matrix matches cuSPARSELt's, else the difference.
std::string probe_one(SparseLt& sparse, s24_dtype dtype, int64_t rows, int64_t cols, cudaStream_t stream) {
    const SpmmKey key{(int)dtype, rows, 64, cols, false, SpmmForm::ROW_C};
    std::unique_ptr<SparseLt::Plan> plan = sparse.create_plan(key);
    const size_t expected = packed_bytes(S24_LAYOUT_CUSPARSELT, dtype, rows, cols);
    const std::string where = std::string(dtype_name(dtype)) + " " + std::to_string(rows) + "x" + std::to_string(cols);
    if (plan->compressed_bytes != expected)
        return where + ": cusparseLtSpMMACompressedSize reports " + std::to_string(plan->compressed_bytes) +
               " bytes, the CUSPARSELT layout has " + std::to_string(expected);
    const size_t elements = (size_t)rows * (size_t)cols;
    const std::vector<uint16_t> host = random_24(elements, dtype, 0x24c0ffeeULL + (uint64_t)rows * 131 + (uint64_t)dtype);
    DeviceBuffer dense("layout probe: dense"), theirs("layout probe: cuSPARSELt"), ours("layout probe: kernels"),
        buffer("layout probe: compression buffer");
    void* d_dense = dense.get(elements * 2, stream);
    void* d_theirs = theirs.get(expected, stream);
    void* d_ours = ours.get(expected, stream);
    void* d_buffer = buffer.get(plan->compress_buffer_bytes, stream);
    upload_tiled(d_dense, elements, host, stream);
    check_cuda(cudaMemsetAsync(d_theirs, 0, expected, stream), "cudaMemsetAsync");
    check_cuda(cudaMemsetAsync(d_ours, 0, expected, stream), "cudaMemsetAsync");
    sparse.compress(*plan, d_dense, d_theirs, d_buffer, stream);
    launch_compress24(dtype, rows, cols, d_dense, S24_LAYOUT_CUSPARSELT, d_ours, stream);
    std::vector<uint8_t> a(expected), b(expected);
    check_cuda(cudaMemcpyAsync(a.data(), d_theirs, expected, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    check_cuda(cudaMemcpyAsync(b.data(), d_ours, expected, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    size_t diffs = 0, first = expected;
    for (size_t i = 0; i < expected; ++i)
        if (a[i] != b[i]) {
            if (first == expected) first = i;
            ++diffs;
        }
    if (diffs == 0) return "";
    const size_t values_bytes = packed_values_bytes(S24_LAYOUT_CUSPARSELT, dtype_size(dtype), rows, cols);
    char detail[160];
    std::snprintf(detail, sizeof detail, "byte %zu (%s) is 0x%02x from cuSPARSELt, 0x%02x from launch_compress24",
                  first, first < values_bytes ? "values" : "metadata", (unsigned)a[first], (unsigned)b[first]);
    return where + ": " + std::to_string(diffs) + " of " + std::to_string(expected) + " bytes differ; first: " + detail;
}

}  // namespace

LayoutProbe probe_cusparselt_layout(SparseLt& sparse, cudaStream_t stream) {
    LayoutProbe probe;
    try {
        // Two shapes per dtype: 2x8 and 3x10 blocks of 64 rows x 32 columns, so both strides of the
        // metadata layout are exercised with power-of-two and other multiples.
        const int64_t shapes[2][2] = {{128, 256}, {192, 320}};
        for (s24_dtype dtype : {S24_BF16, S24_FP16})
            for (const auto& shape : shapes) {
                const std::string mismatch = probe_one(sparse, dtype, shape[0], shape[1], stream);
                if (!mismatch.empty()) {
                    probe.report = "CUSPARSELT layout differs from cuSPARSELt's compression (" + mismatch +
                                   "); spmm re-packs with cusparseLtSpMMACompress";
                    return probe;
                }
            }
        probe.direct = true;
        probe.report = "CUSPARSELT layout matches cuSPARSELt's compression (bf16, fp16; 128x256, 192x320)";
        return probe;
    } catch (const Error& e) {
        probe.report = std::string("layout probe failed: ") + e.what() + "; spmm re-packs with cusparseLtSpMMACompress";
    } catch (const std::exception& e) {
        probe.report = std::string("layout probe failed: ") + e.what();
    } catch (...) {
        probe.report = "layout probe failed: unknown exception";
    }
    (void)cudaGetLastError();
    return probe;
}

}  // namespace cuda
}  // namespace s24
