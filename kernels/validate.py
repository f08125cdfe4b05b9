"""Run every kernel over decode-like and prefill-like shapes, time it, predict the same work with the
roofline on the device's hardware spec, and say how far apart they are and why.

Each case names its kernel `<family>_<kernel>_<backend>` (families: attention, quant, gemm, sampling), runs a
real kernel, and lists the roofline ops (`infersim.roofline.ops`) that describe the same work. The CPU
kernels compute in fp32, so their ops' bytes are widened from the fp16 the roofline assumes for
activations. On a GPU, prefill attention runs the tensor-core kernel on fp16 (the roofline's own bytes and
peak), and the CUDA kernels' cases carry their launch (`kernels.launch`: grid, units, kernels launched), so
that a kernel on fewer blocks than SMs is predicted on the share of the chip it occupies. Where prediction and measurement differ by more than 25%, the row names the term that
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

from . import attention as att
from . import quant as qk
from . import sampling as smp
from .cuda.attention import (MMA_BLOCKS_PER_SM, PAGED_BLOCKS_PER_SM, paged_decode_thread_blocks,
                             tensor_core_attention_thread_blocks)
from .cuda.quant import W4A16_FUSED_ROWS
from .cuda.sampling import top_p_grid
from .device import to_device
from .launch import Launch, launch_predict

FAMILIES = ("attention", "quant", "gemm", "sampling")
PAGED_SPLIT_TOKENS = 512  # cached tokens per span of split-KV decode attention
TOLERANCE = 0.25


@dataclass
class Case:
    kernel: str
    shape: str
    run: object  # a callable doing the work once
    work: list  # roofline OpCosts of the same work
    launch: Launch | None = None  # the GPU kernel's grid and units; None: as the roofline times the ops


def widen(op_list: list, factor: float, dtype: str) -> list:
    """The same ops with activation/KV tensors of `factor` x the roofline's fp16 bytes, at `dtype`'s peak."""
    fields = ("act_read_bytes", "act_write_bytes", "kv_read_bytes", "kv_write_bytes", "l2_reread_bytes")
    return [dataclasses.replace(op, dtype=dtype, **{f: getattr(op, f) * factor for f in fields}) for op in op_list]


def causal_attention_work(hw: HardwareSpec, tokens: int, heads: int, kv_heads: int, head_dim: int,
                          flash: bool) -> list:
    """One sequence's causal attention over its own `tokens`, fp16 as the roofline has it (the tensor-core
    kernel's)."""
    return ops.attention(np.array([tokens]), np.array([0]), heads, kv_heads, head_dim, QuantSpec(), flash,
                         hw.attention_q_tile_tokens, hw.sram_per_sm_bytes)


def prefill_attention_work(hw: HardwareSpec, tokens: int, heads: int, kv_heads: int, head_dim: int,
                           flash: bool) -> list:
    """One sequence's causal attention over its own `tokens` (fp32 kernels)."""
    return widen(causal_attention_work(hw, tokens, heads, kv_heads, head_dim, flash), 2, "fp32")


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


def zipf_logits(batch: int, vocab: int, rng) -> np.ndarray:
    """Logits of a Zipf-like next-token distribution (probability ~ 1 / rank^1.1, ranks shuffled per
    row), as language models' are: top-p then keeps tens to hundreds of tokens, not most of them."""
    ranks = np.argsort(rng.random((batch, vocab)), axis=1) + 1
    return (-1.1 * np.log(ranks)).astype(np.float32)


@dataclass(frozen=True)
class Shapes:
    """The shapes one sweep runs its kernels at."""
    heads: int  # prefill attention: query heads, KV heads and head size
    kv_heads: int
    head_dim: int
    prefill_tokens: tuple  # a causal prefill of each length
    decode_batches: tuple  # paged decode attention: (sequences, cached tokens) pairs
    features: int  # a square linear layer's in = out features
    linear_tokens: tuple  # the token rows it multiplies
    vocab: int
    sampling_batches: tuple  # rows of logits
    # cuBLAS fp16 GEMMs of registry models' layers on one tensor-parallel rank: (label, model, ranks)
    gemm_models: tuple = ()
    gemm_tokens: tuple = ()  # the token rows each multiplies


# Llama-3.1-8B's layers, and Llama-3.1-70B's on one of four tensor-parallel GPUs
LLAMA_GEMM_MODELS = (("8b", "llama-3.1-8b", 1), ("70b-tp4", "llama-3.1-70b", 4))
# A layer's linear ops as the roofline names them (roofline.step.dense_layer_ops), and as the sweep labels them
_GEMM_LABELS = {"qkv_proj": "qkv", "o_proj": "o", "ffn_up": "up", "ffn_down": "down"}


_CPU_SHAPES = Shapes(heads=8, kv_heads=8, head_dim=64, prefill_tokens=(128, 256, 512, 1024),
                     decode_batches=((1, 512), (1, 4096), (8, 1024), (32, 1024), (32, 4096)), features=2048,
                     linear_tokens=(1, 16, 128, 512), vocab=32000, sampling_batches=(1, 16, 64))
