"""The GPU in use, for the CUDA kernels (`kernels/cuda/`), the GPU validation sweep and GPU calibration:
whether CuPy and a GPU are here, the device's hardware registry entry and SM count, and quantized weights
placed as the CUDA kernels read them. CuPy is imported only when a function here runs, so the package
works without it.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

# Fragments of CUDA device names (cudaDeviceProp.name), most specific first, and their registry entries
_REGISTRY_BY_NAME = (("H200", "h200"), ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("A100-SXM4-40GB", "a100-sxm-40gb"),
                     ("A100", "a100-sxm-80gb"), ("L40S", "l40s"), ("L4", "l4"), ("A10G", "a10g"), ("4090", "rtx-4090"))


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether CuPy and a GPU are here; asked once per process, as every CUDA kernel asks it on every
    call, inside timed GPU runs too."""
    try:
        import cupy as cp
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver or no device: all mean "no GPU here"
        return False


def require():
    """CuPy, for what backend="cupy" runs; a one-line error unless CuPy and a GPU are here."""
    if not available():
        raise ValueError("backend 'cupy' needs CuPy and a CUDA GPU (pip install 'infersim[gpu]'); "
                         "use backend 'numba' or 'numpy' here")
    import cupy
    return cupy


def registry_name() -> str:
    """The hardware registry entry of the GPU in use."""
    name = _properties_in_use()["name"].decode()
    for fragment, entry in _REGISTRY_BY_NAME:
        if fragment in name:
            return entry
    from infersim.roofline.errors import SpecError
    raise SpecError("--hardware", f"the GPU '{name}' is not in the registry; pass a hardware YAML", name)


def sm_count() -> int:
    """Streaming multiprocessors of the GPU in use, as the device reports them."""
    return int(_properties_in_use()["multiProcessorCount"])


def _properties_in_use() -> dict:
    """cudaDeviceProp of the GPU in use (CuPy's current device)."""
    return _properties(require().cuda.runtime.getDevice())


@lru_cache(maxsize=None)
def _properties(device_id: int) -> dict:
    """cudaDeviceProp of one device, read once: kernels launched in timed loops ask for the SM count."""
    import cupy as cp
    return cp.cuda.runtime.getDeviceProperties(device_id)


def to_device(w_q):
    """A `kernels.quant.Quantized` with its arrays on the GPU, laid out as the GPU kernels read them, so
    that timed products neither re-upload nor re-arrange it: int8 codes column-major (W^T row-major, the
    [out, in] layout of a Linear layer's weight that int8 tensor-core GEMMs take), and a packed int4
    weight's scales and zeros per (group, column), symmetric codes getting their offset of 8 as a zero."""
    cp = require()

    def dev(a, dtype=None):
        return None if a is None else cp.asarray(a, dtype=dtype)
    if w_q.packed and w_q.granularity == "group":
        k, n = w_q.shape
        scale = w_q.scale.reshape(n, -1).T
        zero = np.full(scale.shape, 8.0) if w_q.zero is None else w_q.zero.reshape(n, -1).T
        return dataclasses.replace(w_q, codes=dev(w_q.codes), scale=dev(np.ascontiguousarray(scale), cp.float32),
                                   zero=dev(np.ascontiguousarray(zero), cp.float32), codebook=dev(w_q.codebook, cp.float32))
    codes = cp.asfortranarray(dev(w_q.codes)) if w_q.bits == 8 and w_q.codes.ndim == 2 else dev(w_q.codes)
    return dataclasses.replace(w_q, codes=codes, scale=dev(w_q.scale, cp.float32), zero=dev(w_q.zero, cp.float32),
                               codebook=dev(w_q.codebook, cp.float32))
