"""Small Numba kernels the host calibration times (the validating kernels live beside them), and the
BLAS thread control that the kernels calling BLAS from parallel Numba loops need."""
from __future__ import annotations

import importlib
from functools import lru_cache

import numba
import numpy as np

from .fast_exp import fast_exp

# Fast-math flags that let LLVM reorder and vectorize sums but, unlike fastmath=True, keep infinities
# and NaNs meaningful (the online softmax starts from a running maximum of -inf).
REORDER = {"reassoc", "contract", "arcp", "afn"}


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController
    importlib.import_module("scipy.linalg.cython_blas")  # Numba's np.dot calls this BLAS: load it first
    return ThreadpoolController()


def one_blas_thread():
    """A context in which each BLAS call runs on one thread. The tiled kernels call BLAS on small tiles
    from every thread of a parallel Numba loop; left to itself, BLAS would start its own threads in each,
    oversubscribe the cores and run several times slower."""
    return _blas_controller().limit(limits=1, user_api="blas")


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
    """The exponential the softmax of the CPU kernels computes (`fast_exp`), so that calibrate measures
    the rate they run at."""
    for i in numba.prange(x.size):
        out[i] = fast_exp(x[i])
