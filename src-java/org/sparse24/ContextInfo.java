package org.sparse24;

/**
 * What a {@link Sparse24} context runs on.
 *
 * @param backend            the backend in use (never {@link Backend#AUTO})
 * @param device             CUDA device ordinal, -1 on CPU
 * @param deviceName         device name (the CPU backend names the host)
 * @param computeCapability  major*10 + minor, 0 on CPU
 * @param multiprocessors    streaming multiprocessors, 0 on CPU
 * @param directLayout       whether the kernels write cuSPARSELt's 2:4 layout directly (verified at creation)
 * @param cusparseltVersion  e.g. 801 for 0.8.1, 0 on CPU
 * @param cublasltVersion    e.g. 130101, 0 on CPU
 * @param cpuThreads         threads the CPU backend uses
 * @param cusparseltPath     the cuSPARSELt library file loaded, "" on CPU
 * @param cublasltPath       the cuBLASLt library file loaded, "" on CPU
 * @param fallbackReason     when {@link Backend#AUTO} chose the CPU: why CUDA was not used, e.g.
 *                           "no NVIDIA driver (libcuda.so.1 not found: ...)" or
 *                           "cuSPARSELt (libcusparseLt.so.0) not found; searched: ..."; "" otherwise
 */
public record ContextInfo(Backend backend, int device, String deviceName, int computeCapability,
                          int multiprocessors, boolean directLayout, int cusparseltVersion, int cublasltVersion,
                          int cpuThreads, String cusparseltPath, String cublasltPath, String fallbackReason) {

    @Override
    public String toString() {
        if (backend == Backend.CPU) {
            return "CPU backend (" + deviceName + ", " + cpuThreads + " threads)";
        }
        return String.format("CUDA device %d: %s (sm_%d, %d SMs, direct 2:4 layout: %s, cuSPARSELt %d at %s, "
                        + "cuBLASLt %d at %s)", device, deviceName, computeCapability, multiprocessors,
                directLayout ? "yes" : "no", cusparseltVersion, cusparseltPath, cublasltVersion, cublasltPath);
    }
}
