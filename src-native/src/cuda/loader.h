// Run-time loading of cuSPARSELt (libcusparseLt.so.0) and cuBLASLt (libcublasLt.so.13).
//
// The libraries are never linked: each is opened once per process with dlopen (the first successful
// load is kept open for the life of the process) and every function used is fetched with dlsym into a
// table whose pointer types come from the real headers. A failed search throws
// s24::Error(S24_ERROR_LIBRARY_NOT_FOUND) naming the library and every path tried; it is not cached,
// so a later context creation searches again (e.g. after the environment was fixed).
//
// Search order (first that loads and has every symbol wins), per library:
//   1. $SPARSE24_CUSPARSELT_PATH / $SPARSE24_CUBLASLT_PATH: the file, or a directory holding it
//   2. dlopen of the soname (LD_LIBRARY_PATH, the runpath, ld.so.cache, libraries already loaded)
//   3. Python site-packages, in nvidia/cusparselt/lib and nvidia/cu13/lib under:
//      $SPARSE24_PYTHON_SITE, $VIRTUAL_ENV/lib/python3*/site-packages,
//      $CONDA_PREFIX/lib/python3*/site-packages, /usr/local/lib/python3*/{site,dist}-packages,
//      /usr/lib/python3*/{site,dist}-packages, ~/.local/lib/python3*/site-packages,
//      /opt/*/lib/python3*/site-packages, /opt/*/*/..., /opt/*/*/*/...
//   4. /usr/local/cuda/lib64, /usr/local/cuda/targets/x86_64-linux/lib, /usr/lib/x86_64-linux-gnu
#pragma once

#include <cublasLt.h>
#include <cusparseLt.h>

#include <string>

namespace s24 {
namespace cuda {

#define S24_CUSPARSELT_FUNCTIONS(X)          \
    X(cusparseLtInit)                        \
    X(cusparseLtDestroy)                     \
    X(cusparseLtGetProperty)                 \
    X(cusparseLtGetErrorName)                \
    X(cusparseLtGetErrorString)              \
    X(cusparseLtDenseDescriptorInit)         \
    X(cusparseLtStructuredDescriptorInit)    \
    X(cusparseLtMatDescriptorDestroy)        \
    X(cusparseLtMatmulDescriptorInit)        \
    X(cusparseLtMatmulAlgSelectionInit)      \
    X(cusparseLtMatmulAlgSelectionDestroy)   \
    X(cusparseLtMatmulAlgGetAttribute)       \
    X(cusparseLtMatmulAlgSetAttribute)       \
    X(cusparseLtMatmulPlanInit)              \
    X(cusparseLtMatmulPlanDestroy)           \
    X(cusparseLtMatmulGetWorkspace)          \
    X(cusparseLtMatmul)                      \
    X(cusparseLtMatmulSearch)                \
    X(cusparseLtSpMMACompressedSize)         \
    X(cusparseLtSpMMACompress)

#define S24_CUBLASLT_FUNCTIONS(X)              \
    X(cublasLtCreate)                          \
    X(cublasLtDestroy)                         \
    X(cublasLtGetVersion)                      \
    X(cublasLtGetStatusName)                   \
    X(cublasLtMatmulDescCreate)                \
    X(cublasLtMatmulDescDestroy)               \
    X(cublasLtMatmulDescSetAttribute)          \
    X(cublasLtMatrixLayoutCreate)              \
    X(cublasLtMatrixLayoutDestroy)             \
    X(cublasLtMatmulPreferenceCreate)          \
    X(cublasLtMatmulPreferenceDestroy)         \
    X(cublasLtMatmulPreferenceSetAttribute)    \
    X(cublasLtMatmulAlgoGetHeuristic)          \
    X(cublasLtMatmul)

#define S24_DECLARE_FUNCTION_POINTER(name) decltype(&::name) name = nullptr;

struct CusparseLtApi {
    std::string path;  // the file that was loaded
    int version = 0;   // major*1000 + minor*100 + patch, e.g. 801
    S24_CUSPARSELT_FUNCTIONS(S24_DECLARE_FUNCTION_POINTER)
};

struct CublasLtApi {
    std::string path;
    int version = 0;  // cublasLtGetVersion(), e.g. 130101
    S24_CUBLASLT_FUNCTIONS(S24_DECLARE_FUNCTION_POINTER)
};

#undef S24_DECLARE_FUNCTION_POINTER

// The process-wide tables (thread-safe; the library is loaded on the first successful call).
const CusparseLtApi& cusparselt_api();
const CublasLtApi& cublaslt_api();

// Throws BACKEND_UNAVAILABLE "no NVIDIA driver (libcuda.so.1 not found: ...)" when the driver library
// cannot be loaded (the CUDA runtime would only say "driver version is insufficient").
void require_driver();

}  // namespace cuda
}  // namespace s24