# Llama-3-8B's: 32 query heads, 8 KV heads of 128 dimensions, 4096 features, a 128256-token vocabulary
_GPU_SHAPES = Shapes(heads=32, kv_heads=8, head_dim=128, prefill_tokens=(256, 512, 1024, 2048, 4096),
                     decode_batches=((1, 4096), (8, 2048), (32, 2048), (64, 4096), (128, 1024)), features=4096,
                     linear_tokens=(1, 16, 64, 256, 1024), vocab=128256, sampling_batches=(1, 16, 64, 256),
                     gemm_models=LLAMA_GEMM_MODELS, gemm_tokens=(1, 8, 64, 256, 1024, 2048, 8192))
# The sweep's shapes by array module, in full and for --quick
SHAPES = {
    "numpy": {False: _CPU_SHAPES,
              True: dataclasses.replace(_CPU_SHAPES, prefill_tokens=(128, 256), decode_batches=((1, 1024), (8, 1024)),
                                        features=1024, linear_tokens=(1, 64), sampling_batches=(1, 16))},
    "cupy": {False: _GPU_SHAPES,
             True: dataclasses.replace(_GPU_SHAPES, prefill_tokens=(512, 2048), decode_batches=((8, 2048), (64, 2048)),
                                       linear_tokens=(1, 256), sampling_batches=(1, 64), gemm_tokens=(1, 64, 2048))},
}


