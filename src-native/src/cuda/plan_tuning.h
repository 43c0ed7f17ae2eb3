// Tuning and validation of cuSPARSELt plans (apart from the backend: it synchronizes and allocates).
//
// Tuning a request runs every allowed form with every algorithm id (CUSPARSELT_MATMUL_ALG_CONFIG_ID
// 0..CONFIG_MAX_ID with the default split-K) and cusparseLtMatmulSearch's own choice, on random operands of
// the request's shape generated on the device: each candidate is first checked against cuBLASLt's dense
// product of the same matrices (a candidate that errs, throws or writes a NaN is dropped), then timed (CUDA
// events, median of `reps` runs after 2 warm-up runs; one whose second warm-up run is over twice the best
// median so far keeps that run's time; a ROW_C candidate of a c_transposed request includes the transpose,
// one that cannot read our packing the re-pack). The fastest valid candidate wins. The data are multiples of 1/8 whose products sum exactly
// in fp32, so a correct algorithm agrees to the last bit before rounding; tolerance 1e-2 relative to max |c|.
// A fault that leaves the CUDA context unusable (sticky errors) cannot be recovered from in-process: it
// surfaces as S24_ERROR_CUDA.
#pragma once

#include "backend.h"
#include "cuda/cublaslt_ops.h"
#include "cuda/cuda_util.h"
#include "cuda/cusparselt_ops.h"
#include "cuda/plan_cache.h"

#include <cuda_runtime.h>

#include <memory>
#include <vector>

namespace s24 {
namespace cuda {

// What tuning and validation use of the backend.
struct TuneContext {
    SparseLt& lt;
    BlasLt& blas;
    void* blas_workspace;  // BlasLt::kWorkspaceBytes
    DeviceBuffer& lt_workspace;
    cudaStream_t stream;
    bool direct_layout;  // the layout probe passed: our CUSPARSELT packing may be handed to cuSPARSELt as is
};

constexpr double kPlanTolerance = 1e-2;  // max |sparse - dense| / max |dense| of a valid plan

// The fastest valid plan for the request among `forms` (each must be ROW_C for a request without
// c_transposed), with plan->direct set; every candidate goes to *report (if not null). Throws
// S24_ERROR_VALIDATION_FAILED if no candidate is valid.
std::unique_ptr<SparseLt::Plan> tune_plan(TuneContext& ctx, const SpmmRequest& request,
                                          const std::vector<SpmmForm>& forms, int reps, SpmmTuning* report);

// Runs `plan` once on random operands and compares with the dense product; sets plan.direct. Returns
// the relative error (infinity if the product has a NaN or an infinity). cuSPARSELt errors throw.
double validate_plan(TuneContext& ctx, SparseLt::Plan& plan);

}  // namespace cuda
}  // namespace s24
