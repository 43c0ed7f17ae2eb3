// The tuned cuSPARSELt plans on disk, so that a new process does not tune again.
//
// One text file, ${SPARSE24_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/sparse24}/plans/cusparselt-plans.txt
// (SPARSE24_PLAN_CACHE=0: no file is read or written). One line a GEMM:
//   <device> <driver> <cusparselt> <dtype> <m> <n> <k> <b_transposed> <c_transposed> -> <form> <alg> <split_k>
//   <split_k_mode> <split_k_buffers> <ms>
// where <device> is the GPU's name (blanks as '_') and UUID. Lines that do not parse are ignored (and
// dropped at the next write), so a damaged file costs a tuning run, never a wrong plan: every choice read
// back is validated before use. Writes replace the file atomically (a temporary file, then rename);
// failures to read or write are ignored (the cache is an optimization).
#pragma once

#include "cuda/cusparselt_ops.h"

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

namespace s24 {
namespace cuda {

// A request to the sparse GEMM: what the caller asks for (the form and algorithm are the plan's answer).
struct SpmmRequest {
    int dtype;
    int64_t m, n, k;
    bool b_transposed, c_transposed;
    bool operator<(const SpmmRequest& o) const {
        return std::tie(dtype, m, n, k, b_transposed, c_transposed) <
               std::tie(o.dtype, o.m, o.n, o.k, o.b_transposed, o.c_transposed);
    }
    std::string describe() const;  // " (bf16 m=.. n=.. k=.. b_transposed=.. c_transposed=..)"
};

// A tuned choice: the form and the algorithm, and the median time that won.
struct PlanChoice {
    SpmmForm form = SpmmForm::ROW_C;
    AlgConfig config;
    float ms = 0.0f;
};

class PlanCache {
public:
    // device: "<name>/<uuid>" of the GPU; driver, cusparselt: versions (the key's first fields).
    PlanCache(const std::string& device, int driver, int cusparselt);

    const std::string& path() const { return path_; }  // "" when the disk cache is off

    // The stored choice for the request, read from the file now (another process may have written it).
    bool find(const SpmmRequest& request, PlanChoice* choice) const;
    // Adds or replaces the request's line (read, merge, write a temporary file, rename).
    void store(const SpmmRequest& request, const PlanChoice& choice) const;
    // Removes the file (every device's choices).
    void clear() const;

private:
    std::string key(const SpmmRequest& request) const;
    std::map<std::string, std::string> read() const;  // key -> the choice's fields

    std::string device_;
    int driver_, cusparselt_;
    std::string path_;
};

}  // namespace cuda
}  // namespace s24