def sweep(hw: HardwareSpec, xp=np, quick: bool = False) -> list[Case]:
    """The validation sweep on the arrays of `xp`: on NumPy arrays the Numba kernels, with the NumPy
    references and greedy selection beside them; on CuPy arrays the CUDA kernels, with cuBLAS's fp16 GEMM
    (the unquantized baseline engines run) beside them."""
    on_gpu = xp is not np
    backend = "cupy" if on_gpu else "numba"
    shapes = SHAPES[xp.__name__][quick]
    rng, host_rng = xp.random.default_rng(0), np.random.default_rng(0)

    def normal(*shape):
        return rng.standard_normal(shape, dtype=xp.float32)
    cases = []
    h, kv, d = shapes.heads, shapes.kv_heads, shapes.head_dim
    for s in shapes.prefill_tokens:
        q, k, v = normal(1, h, s, d), normal(1, kv, s, d), normal(1, kv, s, d)
        shape = f"b1 h{h}{f' kv{kv}' if kv != h else ''} s{s} d{d} causal"
        if on_gpu:  # fp16 on tensor cores, as FlashAttention runs and the roofline assumes
            q, k, v = (x.astype(xp.float16) for x in (q, k, v))
            cases.append(Case("attention_mma_cupy", shape, lambda q=q, k=k, v=v: att.attention(q, k, v, True, backend),
                              causal_attention_work(hw, s, h, kv, d, True),
                              Launch(tensor_core_attention_thread_blocks(1, h, s), tensor_cores=True,
                                     blocks_per_sm=MMA_BLOCKS_PER_SM)))
        else:
            flash = prefill_attention_work(hw, s, h, kv, d, True)
            cases.append(Case("attention_tiled_numba", shape, lambda q=q, k=k, v=v: att.attention(q, k, v, True, backend),
                              flash))
            cases.append(Case("attention_tiled_numpy", shape, lambda q=q, k=k, v=v: att.attention(q, k, v, True, "numpy"),
                              flash))
            cases.append(Case("attention_naive_numpy", shape, lambda q=q, k=k, v=v: att.naive_attention(q, k, v, True),
                              prefill_attention_work(hw, s, h, kv, d, False)))
    h, kv, d, block = 32, 8, 128, 16
    for b, ctx in shapes.decode_batches:
        blocks = b * ctx // block
        k_cache, v_cache = normal(blocks, block, kv, d), normal(blocks, block, kv, d)
        tables = xp.asarray(host_rng.permutation(blocks).reshape(b, -1))
        lens = xp.full(b, ctx, dtype=xp.int64)
        qd = normal(b, h, d)
        grid = Launch(paged_decode_thread_blocks(b, h, kv, ctx, PAGED_SPLIT_TOKENS), tensor_cores=False, launches=2,
                      blocks_per_sm=PAGED_BLOCKS_PER_SM)
        cases.append(Case(f"attention_paged_{backend}", f"b{b} h{h} kv{kv} ctx{ctx} d{d}",
                          lambda a=(qd, k_cache, v_cache, tables, lens): att.paged_decode_attention(
                              *a, backend=backend, split_tokens=PAGED_SPLIT_TOKENS),
                          paged_decode_work(b, ctx, h, kv, d), grid if on_gpu else None))
    n = shapes.features
    w_host = (host_rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    w8, w4 = qk.quantize(w_host, 8, True, "channel"), qk.quantize(w_host, 4, False, "group", 128)
    w = xp.asarray(w_host)
    if on_gpu:
        w8, w4, w_fp16 = to_device(w8), to_device(w4), w.astype(xp.float16)
    for m in shapes.linear_tokens:
        x = normal(m, n)
        shape = f"m{m} k{n} n{n}"
        cases.append(Case(f"quant_fp32_{xp.__name__}", shape, lambda x=x: x @ w, linear_work("fp32", m, n, n)))
        if on_gpu:
            cases.append(Case("quant_fp16_cublas", shape, lambda x=x.astype(xp.float16): x @ w_fp16,
                              linear_work("fp16", m, n, n)))
        cases.append(Case(f"quant_w8a8_{backend}", shape, lambda x=x: qk.w8a8_matmul(x, w8, backend=backend),
                          linear_work("w8a8", m, n, n)))
        fp16_gemm = on_gpu and m > W4A16_FUSED_ROWS  # the GPU dequantizes many rows' weights for cuBLAS fp16
        cases.append(Case(f"quant_w4a16_{backend}", shape, lambda x=x: qk.w4a16_matmul(x, w4, backend=backend),
                          linear_work("w4a16" if fp16_gemm else "w4a16-fp32", m, n, n)))
    cases += llama_gemm_cases(shapes, normal, "cublas" if on_gpu else xp.__name__)
    for batch in shapes.sampling_batches:
        logits = xp.asarray(zipf_logits(batch, shapes.vocab, host_rng))
        shape = f"batch{batch} vocab{shapes.vocab}"
        grid = top_p_grid(batch, shapes.vocab, hw.sm_count)
        cases.append(Case(f"sampling_top_p_{backend}", shape,
                          lambda lg=logits: smp.process_logits(lg, top_p=0.9, backend=backend),
                          [ops.sampling(batch, shapes.vocab, "top_p")],
                          # one more launch: process_logits copies the logits before filtering them in place
                          Launch(grid.thread_blocks, tensor_cores=False, launches=grid.launches + 1,
                                 blocks_per_sm=grid.blocks_per_sm) if on_gpu else None))
        if not on_gpu:
            cases.append(Case("sampling_greedy_numpy", shape, lambda lg=logits: smp.greedy(lg),
                              [ops.sampling(batch, shapes.vocab, "greedy")]))
    return cases


def llama_gemm_cases(shapes: Shapes, normal, library: str) -> list[Case]:
    """fp16 GEMMs of the shapes' models' layers at each token count, through the array module's matmul
    (cuBLAS on CuPy arrays), against the roofline's own linear ops of a step of that many tokens
    (`dense_layer_ops`: the shapes the simulator prices). FP8 GEMMs are not among them: CuPy has no FP8
    matrix product (cuBLASLt's scaled FP8 GEMM needs another binding)."""
    from infersim.roofline import Parallelism, StepOptions, get_model
    from infersim.roofline.step import dense_layer_ops

    cases = []
    for label, model_name, ranks in shapes.gemm_models:
        model, options = get_model(model_name), StepOptions(parallel=Parallelism(ranks))
        layers = [[op for op in sum(dense_layer_ops(model, m, options), []) if op.name in _GEMM_LABELS]
                  for m in shapes.gemm_tokens]
        for column in zip(*layers):  # one linear layer at every token count
            k, n = column[0].gemm.k, column[0].gemm.n
            w = normal(k, n).astype("float16")
            for m, op in zip(shapes.gemm_tokens, column):
                x = normal(m, k).astype("float16")
                cases.append(Case(f"gemm_fp16_{library}", f"{label}_{_GEMM_LABELS[op.name]} m{m} k{k} n{n}",
                                  lambda x=x, w=w: x @ w, [op]))
    return cases


def predict(hw: HardwareSpec, work: list, launch: Launch | None = None) -> dict:
    """Roofline seconds of the ops, the three terms that make them up, and the dtype whose peak bounds
    the largest matrix product ("" for work without one). With the kernel's `launch`, the ops are timed on
    the SMs its grid occupies and the units it uses, one launch overhead per kernel (`kernels.launch`)."""
    products = [op for op in work if op.flops > 0]
    amounts = {"flops": sum(op.total_flops for op in work), "bytes": sum(op.bytes for op in work),
               "dtype": max(products, key=lambda op: op.flops).dtype if products else ""}
    if launch is not None:
        return {**launch_predict(hw, work, launch), **amounts}
    compute = sum(float(op_compute_s(hw, op)) for op in work)
    memory = sum(float(op_memory_s(hw, op)) for op in work)
    return {"predicted_s": sum(time_op(hw, op).time_s for op in work), "compute_s": compute, "memory_s": memory,
            "launch_s": hw.launch_overhead_s * len(work), **amounts}


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
               **predict(hw, case.work, case.launch), "measured_s": measured}
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
