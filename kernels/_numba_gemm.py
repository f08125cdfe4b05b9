"""Small Numba kernels the host calibration times (the validating kernels live beside them)."""
import numba
import numpy as np

# Fast-math flags that let LLVM reorder and vectorize sums but, unlike fastmath=True, keep infinities
# and NaNs meaningful (the online softmax starts from a running maximum of -inf).
REORDER = {"reassoc", "contract", "arcp", "afn"}


@numba.njit(parallel=True, cache=True)
def int8_gemm(a, b):
    """int8 x int8 -> int32 accumulation, rows in parallel, k-outer loop for contiguous access."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), dtype=np.int32)
    for i in numba.prange(m):
        for p in range(k):
            aip = np.int32(a[i, p])
            for j in range(n):
                out[i, j] += aip * np.int32(b[p, j])
    return out


@numba.njit(parallel=True, cache=True)
def triad(a, b, c, scalar):
    for i in numba.prange(a.size):
        a[i] = b[i] + scalar * c[i]


@numba.njit(parallel=True, fastmath=REORDER, cache=True)
def exp_into(x, out):
    for i in numba.prange(x.size):
        out[i] = np.exp(x[i])
