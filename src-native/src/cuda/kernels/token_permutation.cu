// token_permutation: perm[i] = shared.h's permute_index of i, one thread per token.
#include "cuda/kernels.h"
#include "cuda/kernel_utils.cuh"

namespace s24 {
namespace cuda {
namespace {

using namespace detail;

__global__ void __launch_bounds__(256) token_permutation_kernel(Permutation p, int64_t tokens, int32_t* __restrict__ perm) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < tokens; i += stride)
        perm[i] = (int32_t)permute_index(p, (uint32_t)i);
}

}  // namespace

void launch_token_permutation(uint64_t seed, int64_t step, int64_t tokens, int32_t* perm, cudaStream_t stream) {
    const char* what = "launch_token_permutation";
    if (tokens <= 0) return;
    const Permutation p = make_permutation(seed, step, tokens);
    token_permutation_kernel<<<stride_grid(tokens, 256, 16384), 256, 0, stream>>>(p, tokens, perm);
    check_launch(what);
}

}  // namespace cuda
}  // namespace s24
