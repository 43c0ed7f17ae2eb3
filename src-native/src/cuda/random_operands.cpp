#include "cuda/random_operands.h"

#include "cuda/cuda_util.h"
#include "half.h"
#include "shared.h"

#include <algorithm>

namespace s24 {
namespace cuda {
namespace {

struct Rng {
    uint64_t counter;
    uint64_t next() { return splitmix64(counter++); }
};

uint16_t encode16(float v, s24_dtype dtype) { return (uint16_t)encode(v, dtype); }

}  // namespace

std::vector<uint16_t> random_24(size_t n, s24_dtype dtype, uint64_t seed) {
    static const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
    std::vector<uint16_t> out(n, encode16(0.0f, dtype));
    Rng rng{seed};
    for (size_t g = 0; g + 4 <= n; g += 4) {
        const uint64_t r = rng.next();
        const int* pair = pairs[r % 6];
        for (int i = 0; i < 2; ++i) {
            const uint64_t bits = r >> (8 + 8 * i);
            float v = (float)((bits & 15) + 1) / 8.0f;
            if (bits & 16) v = -v;
            out[g + pair[i]] = encode16(v, dtype);
        }
    }
    return out;
}

std::vector<uint16_t> random_dense(size_t n, s24_dtype dtype, uint64_t seed) {
    std::vector<uint16_t> out(n);
    Rng rng{seed};
    for (size_t i = 0; i < n; ++i) out[i] = encode16((float)((int)(rng.next() % 17) - 8) / 8.0f, dtype);
    return out;
}

void upload_tiled(void* dst, size_t elements, const std::vector<uint16_t>& pattern, cudaStream_t stream) {
    char* out = static_cast<char*>(dst);
    for (size_t done = 0; done < elements;) {
        const size_t chunk = std::min(pattern.size(), elements - done);
        // From pageable memory the call returns once the host buffer has been consumed: reusable at once.
        check_cuda(cudaMemcpyAsync(out + done * 2, pattern.data(), chunk * 2, cudaMemcpyHostToDevice, stream),
                   "cudaMemcpyAsync (host to device)");
        done += chunk;
    }
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

std::vector<uint16_t> download16(const void* src, size_t elements, cudaStream_t stream) {
    std::vector<uint16_t> out(elements);
    check_cuda(cudaMemcpyAsync(out.data(), src, elements * 2, cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync (device to host)");
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    return out;
}

}  // namespace cuda
}  // namespace s24
