// The benchmarks' w1 mean, one home for native_support.h, kernel_bench.cu and plan_tune.cpp (which do not
// include native_support.h).
#pragma once

#include <cmath>
#include <cstdint>

namespace s24test {

// The mean of w1 ~ N(mean, 0.02) for x ~ N(0.5, 1) of width d: H then has mean -1.2 std, so ~88% of relu(H) is
// zero, as in trained models (the benchmarks' inputs).
inline float sparse_w1_mean(int64_t d) { return -1.2f * std::sqrt(1.25f * d) * 0.02f / (0.5f * d); }

}  // namespace s24test
