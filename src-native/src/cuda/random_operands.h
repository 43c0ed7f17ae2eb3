// Host-generated random operands for the CUDA backend's self-checks (the layout probe, plan validation):
// values exactly representable in bf16 and fp16, deterministic for a seed.
#pragma once

#include "sparse24.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace s24 {
namespace cuda {

// n values (n % 4 == 0) that are 2:4 along the flat order: in each group of 4, two distinct positions
// (uniform over the 6 pairs) hold non-zero multiples of 1/8 in [-2, 2]; the other two are zero.
std::vector<uint16_t> random_24(size_t n, s24_dtype dtype, uint64_t seed);

// n values, multiples of 1/8 in [-1, 1].
std::vector<uint16_t> random_dense(size_t n, s24_dtype dtype, uint64_t seed);

// dst (elements 16-bit values) = pattern repeated; returns when the copy is done.
void upload_tiled(void* dst, size_t elements, const std::vector<uint16_t>& pattern, cudaStream_t stream);

// elements 16-bit values from src, after the work on stream.
std::vector<uint16_t> download16(const void* src, size_t elements, cudaStream_t stream);

}  // namespace cuda
}  // namespace s24
