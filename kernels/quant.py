"""Quantization kernels: uniform (symmetric or asymmetric) 2- to 8-bit rounding at per-tensor, per-channel,
per-token and group granularity, a non-uniform 16-level codebook, W8A8 int8 GEMM with int32 accumulation,
W4A16 GEMM that dequantizes on the fly, LLM.int8() outlier decomposition and SmoothQuant difficulty migration.

Conventions: activations X are [tokens, features]; weights W are [in_features, out_features] (y = X W).
"token" scales are per row of X, "channel" scales per output column of W, "group" scales per
`group_size` consecutive input rows of each column (GPTQ/AWQ's layout), "tensor" one scale.
Symmetric: q = round(x / s) in [-(2^(b-1) - 1), 2^(b-1) - 1], s = absmax / (2^(b-1) - 1).
Asymmetric: q = round(x / s) + z in [0, 2^b - 1], s = (max - min) / (2^b - 1), z = round(-min / s).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ._numba_gemm import REORDER as _REORDER
from ._numba_gemm import int8_gemm
from .cuda import quant as cuda_quant

GRANULARITIES = ("tensor", "channel", "token", "group")
BACKENDS = ("numpy", "numba", "cupy")
BITS = range(2, 9)  # quantize() rounds to any of these widths; the GEMM kernels take 8 and 4
GEMV_ROWS = 4  # up to this many token rows W4A16 dequantizes inside the product; beyond, once, then BLAS


@dataclass(frozen=True)
class Quantized:
    codes: np.ndarray  # int8 (symmetric), uint8 (asymmetric), or two 4-bit codes per uint8 when packed
    scale: np.ndarray  # broadcastable against the (grouped) tensor
    zero: np.ndarray | None  # asymmetric zero points, in code units
    bits: int
    shape: tuple
    granularity: str
    group_size: int = 0
    packed: bool = False
    codebook: np.ndarray | None = None  # non-uniform levels (codes index them)

    @property
    def nbytes(self) -> int:
        extra = self.zero.size if self.zero is not None else 0
        return int(self.codes.nbytes + 2 * (self.scale.size + extra))  # scales and zeros stored as fp16


def _grouped(x: np.ndarray, granularity: str, group_size: int) -> np.ndarray:
    """View x so that one scale is shared along axis 1 of the result: [scales..., shared, ...]."""
    if granularity == "tensor":
        return x.reshape(1, -1)
    if granularity == "token":
        return x  # a row shares a scale
    if granularity == "channel":
        return x.T  # a column shares a scale
    if granularity == "group":
        k, n = x.shape
        if k % group_size:
            raise ValueError(f"group_size={group_size} must divide in_features={k}")
        return x.T.reshape(n, k // group_size, group_size).reshape(-1, group_size)
    raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")


def _ungrouped(g: np.ndarray, shape: tuple, granularity: str, group_size: int) -> np.ndarray:
    if granularity in ("tensor", "token"):
        return g.reshape(shape)
    if granularity == "channel":
        return g.T
    k, n = shape
    return g.reshape(n, k).T


def check_bits(bits: int) -> None:
    if bits not in BITS:
        raise ValueError(f"bits must be an integer from {BITS.start} to {BITS.stop - 1}, got {bits!r}")


def asymmetric_grid(g: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero) for each row of g: the grid spans [min(row, 0), max(row, 0)] in 2^bits - 1 steps."""
    lo, hi = np.minimum(g.min(axis=1, keepdims=True), 0), np.maximum(g.max(axis=1, keepdims=True), 0)
    scale = np.maximum(hi - lo, 1e-12) / (2 ** bits - 1)
    return scale, np.rint(-lo / scale)


