// Internal extras of the CUDA backend (the backend itself is created by s24::create_cuda_backend).
#pragma once

#include "backend.h"

namespace s24 {
namespace cuda {

// What the layout probe at context creation found (why direct_layout is 0, or that it matched), or
// nullptr if `backend` is not a CUDA backend. Valid while the backend lives.
// Setting SPARSE24_REQUIRE_DIRECT_LAYOUT=1 makes context creation fail with
// S24_ERROR_VALIDATION_FAILED and this text when the probe does not match (for tests).
const char* layout_probe_report(const Backend* backend);

}  // namespace cuda
}  // namespace s24
