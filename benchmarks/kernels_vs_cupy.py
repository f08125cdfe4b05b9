"""The CuPy GPU kernels against CuPy's own library code (cuBLAS, CuPy's sort and reductions) on the same
shapes, with achieved TFLOP/s and TB/s against the calibrated GPU's peaks. Needs CuPy and a CUDA GPU.

    python benchmarks/kernels_vs_cupy.py [--out benchmarks/results/kernels_gpu.json]

Pairs: tiled attention vs naive attention (cuBLAS batched matmuls and a softmax, the score matrix in
memory); paged decode attention vs gathering the blocks into dense K/V and the same naive attention;
the W8A8 path (cuBLAS int8 GEMM and our quantize/rescale kernels) and both W4A16 paths (the fused kernel,
and dequantize + cuBLAS fp16) vs cuBLAS's fp16 GEMM on unquantized weights; sort-free top-p vs top-p by
CuPy's sort and cumulative sum. The W4A16 rows at several token counts place the crossover that
kernels.cuda.quant.W4A16_FUSED_ROWS encodes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def sorted_top_p(cp, logits, p: float):
    """Top-p as transformers writes it: sort, softmax, cumulative sum, scatter back."""
    order = cp.argsort(logits, axis=-1)
    ordered = cp.take_along_axis(logits, order, axis=-1)
    e = cp.exp(ordered - ordered[:, -1:])
    remove = cp.cumsum(e / e.sum(axis=-1, keepdims=True), axis=-1) <= 1 - p
    remove[:, -1:] = False
    out = logits.copy()
    out[cp.arange(logits.shape[0])[:, None], order] = cp.where(remove, np.float32(-np.inf), ordered)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/kernels_gpu.json")
    args = ap.parse_args()
    import cupy as cp

    from infersim.kernels import attention as att
    from infersim.kernels import quant as qk
    from infersim.kernels import sampling as smp
    from infersim.kernels.calibrate import calibrate_gpu
    from infersim.kernels.cuda import quant as cuda_quant
    from infersim.kernels.device import to_device
    from infersim.kernels.measure import gpu_median_time_s
    hw = calibrate_gpu(print)
    peaks = {"fp16_tflops": hw.peak("fp16") * hw.compute_efficiency / 1e12,
             "fp32_tflops": hw.peak("fp32") * hw.compute_efficiency / 1e12,
             "bandwidth_tbs": hw.memory_bandwidth_bytes_per_s * hw.memory_efficiency / 1e12}
    rng = cp.random.default_rng(0)
    rows = []

    def pair(name, shape, flops, nbytes, ours, theirs, baseline):
        t_ours, t_theirs = gpu_median_time_s(ours), gpu_median_time_s(theirs)
        rows.append({"kernel": name, "shape": shape, "ours_s": t_ours, "baseline": baseline, "baseline_s": t_theirs,
                     "speedup": t_theirs / t_ours, "ours_tflops": flops / t_ours / 1e12,
                     "ours_tbs": nbytes / t_ours / 1e12})
        print(f"{name:24s} {shape:26s} ours {t_ours * 1e6:9.1f} us ({flops / t_ours / 1e12:6.1f} TFLOP/s, "
              f"{nbytes / t_ours / 1e12:5.2f} TB/s)  {baseline} {t_theirs * 1e6:9.1f} us -> {t_theirs / t_ours:6.2f}x")

    for s in (512, 2048):
        q = rng.standard_normal((1, 32, s, 128), dtype=cp.float32)
        k, v = (rng.standard_normal((1, 8, s, 128), dtype=cp.float32) for _ in range(2))
        pair("attention (causal)", f"h32 kv8 s{s} d128", 2 * 2 * 32 * 128 * s * (s + 1) / 2, 4 * 128 * s * (32 * 2 + 16),
             lambda: att.attention(q, k, v, True, "cupy"), lambda: att.naive_attention(q, k, v, True), "cupy naive")
    for b, ctx in ((1, 4096), (64, 2048)):
        blocks = b * ctx // 16
        kc, vc = (rng.standard_normal((blocks, 16, 8, 128), dtype=cp.float32) for _ in range(2))
        tables = cp.asarray(np.random.default_rng(0).permutation(blocks).reshape(b, -1))
        lens = cp.full(b, ctx, dtype=cp.int64)
        qd = rng.standard_normal((b, 32, 128), dtype=cp.float32)

        def gathered(qd=qd, kc=kc, vc=vc, tables=tables, b=b):
            dense_k = kc[tables].reshape(b, -1, 8, 128).transpose(0, 2, 1, 3)
            dense_v = vc[tables].reshape(b, -1, 8, 128).transpose(0, 2, 1, 3)
            return att.naive_attention(qd[:, :, None, :], dense_k, dense_v, False)
        pair("paged decode attention", f"b{b} h32 kv8 ctx{ctx} d128", 4 * 128 * 32 * b * ctx, 2 * b * ctx * 8 * 128 * 4,
             lambda a=(qd, kc, vc, tables, lens): att.paged_decode_attention(*a, backend="cupy"), gathered,
             "gather + cupy naive")
    k_in = n_out = 4096
    w = (np.random.default_rng(1).standard_normal((k_in, n_out)) / 64).astype(np.float32)
    w8, w4 = to_device(qk.quantize(w, 8, True, "channel")), to_device(qk.quantize(w, 4, False, "group", 128))
    w16 = cp.asarray(w, dtype=cp.float16)
    for m in (1, 2, 4, 8, 16, 64, 256, 1024):
        x = rng.standard_normal((m, k_in), dtype=cp.float32)
        x16 = x.astype(cp.float16)
        flops, shape = 2 * m * k_in * n_out, f"m{m} k{k_in} n{n_out}"
        if m in (1, 16, 256, 1024):
            pair("w8a8 gemm", shape, flops, k_in * n_out + 5 * m * (k_in + n_out),
                 lambda x=x: qk.w8a8_matmul(x, w8, backend="cupy"), lambda x16=x16: x16 @ w16, "cublas fp16")
        pair("w4a16 fused", shape, flops, k_in * n_out / 2 + 4 * m * (k_in + n_out),
             lambda x=x: cuda_quant.w4a16_matmul(x, w4, fused=True), lambda x16=x16: x16 @ w16, "cublas fp16")
        pair("w4a16 dequant+cublas", shape, flops, k_in * n_out * 4.5 + 2 * m * k_in + 4 * m * n_out,
             lambda x=x: cuda_quant.w4a16_matmul(x, w4, fused=False), lambda x16=x16: x16 @ w16, "cublas fp16")
    for batch in (1, 64, 256):
        logits = rng.standard_normal((batch, 128256), dtype=cp.float32) * 3
        pair("top-p", f"batch{batch} vocab128256", 0, 2 * batch * 128256 * 4,
             lambda lg=logits: smp.process_logits(lg, top_p=0.9, backend="cupy"),
             lambda lg=logits: sorted_top_p(cp, lg, 0.9), "cupy sort")
    print(f"calibrated peaks: {peaks}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(), "peaks": peaks,
                               "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
