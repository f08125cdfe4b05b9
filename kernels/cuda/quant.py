"""CuPy GPU quantized products with the signatures of `kernels.quant`'s, run as engines run them: W8A8 as
cuBLAS's int8 tensor-core GEMM between our quantize and rescale kernels (`w8a8.cu`); W4A16 as a fused
dequantizing GEMV kernel for a few token rows (`w4a16_fused.cu`) and as dequantize (`w4_dequantize.cu`)
+ cuBLAS fp16 GEMM for many. The weights come from `kernels.device.to_device`.
"""
from __future__ import annotations

import numpy as np

from ..device import require, sm_count
from .compile import compiled

# cuBLAS's enumerations (CUDA's library_types.h and cublas_api.h)
_CUDA_R_32F, _CUDA_R_16F, _CUDA_R_8I, _CUDA_R_32I = 0, 2, 3, 10
_COMPUTE_32F, _COMPUTE_32I = 68, 72


def _gemm(x, w, out, w_transposed: bool):
    """out[m, n] = x[m, k] W with cuBLAS's GemmEx on tensor cores: int8 operands accumulated in int32,
    fp16 ones in fp32. w is W [k, n] row-major, or W^T [n, k] row-major when w_transposed (the 'TN'
    layout int8 GEMMs want). Row-major arrays are cuBLAS's column-major transposes, so this asks cuBLAS
    for out^T = W^T x^T."""
    cp = require()
    from cupy_backends.cuda.libs import cublas
    m, k = x.shape
    n = out.shape[1]
    integer = x.dtype == cp.int8
    kind = _CUDA_R_8I if integer else _CUDA_R_16F
    one, nothing = np.ones(1, np.int32 if integer else np.float32), np.zeros(1, np.int32 if integer else np.float32)
    handle = cp.cuda.device.get_cublas_handle()
    cublas.setStream(handle, cp.cuda.get_current_stream().ptr)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    cublas.gemmEx(handle, cublas.CUBLAS_OP_T if w_transposed else cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N,
                  n, m, k, one.ctypes.data, w.data.ptr, kind, k if w_transposed else n, x.data.ptr, kind, k,
                  nothing.ctypes.data, out.data.ptr, _CUDA_R_32I if integer else _CUDA_R_32F, n,
                  _COMPUTE_32I if integer else _COMPUTE_32F, -1)  # -1: CUBLAS_GEMM_DEFAULT
    return out


def w8a8_matmul(x, w_q, x_granularity: str = "token"):
    """int8 activations (per token or per tensor) x symmetric int8 weights (per channel or per tensor),
    accumulated in int32 by cuBLAS's int8 tensor-core GEMM, then rescaled (see kernels.quant.w8a8_matmul):
    quantize, GEMM, rescale, as SmoothQuant's and TensorRT-LLM's W8A8 paths run it."""
    cp = require()
    x = cp.ascontiguousarray(x, dtype=cp.float32)
    m, k = x.shape
    n = w_q.codes.shape[1]
    if k % 4:
        raise ValueError(f"the GPU int8 GEMM needs in_features divisible by 4, got {k}")
    xq, sx = cp.empty((m, k), dtype=cp.int8), cp.empty(m, dtype=cp.float32)
    per_tensor = x_granularity == "tensor"
    absmax = cp.abs(x).max() if per_tensor else sx  # per token: each row's block finds its own
    compiled("w8a8.cu", "quantize_rows")((m,), (256,), (x, absmax, xq, sx, np.int32(k), np.int32(per_tensor)))
    acc = _gemm(xq, cp.ascontiguousarray(w_q.codes.T), cp.empty((m, n), dtype=cp.int32), True)
    out = cp.empty((m, n), dtype=cp.float32)
    compiled("w8a8.cu", "rescale")((-(-m * n // 256),), (256,),
                                   (acc, sx, w_q.scale, out, np.int32(m), np.int32(n), np.int32(w_q.granularity == "channel")))
    return out


# Up to this many token rows the fused kernel runs, above it dequantize + cuBLAS fp16: on an H200 the fused
# kernel is faster up to 8 rows and even at 16 (benchmarks/kernels_vs_cupy.py, results/kernels_gpu.json).
W4A16_FUSED_ROWS = 8
# The fused kernel's launch: two warps a block, and about 16 warps per SM in the grid, since each warp
# keeps only a few loads in flight and the weights' read needs many in flight at once
_FUSED_THREADS = 64
_FUSED_WARPS_PER_SM = 16


def _fused_k_rows_per_split(k: int, blocks: int, sms: int) -> int:
    """The k rows each block of the fused kernel sums over (split-K): k is split until the grid, `blocks`
    per split, has about _FUSED_WARPS_PER_SM warps on each of the GPU's `sms` SMs, at least 32 rows a
    split, in whole pairs of rows (a byte holds a pair)."""
    target_blocks = sms * _FUSED_WARPS_PER_SM // (_FUSED_THREADS // 32)
    splits = max(1, min(k // 32, -(-target_blocks // blocks)))
    return -(-k // splits // 2) * 2


def w4a16_matmul(x, w_q, fused: bool | None = None):
    """Activations x packed int4 group-quantized weights (see kernels.quant.w4a16_matmul). Up to
    W4A16_FUSED_ROWS rows (or when `fused`): the fused kernel, fp32 activations and math, dequantizing in
    registers, its cost the weights' read; more rows (or `fused=False`): the weights dequantized once to
    fp16 and an fp16 tensor-core GEMM (fp16 activations, fp32 accumulation), its cost the GEMM's arithmetic."""
    cp = require()
    x = cp.ascontiguousarray(x, dtype=cp.float32)
    m, k = x.shape
    n = w_q.codes.shape[1]
    if n % 8 or w_q.group_size % 2:
        raise ValueError(f"the GPU int4 kernels need out_features divisible by 8 and an even group size, "
                         f"got {n} and {w_q.group_size}")
    if not (m <= W4A16_FUSED_ROWS if fused is None else fused):
        w16 = cp.empty((k, n), dtype=cp.float16)
        compiled("w4_dequantize.cu", "w4_dequantize")(
            ((k // 2 * n // 4 + 255) // 256,), (256,),
            (w_q.codes, w_q.scale, w_q.zero, w16, np.int32(n), np.int32(k), np.int32(w_q.group_size)))
        return _gemm(x.astype(cp.float16), w16, cp.empty((m, n), dtype=cp.float32), False)
    rows = next(r for r in (1, 2, 4) if r >= min(m, 4))
    column_blocks, row_blocks = (n // 8 + _FUSED_THREADS - 1) // _FUSED_THREADS, (m + rows - 1) // rows
    kchunk = _fused_k_rows_per_split(k, column_blocks * row_blocks, sm_count())
    out = cp.zeros((m, n), dtype=cp.float32)
    compiled("w4a16_fused.cu", "w4a16_fused", f"ROWS={rows}")(
        (column_blocks, row_blocks, -(-k // kchunk)), (_FUSED_THREADS,),
        (x, w_q.codes, w_q.scale, w_q.zero, out, np.int32(m), np.int32(n), np.int32(k), np.int32(w_q.group_size),
         np.int32(kchunk)))
    return out
