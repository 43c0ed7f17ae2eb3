"""Prints where NVIDIA's pip wheels (the nvidia namespace package) keep their libraries and headers, one
KEY=folder line each (the folder empty if not found). Used by run.sh and tune-kernels.sh."""
import glob
import os
import site
import sys

roots = []
try:
    import nvidia  # namespace package of NVIDIA's pip wheels
    roots += list(nvidia.__path__)
except Exception:
    pass
try:
    sites = site.getsitepackages() + [site.getusersitepackages()]
except Exception:
    sites = []
roots += [os.path.join(p, "nvidia") for p in sites + sys.path if p]


def find(subdirs, pattern):
    for r in roots:
        for s in subdirs:
            d = os.path.join(r, s)
            if glob.glob(os.path.join(d, pattern)):
                return os.path.realpath(d)
    return ""


print("CUSPARSELT_LIB=" + find(["cusparselt/lib"], "libcusparseLt.so.0*"))
print("CUBLASLT_LIB=" + find(["cu13/lib", "cublas/lib"], "libcublasLt.so.13*"))
# LibTorch's CUDA build needs the CUDA runtime and libraries, cuDNN, NCCL (and cuSPARSELt for sparse24)
print("NVLIBS=" + ":".join(d for d in (find([s], "lib*.so*")
                                       for s in ("cu13/lib", "cudnn/lib", "nccl/lib", "cusparselt/lib")) if d))
print("CUSPARSELT_INC=" + find(["cusparselt/include"], "cusparseLt.h"))
print("CU13_INC=" + find(["cu13/include", "cublas/include"], "cublasLt.h"))
print("CUSPARSE_INC=" + find(["cu13/include", "cusparse/include"], "cusparse.h"))
