"""CuPy GPU versions of the validating kernels, with the signatures of their CPU twins. CuPy is imported
only when a function here runs, so the package works without it; `available()` says whether it can.

The kernels are plain CUDA-core (SIMT) fp32 kernels written for clarity: attention keeps one query row's
online softmax per thread (FlashAttention-2's recurrence), paged decode attention gives each (sequence,
head) a warp that splits the context and merges partial softmaxes with shuffles, the int8 GEMM
accumulates in int32 through shared-memory tiles, the W4A16 GEMM unpacks and dequantizes nibbles in its
inner loop. They do not use tensor cores, which is why `infersim validate --device gpu` compares them with
the spec's fp32 (and int8) peaks and reports how far they are from them.
"""
from __future__ import annotations

import math

import numpy as np

_REGISTRY_BY_NAME = (("H200", "h200"), ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("A100-SXM4-40GB", "a100-sxm-40gb"),
                     ("A100", "a100-sxm-80gb"), ("L40S", "l40s"), ("L4", "l4"), ("A10G", "a10g"), ("4090", "rtx-4090"))

_ATTENTION = r"""
#define NEG_INF __int_as_float(0xff800000)
extern "C" __global__ void attention_rows(const float* q, const float* k, const float* v, float* out,
        int b, int h, int kv_h, int s, int t, int d, int causal) {
    long row = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= (long)b * h * s) return;
    int qi = row % s; int hi = (row / s) % h; int bi = row / ((long)s * h);
    int kh = hi / (h / kv_h);
    const float* qr = q + row * d;
    const float* kb = k + ((long)bi * kv_h + kh) * t * d;
    const float* vb = v + ((long)bi * kv_h + kh) * t * d;
    float acc[128];
    for (int x = 0; x < d; ++x) acc[x] = 0.f;
    float m = NEG_INF, l = 0.f, scale = rsqrtf((float)d);
    int last = causal ? min(t, qi + (t - s) + 1) : t;
    for (int j = 0; j < last; ++j) {
        float sj = 0.f;
        for (int x = 0; x < d; ++x) sj += qr[x] * kb[(long)j * d + x];
        sj *= scale;
        float m_new = fmaxf(m, sj), alpha = __expf(m - m_new), p = __expf(sj - m_new);
        l = l * alpha + p;
        for (int x = 0; x < d; ++x) acc[x] = acc[x] * alpha + p * vb[(long)j * d + x];
        m = m_new;
    }
    for (int x = 0; x < d; ++x) out[row * d + x] = acc[x] / l;
}
"""

_PAGED = r"""
#define NEG_INF __int_as_float(0xff800000)
extern "C" __global__ void paged_decode(const float* q, const float* kc, const float* vc, const long* tables,
        const long* lens, float* out, int h, int kv_h, int d, int block, int max_blocks) {
    int bh = blockIdx.x; int bi = bh / h; int hi = bh % h; int kh = hi / (h / kv_h);
    int lane = threadIdx.x;
    const float* qr = q + (long)bh * d;
    float acc[128];
    for (int x = 0; x < d; ++x) acc[x] = 0.f;
    float m = NEG_INF, l = 0.f, scale = rsqrtf((float)d);
    long n = lens[bi];
    for (long j = lane; j < n; j += 32) {
        long blk = tables[(long)bi * max_blocks + j / block];
        const float* kr = kc + ((blk * block + j % block) * kv_h + kh) * d;
        const float* vr = vc + ((blk * block + j % block) * kv_h + kh) * d;
        float sj = 0.f;
        for (int x = 0; x < d; ++x) sj += qr[x] * kr[x];
        sj *= scale;
        float m_new = fmaxf(m, sj), alpha = __expf(m - m_new), p = __expf(sj - m_new);
        l = l * alpha + p;
        for (int x = 0; x < d; ++x) acc[x] = acc[x] * alpha + p * vr[x];
        m = m_new;
    }
    float m_all = m;
    for (int o = 16; o > 0; o >>= 1) m_all = fmaxf(m_all, __shfl_xor_sync(0xffffffff, m_all, o));
    float w = (m == NEG_INF) ? 0.f : __expf(m - m_all);
    float l_all = l * w;
    for (int o = 16; o > 0; o >>= 1) l_all += __shfl_xor_sync(0xffffffff, l_all, o);
    for (int x = 0; x < d; ++x) {
        float a = acc[x] * w;
        for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffff, a, o);
        if (lane == 0) out[(long)bh * d + x] = a / l_all;
    }
}
"""