def asymmetric_codes(g: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """The nearest point of the grid (scale, zero), as a code in [0, 2^bits - 1]."""
    return np.clip(np.rint(g / scale) + zero, 0, 2 ** bits - 1).astype(np.uint8)


def quantize(x: np.ndarray, bits: int = 8, symmetric: bool = True, granularity: str = "tensor",
             group_size: int = 128) -> Quantized:
    """Round to nearest at any width from 2 to 8 bits; 4-bit codes are packed two per byte."""
    check_bits(bits)
    g = _grouped(np.asarray(x, dtype=np.float32), granularity, group_size)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = np.maximum(np.abs(g).max(axis=1, keepdims=True), 1e-12) / qmax
        codes, zero = np.clip(np.rint(g / scale), -qmax, qmax).astype(np.int8), None
    else:
        scale, zero = asymmetric_grid(g, bits)
        codes = asymmetric_codes(g, scale, zero, bits)
    codes = _ungrouped(codes, x.shape, granularity, group_size)
    packed = bits == 4
    if packed:
        codes = pack_int4(codes if not symmetric else (codes.astype(np.int16) + 8).astype(np.uint8))
    return Quantized(np.ascontiguousarray(codes), scale, zero, bits, tuple(x.shape), granularity, group_size, packed)


def dequantize(qt: Quantized) -> np.ndarray:
    codes = unpack_int4(qt.codes, qt.shape[0]) if qt.packed else qt.codes
    if qt.packed and qt.zero is None and qt.codebook is None:
        codes = codes.astype(np.int16) - 8  # symmetric int4 is stored offset by 8
    if qt.codebook is not None:
        values = qt.codebook[codes]
    else:
        values = codes.astype(np.float32)
    g = _grouped(values, qt.granularity, qt.group_size)
    if qt.zero is not None:
        g = g - qt.zero
    return _ungrouped(g * qt.scale, qt.shape, qt.granularity, qt.group_size).astype(np.float32)


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """Two 4-bit codes (0..15) per byte, rows 2i (low nibble) and 2i + 1 (high nibble) together."""
    if codes.shape[0] % 2:
        raise ValueError(f"int4 packing needs an even number of rows, got {codes.shape[0]}")
    c = codes.astype(np.uint8)
    return (c[0::2] & 0x0F) | (c[1::2] << 4)


def unpack_int4(packed: np.ndarray, rows: int) -> np.ndarray:
    out = np.empty((rows, *packed.shape[1:]), dtype=np.uint8)
    out[0::2] = packed & 0x0F
    out[1::2] = packed >> 4
    return out


def codebook_quantize(w: np.ndarray, levels: int = 16, group_size: int = 64, iterations: int = 25) -> Quantized:
    """Non-uniform 4-bit weights: each group is scaled by its absmax to [-1, 1] and every value is replaced
    by the nearest of `levels` levels fitted to the whole tensor by Lloyd's algorithm (k-means in 1-D), in
    the spirit of NF4 (Dettmers et al. 2023), whose levels are normal quantiles instead."""
    g = _grouped(np.asarray(w, dtype=np.float32), "group", group_size)
    scale = np.maximum(np.abs(g).max(axis=1, keepdims=True), 1e-12)
    unit = (g / scale).ravel()
    book = np.quantile(unit, (np.arange(levels) + 0.5) / levels).astype(np.float32)
    for _ in range(iterations):
        nearest = np.abs(unit[:, None] - book[None, :]).argmin(axis=1)
        sums = np.bincount(nearest, unit, levels)
        counts = np.bincount(nearest, minlength=levels)
        book = np.where(counts > 0, sums / np.maximum(counts, 1), book).astype(np.float32)
    codes = np.abs(unit[:, None] - book[None, :]).argmin(axis=1).astype(np.uint8).reshape(g.shape)
    codes = _ungrouped(codes, w.shape, "group", group_size)
    return Quantized(pack_int4(codes), scale, None, 4, tuple(w.shape), "group", group_size, True, book)


def w8a8_matmul(x: np.ndarray, w_q: Quantized, x_granularity: str = "token", backend: str = "numba") -> np.ndarray:
    """int8 activations x int8 weights, accumulated in int32, rescaled by s_x s_w (LLM.int8()'s
    vector-wise quantization when activations are per token and weights per channel). numpy: NumPy's
    integer matmul (the reference); numba: the parallel int8 kernel; cupy: the GPU kernel
    (`device.to_device` the weights first)."""
    if w_q.bits != 8 or w_q.zero is not None or w_q.granularity not in ("tensor", "channel"):
        raise ValueError("w8a8_matmul wants symmetric int8 weights per tensor or per channel")
    if x_granularity not in ("tensor", "token"):
        raise ValueError(f"x_granularity must be 'tensor' or 'token', got {x_granularity!r}")
    if backend == "cupy":
        return cuda_quant.w8a8_matmul(x, w_q, x_granularity)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    x_q = quantize(x, 8, True, x_granularity)
    acc = (int8_gemm(x_q.codes, w_q.codes) if backend == "numba"
           else x_q.codes.astype(np.int32) @ w_q.codes.astype(np.int32))
    sx = x_q.scale.reshape(-1, 1) if x_granularity == "token" else x_q.scale.reshape(1, 1)
    sw = w_q.scale.reshape(1, -1) if w_q.granularity == "channel" else w_q.scale.reshape(1, 1)
    return acc.astype(np.float32) * sx * sw


@numba.njit(parallel=True, fastmath=_REORDER, cache=True)
def _dequant_int4_rows(packed, scale, zero, group_size, out):
    """out[p, j] = (code(p, j) - zero[g, j]) scale[g, j], g = p // group_size; rows in parallel."""
    k, n = out.shape
    for p in numba.prange(k):
        g = p // group_size
        shift = np.uint8(4 * (p % 2))
        row, s, z, o = packed[p // 2], scale[g], zero[g], out[p]  # 1-D rows: the loop below vectorizes
        for j in range(n):
            o[j] = (np.float32((row[j] >> shift) & np.uint8(15)) - z[j]) * s[j]


@numba.njit(parallel=True, fastmath=_REORDER, cache=True)
def _w4a16_gemv(x, packed, scale, zero, group_size, chunk):
    """A few token rows: each task owns `chunk` output columns and streams the packed rows once,
    dequantizing each row segment in registers and accumulating every token row's dot products."""
    m, k = x.shape
    n = packed.shape[1]
    out = np.zeros((m, n), dtype=np.float32)
    for c in numba.prange((n + chunk - 1) // chunk):
        j0, j1 = c * chunk, min(n, (c + 1) * chunk)
        w = np.empty(j1 - j0, dtype=np.float32)
        for p in range(k):
            g = p // group_size
            shift = np.uint8(4 * (p % 2))
            row, s, z = packed[p // 2, j0:j1], scale[g, j0:j1], zero[g, j0:j1]
            for j in range(j1 - j0):
                w[j] = (np.float32((row[j] >> shift) & np.uint8(15)) - z[j]) * s[j]
            for i in range(m):
                xp = x[i, p]
                o = out[i, j0:j1]
                for j in range(j1 - j0):
                    o[j] += xp * w[j]
    return out


def w4a16_matmul(x: np.ndarray, w_q: Quantized, backend: str = "numba") -> np.ndarray:
    """fp activations x 4-bit group-quantized weights (GPTQ/AWQ-style). numpy: dequantize, then matmul
    (the reference); numba: dequantized inside the product for decode-sized inputs, as fused GPU kernels
    do, and once into a full matrix for prefill-sized ones, as they switch to dequantize-then-multiply;
    cupy: the GPU kernel, dequantizing in its inner loop (`device.to_device` the weights first)."""
    if not (w_q.bits == 4 and w_q.packed and w_q.granularity == "group" and w_q.codebook is None):
        raise ValueError("w4a16_matmul wants packed uniform int4 weights quantized per group")
    if backend == "cupy":
        return cuda_quant.w4a16_matmul(x, w_q)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "numpy":
        return np.asarray(x, dtype=np.float32) @ dequantize(w_q)
    k, n = w_q.shape
    # quantize() keeps one scale per (column, group); the kernels want them per group, then column.
    # Symmetric codes are stored offset by 8, which is the same as a zero point of 8.
    scale = np.ascontiguousarray(w_q.scale.reshape(n, -1).T, dtype=np.float32)
    zero = (np.full(scale.shape, 8.0, dtype=np.float32) if w_q.zero is None
            else np.ascontiguousarray(w_q.zero.reshape(n, -1).T, dtype=np.float32))
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[0] <= GEMV_ROWS:
        return _w4a16_gemv(x, w_q.codes, scale, zero, w_q.group_size, 256)
    w = np.empty((k, n), dtype=np.float32)  # many rows: dequantize once, then multiply with BLAS
    _dequant_int4_rows(w_q.codes, scale, zero, w_q.group_size, w)
    return x @ w


def llm_int8_matmul(x: np.ndarray, w: np.ndarray, threshold: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """LLM.int8() (Dettmers et al. 2022, Eq. 3): input features with any |x| above `threshold` multiply in
    fp16; the rest in int8 with per-token activation and per-channel weight scales. Returns (y, outlier
    feature indices)."""
    outliers = np.flatnonzero(np.abs(x).max(axis=0) > threshold)
    regular = np.setdiff1d(np.arange(x.shape[1]), outliers)
    y = w8a8_matmul(x[:, regular], quantize(w[regular], 8, True, "channel"))
    if len(outliers):
        y += (x[:, outliers].astype(np.float16) @ w[outliers].astype(np.float16)).astype(np.float32)
    return y, outliers


def smoothing_scales(x: np.ndarray, w: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """SmoothQuant (Xiao et al. 2023, Eq. 4): s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) per input
    channel j; X diag(s)^-1 and diag(s) W have the same product and a flatter activation range."""
    return (np.maximum(np.abs(x).max(axis=0), 1e-5) ** alpha / np.maximum(np.abs(w).max(axis=1), 1e-5) ** (1 - alpha))


def smoothquant_matmul(x: np.ndarray, w: np.ndarray, alpha: float = 0.5, x_granularity: str = "tensor") -> np.ndarray:
    s = smoothing_scales(x, w, alpha).astype(np.float32)
    return w8a8_matmul(x / s, quantize(w * s[:, None], 8, True, "channel"), x_granularity)


def outlier_activations(tokens: int, features: int, rng: np.random.Generator, outlier_channels: int = 8,
                        magnitude: float = 60.0) -> np.ndarray:
    """Activations like those of large transformers (LLM.int8(), §3): mostly unit scale, a few feature
    channels systematically ~magnitude times larger."""
    x = rng.standard_normal((tokens, features)).astype(np.float32)
    cols = rng.choice(features, outlier_channels, replace=False)
    x[:, cols] *= magnitude
    return x


def relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    """||approx - exact|| / ||exact|| (Frobenius), the error every report here quotes."""
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


def error_report(tokens: int = 256, features: int = 1024, out_features: int = 1024, seed: int = 0) -> dict:
    """Relative error ||Y_q - Y|| / ||Y|| of each scheme on activations with outlier channels: per-tensor
    int8 activations are ruined by the outliers, decomposition and smoothing recover them."""
    rng = np.random.default_rng(seed)
    x = outlier_activations(tokens, features, rng)
    w = (rng.standard_normal((features, out_features)) / np.sqrt(features)).astype(np.float32)
    y = x @ w

    def err(y_q):
        return relative_error(y_q, y)
    w_channel = quantize(w, 8, True, "channel")
    return {
        "w8a16 per-channel": err(x @ dequantize(w_channel)),
        "w8a8 per-tensor": err(w8a8_matmul(x, quantize(w, 8, True, "tensor"), "tensor")),
        "w8a8 per-token x per-channel": err(w8a8_matmul(x, w_channel, "token")),
        "llm.int8 decomposition": err(llm_int8_matmul(x, w)[0]),
        "smoothquant per-tensor (alpha 0.5)": err(smoothquant_matmul(x, w, 0.5, "tensor")),
        "w4a16 group 128 asymmetric": err(x @ dequantize(quantize(w, 4, False, "group", 128))),
        "w4a16 group 128 symmetric": err(x @ dequantize(quantize(w, 4, True, "group", 128))),
        "4-bit codebook group 64": err(x @ dequantize(codebook_quantize(w, 16, 64))),
    }
