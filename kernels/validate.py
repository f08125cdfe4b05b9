"""Run every kernel over decode-like and prefill-like shapes, time it, predict the same work with the
roofline on the device's hardware spec, and say how far apart they are and why.

Each case names its kernel `<family>_<kernel>_<backend>` (families: attention, quant, sampling), runs a
real kernel, and lists the roofline ops (`infersim.roofline.ops`) that describe the same work. The CPU
kernels compute in fp32, so their ops' bytes are widened from the fp16 the roofline assumes for
activations. Where prediction and measurement differ by more than 25%, the row names the term that
dominates the prediction (compute, memory or launch overhead) and the efficiency of that term the
measurement implies, which is what to feed back into the hardware spec.
"""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infersim.roofline import ops
from infersim.roofline.hardware import HardwareSpec
from infersim.roofline.quant import QuantSpec, get_quant
from infersim.roofline.timing import op_compute_s, op_memory_s, time_op

FAMILIES = ("attention", "quant", "sampling")
TOLERANCE = 0.25


@dataclass
class Case:
    kernel: str
    shape: str
    run: object  # a callable doing the work once
    work: list  # roofline OpCosts of the same work


def widen(op_list: list, factor: float, dtype: str) -> list:
    """The same ops with activation/KV tensors of `factor` x the roofline's fp16 bytes, at `dtype`'s peak."""
    fields = ("act_read_bytes", "act_write_bytes", "kv_read_bytes", "kv_write_bytes", "l2_reread_bytes")
    return [dataclasses.replace(op, dtype=dtype, **{f: getattr(op, f) * factor for f in fields}) for op in op_list]


def prefill_attention_work(hw: HardwareSpec, tokens: int, heads: int, kv_heads: int, head_dim: int,
                           flash: bool) -> list:
    """One sequence's causal attention over its own `tokens` (fp32 kernels)."""
    return widen(ops.attention(np.array([tokens]), np.array([0]), heads, kv_heads, head_dim, QuantSpec(), flash,
                               hw.attention_q_tile_tokens, hw.sram_per_sm_bytes), 2, "fp32")


def paged_decode_work(batch: int, context: int, heads: int, kv_heads: int, head_dim: int) -> list:
    """One decode token per sequence attending to `context` keys (its own included; fp32 kernels)."""
    return widen(ops.decode_attention(batch, batch * (context - 1), context - 1, heads, kv_heads, head_dim,
                                      QuantSpec(), True), 2, "fp32")


def linear_work(scheme: str, m: int, k: int, n: int) -> list:
    """m x k activations times a k x n weight: `fp16` (the roofline's own unquantized linear), `fp32`
    (both operands twice its bytes), `w8a8` (int8 throughout), `w4a16` (the roofline's own: 4-bit
    weights, fp16 activations and math) or `w4a16-fp32` (4-bit weights, fp32 activations and math, as
    the CPU kernels and the GPU's fused decode kernel run it)."""
    if scheme == "fp16":
        return ops.linear("fp16", m, k, n, QuantSpec())
    if scheme == "fp32":
        return [dataclasses.replace(op, weight_bytes=op.weight_bytes * 2)
                for op in widen(ops.linear("fp32", m, k, n, QuantSpec()), 2, "fp32")]
    if scheme == "w8a8":
        return ops.linear("w8a8", m, k, n, get_quant("w8a8"))
    if scheme == "w4a16":
        return ops.linear("w4a16", m, k, n, get_quant("w4a16"))
    return widen(ops.linear("w4a16", m, k, n, get_quant("w4a16")), 2, "fp32")


def _qkv(rng, b, h, kv, s, t, d):
    return (rng.standard_normal((b, h, s, d), dtype=np.float32), rng.standard_normal((b, kv, t, d), dtype=np.float32),
            rng.standard_normal((b, kv, t, d), dtype=np.float32))


def zipf_logits(batch: int, vocab: int, rng) -> np.ndarray:
    """Logits of a Zipf-like next-token distribution (probability ~ 1 / rank^1.1, ranks shuffled per
    row), as language models' are: top-p then keeps tens to hundreds of tokens, not most of them."""
    ranks = np.argsort(rng.random((batch, vocab)), axis=1) + 1
    return (-1.1 * np.log(ranks)).astype(np.float32)


