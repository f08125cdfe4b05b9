"""The Numba kernels against NumPy's own (BLAS-backed) code on the same shapes, with achieved GFLOP/s and
GB/s against this machine's calibrated peaks.

    python benchmarks/kernels_vs_numpy.py [--hardware host.yaml] [--out benchmarks/results/kernels_cpu.json]

Pairs: tiled attention (Numba) vs naive attention (NumPy matmuls + softmax); paged decode attention
(Numba) vs gathering the blocks and the same NumPy attention; W8A8 int8 GEMM and W4A16 GEMM (Numba) vs an
fp32 BLAS matmul; top-p (Numba passes) vs the NumPy processors.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from infersim.kernels.pools import quiet_idle_blas_threads

quiet_idle_blas_threads()  # before NumPy loads OpenBLAS

import numpy as np  # noqa: E402

from infersim.kernels import attention as att
from infersim.kernels import quant as qk
from infersim.kernels import sampling as smp
from infersim.kernels.measure import median_time_s
from infersim.kernels.validate import zipf_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hardware", help="a calibrated host spec (default: calibrate now)")
    ap.add_argument("--out", default="benchmarks/results/kernels_cpu.json")
    args = ap.parse_args()
    from infersim.roofline import get_hardware
    if args.hardware:
        hw = get_hardware(args.hardware)
    else:
        from infersim.kernels.calibrate import calibrate_host
        hw = calibrate_host()
    rng = np.random.default_rng(0)
    rows = []

    def pair(name, shape, flops, nbytes, ours, theirs):
        t_ours, t_theirs = median_time_s(ours), median_time_s(theirs)
        rows.append({"kernel": name, "shape": shape, "numba_s": t_ours, "numpy_s": t_theirs,
                     "speedup_vs_numpy": t_theirs / t_ours, "numba_gflops": flops / t_ours / 1e9,
                     "numba_gbs": nbytes / t_ours / 1e9, "numpy_gflops": flops / t_theirs / 1e9})
        print(f"{name:22s} {shape:28s} numba {t_ours * 1e3:8.3f} ms ({flops / t_ours / 1e9:6.1f} GFLOP/s, "
              f"{nbytes / t_ours / 1e9:5.1f} GB/s)  numpy {t_theirs * 1e3:8.3f} ms  -> {t_theirs / t_ours:5.2f}x")

    for s in (256, 1024):
        q, k, v = (rng.standard_normal((1, 8, s, 64), dtype=np.float32) for _ in range(3))
        flops = 4 * 64 * 8 * s * (s + 1) / 2
        pair("attention (causal)", f"h8 s{s} d64", flops, 4 * 4 * 8 * s * 64,
             lambda: att.attention(q, k, v, True, "numba"), lambda: att.naive_attention(q, k, v, True))
    for b, ctx in ((1, 2048), (16, 2048)):
        kc = rng.standard_normal((b * ctx // 16, 16, 8, 128), dtype=np.float32)
        vc = rng.standard_normal((b * ctx // 16, 16, 8, 128), dtype=np.float32)
        tables = rng.permutation(b * ctx // 16).reshape(b, -1)
        lens = np.full(b, ctx)
        qd = rng.standard_normal((b, 32, 128), dtype=np.float32)
        pair("paged decode attention", f"b{b} h32 kv8 ctx{ctx} d128", 4 * 128 * 32 * b * ctx,
             2 * b * ctx * 8 * 128 * 4,
             lambda: att.paged_decode_attention(qd, kc, vc, tables, lens, "numba"),
             lambda: att.paged_decode_attention(qd, kc, vc, tables, lens, "numpy"))
    w = (rng.standard_normal((2048, 2048)) / 45).astype(np.float32)
    w8, w4 = qk.quantize(w, 8, True, "channel"), qk.quantize(w, 4, False, "group", 128)
    for m in (1, 128):
        x = rng.standard_normal((m, 2048), dtype=np.float32)
        flops = 2 * m * 2048 * 2048
        pair("w8a8 gemm", f"m{m} k2048 n2048", flops, 2048 * 2048 + 8 * m * 2048, lambda: qk.w8a8_matmul(x, w8),
             lambda: x @ w)
        pair("w4a16 gemm", f"m{m} k2048 n2048", flops, 2048 * 2048 / 2 + 8 * m * 2048, lambda: qk.w4a16_matmul(x, w4),
             lambda: x @ w)
    for batch in (1, 32):
        logits = zipf_logits(batch, 32000, rng)
        pair("top-p", f"batch{batch} vocab32000", batch * 32000 * 20, batch * 32000 * 8,
             lambda: smp.process_logits(logits, top_p=0.9, backend="numba"),
             lambda: smp.process_logits(logits, top_p=0.9))
    peaks = {"fp32_gflops": hw.peak("fp32") / 1e9, "int8_gops": hw.peak_flops_per_s.get("int8", 0) / 1e9,
             "bandwidth_gbs": hw.memory_bandwidth_bytes_per_s / 1e9}
    print(f"calibrated peaks: {peaks}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "hardware": hw.name,
                               "peaks": peaks, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