_INT8_GEMM = r"""
#define TILE 16
extern "C" __global__ void int8_gemm(const signed char* a, const signed char* b, int* c, int m, int n, int k) {
    __shared__ int as[TILE][TILE]; __shared__ int bs[TILE][TILE];
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    int acc = 0;
    for (int p0 = 0; p0 < k; p0 += TILE) {
        as[threadIdx.y][threadIdx.x] = (row < m && p0 + threadIdx.x < k) ? a[(long)row * k + p0 + threadIdx.x] : 0;
        bs[threadIdx.y][threadIdx.x] = (col < n && p0 + threadIdx.y < k) ? b[(long)(p0 + threadIdx.y) * n + col] : 0;
        __syncthreads();
        for (int p = 0; p < TILE; ++p) acc += as[threadIdx.y][p] * bs[p][threadIdx.x];
        __syncthreads();
    }
    if (row < m && col < n) c[(long)row * n + col] = acc;
}
"""

_W4A16 = r"""
extern "C" __global__ void w4a16(const float* x, const unsigned char* packed, const float* scale,
        const float* zero, float* out, int m, int n, int k, int group, int symmetric) {
    int col = blockIdx.x * blockDim.x + threadIdx.x; int row = blockIdx.y;
    if (col >= n) return;
    float acc = 0.f;
    int groups = k / group;
    for (int p = 0; p < k; ++p) {
        unsigned char byte = packed[(long)(p / 2) * n + col];
        float code = (float)((p & 1) ? (byte >> 4) : (byte & 15));
        long g = (long)col * groups + p / group;
        float w = symmetric ? (code - 8.f) * scale[g] : (code - zero[g]) * scale[g];
        acc += x[(long)row * k + p] * w;
    }
    out[(long)row * n + col] = acc;
}
"""


_EXP_LOOP = r"""
extern "C" __global__ void exp_loop(float* x, int n, int repeats) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    for (int r = 0; r < repeats; ++r) v = __expf(v) * 1e-3f - 1.0f;  // stays in range; one MUFU exp each
    x[i] = v;
}
"""


def available() -> bool:
    try:
        import cupy as cp
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver or no device: all mean "no GPU here"
        return False


def registry_name() -> str:
    """The hardware registry entry of the GPU in use."""
    import cupy as cp
    name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    for fragment, entry in _REGISTRY_BY_NAME:
        if fragment in name:
            return entry
    from infersim.roofline.errors import SpecError
    raise SpecError("--hardware", f"the GPU '{name}' is not in the registry; pass a hardware YAML", name)


def _kernel(source: str, name: str):
    import cupy as cp
    return cp.RawKernel(source, name, options=("--use_fast_math",))


def attention(q, k, v, causal: bool = True):
    """Exact attention of CuPy fp32 arrays (see kernels.attention); head_dim <= 128."""
    import cupy as cp
    b, h, s, d = q.shape
    kv_h, t = k.shape[1], k.shape[2]
    if d > 128 or h % kv_h:
        raise ValueError(f"head_dim must be <= 128 and heads a multiple of kv_heads; got {q.shape}, {k.shape}")
    out = cp.empty((b, h, s, d), dtype=cp.float32)
    rows = b * h * s
    _kernel(_ATTENTION, "attention_rows")(((rows + 127) // 128,), (128,),
                                           (cp.ascontiguousarray(q, cp.float32), cp.ascontiguousarray(k, cp.float32),
                                            cp.ascontiguousarray(v, cp.float32), out, np.int32(b), np.int32(h),
                                            np.int32(kv_h), np.int32(s), np.int32(t), np.int32(d), np.int32(causal)))
    return out


def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens):
    """Decode attention through a block table (see kernels.attention); one warp per (sequence, head)."""
    import cupy as cp
    b, h, d = q.shape
    out = cp.empty((b, h, d), dtype=cp.float32)
    _kernel(_PAGED, "paged_decode")((b * h,), (32,),
                                    (cp.ascontiguousarray(q, cp.float32), cp.ascontiguousarray(k_cache, cp.float32),
                                     cp.ascontiguousarray(v_cache, cp.float32), cp.asarray(block_tables, cp.int64),
                                     cp.asarray(context_lens, cp.int64), out, np.int32(h), np.int32(k_cache.shape[2]),
                                     np.int32(d), np.int32(k_cache.shape[1]), np.int32(block_tables.shape[1])))
    return out


