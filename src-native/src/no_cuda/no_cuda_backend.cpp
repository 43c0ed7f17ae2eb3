// The CUDA backend of a CPU-only build (CMake S24_CUDA=OFF, or no CUDA compiler): always unavailable.
#include "backend.h"

namespace s24 {

std::unique_ptr<Backend> create_cuda_backend(int /*device*/) {
    fail(S24_ERROR_BACKEND_UNAVAILABLE,
         "this sparse24 library was built without CUDA (CPU backend only); rebuild it where nvcc is on the PATH");
}

}  // namespace s24
