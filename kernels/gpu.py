"""The GPU validation sweep and GPU calibration; the CUDA kernels live in `cuda/`, the GPU in use in
`device.py`."""
from __future__ import annotations

import math

import numpy as np

from .cuda.compile import compiled
from .cuda.quant import W4A16_FUSED_ROWS
from .device import registry_name, require, to_device


def gpu_cases(hw, quick: bool = False) -> list:
    """The validation sweep on the GPU: the CPU sweep's kernels at GPU-sized shapes."""
    cp = require()

    from infersim.roofline import ops

    from . import attention as att
    from . import quant as qk
    from . import sampling as smp
    from .validate import Case, linear_work, paged_decode_work, prefill_attention_work
    rng = cp.random.default_rng(0)
    cases = []
    for s in ((512, 2048) if quick else (256, 512, 1024, 2048, 4096)):
        b, h, d = 1, 32, 128
        q = rng.standard_normal((b, h, s, d), dtype=cp.float32)
        k = rng.standard_normal((b, 8, s, d), dtype=cp.float32)
        v = rng.standard_normal((b, 8, s, d), dtype=cp.float32)
        cases.append(Case("attention_tiled_cupy", f"b{b} h{h} kv8 s{s} d{d} causal",
                          lambda q=q, k=k, v=v: att.attention(q, k, v, True, "cupy"), prefill_attention_work(hw, s, h, 8, d, True)))
    for b, ctx in ((8, 2048), (64, 2048)) if quick else ((1, 4096), (8, 2048), (32, 2048), (64, 4096), (128, 1024)):
        h, kv, d, block = 32, 8, 128, 16
        per_seq = ctx // block
        kc = rng.standard_normal((b * per_seq, block, kv, d), dtype=cp.float32)
        vc = rng.standard_normal((b * per_seq, block, kv, d), dtype=cp.float32)
        tables = cp.asarray(np.random.default_rng(0).permutation(b * per_seq).reshape(b, per_seq))
        lens = cp.full(b, ctx, dtype=cp.int64)
        qd = rng.standard_normal((b, h, d), dtype=cp.float32)
        cases.append(Case("attention_paged_cupy", f"b{b} h{h} kv{kv} ctx{ctx} d{d}",
                          lambda a=(qd, kc, vc, tables, lens): att.paged_decode_attention(*a, backend="cupy"),
                          paged_decode_work(b, ctx, h, kv, d)))
    k_in = n_out = 4096
    w = (np.random.default_rng(1).standard_normal((k_in, n_out)) / math.sqrt(k_in)).astype(np.float32)
    w8, w4 = to_device(qk.quantize(w, 8, True, "channel")), to_device(qk.quantize(w, 4, False, "group", 128))
    w_gpu = cp.asarray(w)
    w_fp16 = w_gpu.astype(cp.float16)  # cuBLAS on tensor cores: the unquantized baseline engines run
    for m in ((1, 256) if quick else (1, 16, 64, 256, 1024)):
        x = rng.standard_normal((m, k_in), dtype=cp.float32)
        shape = f"m{m} k{k_in} n{n_out}"
        cases.append(Case("quant_fp32_cupy", shape, lambda x=x: x @ w_gpu, linear_work("fp32", m, k_in, n_out)))
        cases.append(Case("quant_fp16_cublas", shape, lambda x=x.astype(cp.float16): x @ w_fp16,
                          linear_work("fp16", m, k_in, n_out)))
        cases.append(Case("quant_w8a8_cupy", shape, lambda x=x: qk.w8a8_matmul(x, w8, backend="cupy"),
                          linear_work("w8a8", m, k_in, n_out)))
        cases.append(Case("quant_w4a16_cupy", shape,
                          lambda x=x: qk.w4a16_matmul(x, w4, backend="cupy"),
                          linear_work("w4a16-fp32" if m <= W4A16_FUSED_ROWS else "w4a16", m, k_in, n_out)))
    for batch in ((1, 64) if quick else (1, 16, 64, 256)):
        logits = rng.standard_normal((batch, 128256), dtype=cp.float32)
        cases.append(Case("sampling_top_p_cupy", f"batch{batch} vocab128256", lambda lg=logits: smp.process_logits(lg, top_p=0.9, backend="cupy"),
                          [ops.sampling(batch, 128256, "top_p")]))
    return cases


def calibrate_gpu(progress=lambda text: None):
    """Measure the GPU in use and return its registry spec with the efficiency factors and the exp rate
    set from the measurements: fp16 GEMM FLOP/s (CuPy/cuBLAS, 8192^3) over the datasheet peak, device copy
    bandwidth over the datasheet bandwidth, compute-bound exponentials per second, an empty kernel's time."""
    import dataclasses

    from infersim.roofline import get_hardware

    from .measure import gpu_median_time_s
    cp = require()
    base = get_hardware(registry_name())
    n = 8192
    a = cp.ones((n, n), dtype=cp.float16)
    # GEMM and copy: long single launches, timed eagerly (graph replays of the copy ran slower)
    gemm = 2 * n ** 3 / gpu_median_time_s(lambda: a @ a, repeats=10, graph=False)
    progress(f"  fp16 GEMM: {gemm / 1e12:.0f} TFLOP/s ({gemm / base.peak('fp16'):.2f} of the datasheet)")
    big = cp.empty(1 << 28, dtype=cp.float32)  # 1 GiB
    out = cp.empty_like(big)
    copy = 2 * big.nbytes / gpu_median_time_s(lambda: cp.copyto(out, big), repeats=10, graph=False)
    progress(f"  copy: {copy / 1e12:.2f} TB/s ({copy / base.memory_bandwidth_bytes_per_s:.2f} of the datasheet)")
    x = cp.zeros(1 << 22, dtype=cp.float32)
    kernel = compiled("exp_loop.cu", "exp_loop")
    repeats = 256
    exp_rate = x.size * repeats / gpu_median_time_s(
        lambda: kernel(((x.size + 255) // 256,), (256,), (x, np.int32(x.size), np.int32(repeats))), repeats=10)
    progress(f"  exp: {exp_rate / 1e12:.2f} T/s")
    empty = cp.zeros(1, dtype=cp.float32)
    launch = gpu_median_time_s(lambda: kernel((1,), (1,), (empty, np.int32(1), np.int32(0))), repeats=50)
    progress(f"  kernel launch: {launch * 1e6:.1f} us")
    return dataclasses.replace(
        base, name=f"{base.name}-calibrated", compute_efficiency=min(1.0, gemm / base.peak("fp16")),
        memory_efficiency=min(1.0, copy / base.memory_bandwidth_bytes_per_s), special_function_per_s=exp_rate,
        launch_overhead_s=launch, source=f"{base.source}; efficiencies measured by infersim calibrate --device gpu")