def int8_gemm(a, b):
    """int8 [m, k] x int8 [k, n] -> int32, accumulated in int32."""
    import cupy as cp
    m, k = a.shape
    n = b.shape[1]
    c = cp.empty((m, n), dtype=cp.int32)
    _kernel(_INT8_GEMM, "int8_gemm")(((n + 15) // 16, (m + 15) // 16), (16, 16),
                                     (cp.ascontiguousarray(a), cp.ascontiguousarray(b), c, np.int32(m), np.int32(n),
                                      np.int32(k)))
    return c


def w8a8_matmul(x, w_codes, w_scale):
    """Per-token int8 activations x per-channel int8 weights (see kernels.quant.w8a8_matmul)."""
    import cupy as cp
    sx = cp.maximum(cp.abs(x).max(axis=1, keepdims=True), 1e-12) / 127
    xq = cp.clip(cp.rint(x / sx), -127, 127).astype(cp.int8)
    return int8_gemm(xq, w_codes).astype(cp.float32) * sx * w_scale.reshape(1, -1)


def w4a16_matmul(x, packed, scale, zero, group_size: int, symmetric: bool):
    """fp32 activations x packed int4 group-quantized weights, dequantized in the inner loop."""
    import cupy as cp
    m, k = x.shape
    n = packed.shape[1]
    out = cp.empty((m, n), dtype=cp.float32)
    zero = zero if zero is not None else cp.zeros_like(scale)
    _kernel(_W4A16, "w4a16")(((n + 127) // 128, m), (128,),
                             (cp.ascontiguousarray(x, cp.float32), packed, cp.ascontiguousarray(scale, cp.float32),
                              cp.ascontiguousarray(zero, cp.float32), out, np.int32(m), np.int32(n), np.int32(k),
                              np.int32(group_size), np.int32(symmetric)))
    return out


def top_p_filter(logits, p: float):
    """transformers' top-p on the GPU with CuPy's sort (see kernels.sampling.top_p_filter)."""
    import cupy as cp
    order = cp.argsort(logits, axis=-1)
    sorted_logits = cp.take_along_axis(logits, order, axis=-1)
    e = cp.exp(sorted_logits - sorted_logits[:, -1:])
    cumulative = cp.cumsum(e / e.sum(axis=-1, keepdims=True), axis=-1)
    remove = cumulative <= 1 - p
    remove[:, -1] = False
    out = logits.copy()
    out[cp.arange(logits.shape[0])[:, None], order] = cp.where(remove, -cp.inf, sorted_logits)
    return out


def gpu_cases(hw, quick: bool = False) -> list:
    """The validation sweep on the GPU: the CPU sweep's kernels at GPU-sized shapes."""
    import cupy as cp

    from infersim.roofline import ops

    from . import quant as qk
    from .validate import Case, linear_work, paged_decode_work, prefill_attention_work
    rng = cp.random.default_rng(0)
    cases = []
    for s in ((512, 2048) if quick else (256, 512, 1024, 2048, 4096)):
        b, h, d = 1, 32, 128
        q = rng.standard_normal((b, h, s, d), dtype=cp.float32)
        k = rng.standard_normal((b, 8, s, d), dtype=cp.float32)
        v = rng.standard_normal((b, 8, s, d), dtype=cp.float32)
        cases.append(Case("attention_tiled_cupy", f"b{b} h{h} kv8 s{s} d{d} causal",
                          lambda q=q, k=k, v=v: attention(q, k, v, True), prefill_attention_work(hw, s, h, 8, d, True)))
    for b, ctx in ((8, 2048), (64, 2048)) if quick else ((1, 4096), (8, 2048), (32, 2048), (64, 4096), (128, 1024)):
        h, kv, d, block = 32, 8, 128, 16
        per_seq = ctx // block
        kc = rng.standard_normal((b * per_seq, block, kv, d), dtype=cp.float32)
        vc = rng.standard_normal((b * per_seq, block, kv, d), dtype=cp.float32)
        tables = cp.asarray(np.random.default_rng(0).permutation(b * per_seq).reshape(b, per_seq))
        lens = cp.full(b, ctx, dtype=cp.int64)
        qd = rng.standard_normal((b, h, d), dtype=cp.float32)
        cases.append(Case("attention_paged_cupy", f"b{b} h{h} kv{kv} ctx{ctx} d{d}",
                          lambda a=(qd, kc, vc, tables, lens): paged_decode_attention(*a),
                          paged_decode_work(b, ctx, h, kv, d)))
    k_in = n_out = 4096
    w = (np.random.default_rng(1).standard_normal((k_in, n_out)) / math.sqrt(k_in)).astype(np.float32)
    w8, w4 = qk.quantize(w, 8, True, "channel"), qk.quantize(w, 4, False, "group", 128)
    w8_codes, w8_scale = cp.asarray(w8.codes), cp.asarray(w8.scale.astype(np.float32))
    w4_codes, w4_scale, w4_zero = cp.asarray(w4.codes), cp.asarray(w4.scale.astype(np.float32)), cp.asarray(w4.zero.astype(np.float32))
    w_gpu = cp.asarray(w)
    for m in ((1, 256) if quick else (1, 16, 64, 256, 1024)):
        x = rng.standard_normal((m, k_in), dtype=cp.float32)
        shape = f"m{m} k{k_in} n{n_out}"
        cases.append(Case("quant_fp32_cupy", shape, lambda x=x: x @ w_gpu, linear_work("fp32", m, k_in, n_out)))
        cases.append(Case("quant_w8a8_cupy", shape, lambda x=x: w8a8_matmul(x, w8_codes, w8_scale),
                          linear_work("w8a8", m, k_in, n_out)))
        cases.append(Case("quant_w4a16_cupy", shape,
                          lambda x=x: w4a16_matmul(x, w4_codes, w4_scale, w4_zero, 128, False),
                          linear_work("w4a16", m, k_in, n_out)))
    for batch in ((1, 64) if quick else (1, 16, 64, 256)):
        logits = rng.standard_normal((batch, 128256), dtype=cp.float32)
        cases.append(Case("sampling_top_p_cupy", f"batch{batch} vocab128256", lambda lg=logits: top_p_filter(lg, 0.9),
                          [ops.sampling(batch, 128256, "top_p")]))
    return cases



def calibrate_gpu(progress=lambda text: None):
    """Measure the GPU in use and return its registry spec with the efficiency factors and the exp rate
    set from the measurements: fp16 GEMM FLOP/s (CuPy/cuBLAS, 8192^3) over the datasheet peak, device copy
    bandwidth over the datasheet bandwidth, compute-bound exponentials per second, an empty kernel's time."""
    import dataclasses

    import cupy as cp

    from infersim.roofline import get_hardware
    from .measure import gpu_median_time_s
    base = get_hardware(registry_name())
    n = 8192
    a = cp.ones((n, n), dtype=cp.float16)
    gemm = 2 * n ** 3 / gpu_median_time_s(lambda: a @ a, repeats=10)
    progress(f"  fp16 GEMM: {gemm / 1e12:.0f} TFLOP/s ({gemm / base.peak('fp16'):.2f} of the datasheet)")
    big = cp.empty(1 << 28, dtype=cp.float32)  # 1 GiB
    out = cp.empty_like(big)
    copy = 2 * big.nbytes / gpu_median_time_s(lambda: cp.copyto(out, big), repeats=10)
    progress(f"  copy: {copy / 1e12:.2f} TB/s ({copy / base.memory_bandwidth_bytes_per_s:.2f} of the datasheet)")
    x = cp.zeros(1 << 22, dtype=cp.float32)
    kernel = _kernel(_EXP_LOOP, "exp_loop")
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