def cpu_cases(hw: HardwareSpec, quick: bool = False) -> list[Case]:
    from . import attention as att
    from . import quant as qk
    from . import sampling as smp
    rng = np.random.default_rng(0)
    cases = []
    for s in ((128, 256) if quick else (128, 256, 512, 1024)):
        b, h, d = 1, 8, 64
        q, k, v = _qkv(rng, b, h, h, s, s, d)
        flash, naive = (prefill_attention_work(hw, s, h, h, d, f) for f in (True, False))
        shape = f"b{b} h{h} s{s} d{d} causal"
        cases.append(Case("attention_tiled_numba", shape, lambda q=q, k=k, v=v: att.attention(q, k, v, True, "numba"),
                          flash))
        cases.append(Case("attention_tiled_numpy", shape, lambda q=q, k=k, v=v: att.attention(q, k, v, True, "numpy"),
                          flash))
        cases.append(Case("attention_naive_numpy", shape, lambda q=q, k=k, v=v: att.naive_attention(q, k, v, True),
                          naive))
    for b, ctx in ((1, 1024), (8, 1024)) if quick else ((1, 512), (1, 4096), (8, 1024), (32, 1024), (32, 4096)):
        h, kv, d, block = 32, 8, 128, 16
        blocks_per_seq = ctx // block
        k_cache = rng.standard_normal((b * blocks_per_seq, block, kv, d), dtype=np.float32)
        v_cache = rng.standard_normal((b * blocks_per_seq, block, kv, d), dtype=np.float32)
        tables = rng.permutation(b * blocks_per_seq).reshape(b, blocks_per_seq)
        lens = np.full(b, ctx)
        qd = rng.standard_normal((b, h, d), dtype=np.float32)
        cases.append(Case("attention_paged_numba", f"b{b} h{h} kv{kv} ctx{ctx} d{d}",
                          lambda a=(qd, k_cache, v_cache, tables, lens): att.paged_decode_attention(*a, backend="numba"),
                          paged_decode_work(b, ctx, h, kv, d)))
    k_in = n_out = 1024 if quick else 2048
    w = (rng.standard_normal((k_in, n_out)) / np.sqrt(k_in)).astype(np.float32)
    w8 = qk.quantize(w, 8, True, "channel")
    w4 = qk.quantize(w, 4, False, "group", 128)
    for m in ((1, 64) if quick else (1, 16, 128, 512)):
        x = rng.standard_normal((m, k_in), dtype=np.float32)
        shape = f"m{m} k{k_in} n{n_out}"
        cases.append(Case("quant_fp32_numpy", shape, lambda x=x: x @ w, linear_work("fp32", m, k_in, n_out)))
        cases.append(Case("quant_w8a8_numba", shape, lambda x=x: qk.w8a8_matmul(x, w8),
                          linear_work("w8a8", m, k_in, n_out)))
        cases.append(Case("quant_w4a16_numba", shape, lambda x=x: qk.w4a16_matmul(x, w4),
                          linear_work("w4a16-fp32", m, k_in, n_out)))
    vocab = 32000
    for batch in ((1, 16) if quick else (1, 16, 64)):
        logits = zipf_logits(batch, vocab, rng)
        shape = f"batch{batch} vocab{vocab}"
        cases.append(Case("sampling_top_p_numba", shape,
                          lambda lg=logits: smp.process_logits(lg, top_p=0.9, backend="numba"),
                          [ops.sampling(batch, vocab, "top_p")]))
        cases.append(Case("sampling_greedy_numpy", shape, lambda lg=logits: smp.greedy(lg),
                          [ops.sampling(batch, vocab, "greedy")]))
    return cases


def predict(hw: HardwareSpec, work: list) -> dict:
    """Roofline seconds of the ops, the three terms that make them up, and the dtype whose peak bounds
    the largest matrix product ("" for work without one)."""
    compute = sum(float(op_compute_s(hw, op)) for op in work)
    memory = sum(float(op_memory_s(hw, op)) for op in work)
    products = [op for op in work if op.flops > 0]
    return {"predicted_s": sum(time_op(hw, op).time_s for op in work), "compute_s": compute, "memory_s": memory,
            "launch_s": hw.launch_overhead_s * len(work), "flops": sum(op.total_flops for op in work),
            "bytes": sum(op.bytes for op in work),
            "dtype": max(products, key=lambda op: op.flops).dtype if products else ""}


def explain(row: dict) -> str:
    """Which predicted term dominates, and the efficiency of that term the measurement implies."""
    terms = {"compute": row["compute_s"], "memory": row["memory_s"], "launch overhead": row["launch_s"]}
    dominant = max(terms, key=terms.get)
    if abs(row["error"]) <= TOLERANCE:
        return ""
    implied = terms[dominant] / row["measured_s"]
    return f"{dominant}-dominated; measured time implies {implied:.2f}x the spec's effective {dominant} rate"


def validate(cases: list[Case], hw: HardwareSpec, measure, progress=lambda text: None) -> list[dict]:
    """One row per case; `measure` takes the cases' callables and returns their seconds. A case whose
    kernel fails (say, a GPU kernel that does not compile on this device) keeps its row, with NaN times
    and the error as its explanation, and the sweep goes on."""
    failures = {}
    for case in cases:
        try:
            case.run()
        except Exception as err:  # any failure of one kernel is reported in its row, not fatal to the rest
            failures[id(case)] = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            progress(f"{case.kernel} {case.shape}: {failures[id(case)]}")
    running = [case for case in cases if id(case) not in failures]
    seconds = dict(zip(map(id, running), measure([case.run for case in running])))
    rows = []
    for i, case in enumerate(cases):
        measured = seconds.get(id(case), float("nan"))
        row = {"kernel": case.kernel, "family": case.kernel.split("_")[0], "shape": case.shape,
               **predict(hw, case.work), "measured_s": measured}
        row["error"] = row["measured_s"] / row["predicted_s"] - 1
        row["achieved_flops_per_s"] = row["flops"] / measured
        row["achieved_bytes_per_s"] = row["bytes"] / measured
        row["explanation"] = failures.get(id(case)) or explain(row)
        rows.append(row)
        progress(f"[{i + 1}/{len(cases)}] {case.kernel:24s} {case.shape:28s} measured {measured * 1e6:10.1f} us, "
                 f"predicted {row['predicted_s'] * 1e6:10.1f} us ({100 * row['error']:+.0f}%)")
    return rows


def family_errors(rows: list[dict]) -> dict:
    """Median and 90th-percentile absolute relative error per kernel family."""
    out = {}
    for family in FAMILIES:
        err = np.abs([r["error"] for r in rows if r["family"] == family and not np.isnan(r["error"])])
        if len(err):
            out[family] = {"median_abs_err": float(np.median(err)), "p90_abs_err": float(np.percentile(err, 90)),
                           "kernels": int(len(err))}
    return out


CSV_COLUMNS = ("kernel", "family", "shape", "flops", "bytes", "dtype", "predicted_s", "measured_s", "error", "compute_s",
               "memory_s", "launch_s", "achieved_flops_per_s", "achieved_bytes_per_s", "explanation")


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
