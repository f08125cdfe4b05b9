"""CuPy GPU versions of the validating kernels, with the signatures of their CPU twins. CuPy is imported
only when a function here runs, so the package works without it; `available()` says whether it can.

The kernels are CUDA-core (SIMT) fp32 kernels: tiled attention with FlashAttention-2's work split and
online softmax (K/V tiles in shared memory, each warp's query rows and output slices in registers),
split-KV paged decode attention (Flash-Decoding), an int8 GEMM accumulating in int32 through shared-memory
tiles, a W4A16 GEMM that unpacks and dequantizes nibbles in its inner loop. They do not use tensor cores,
which is why `infersim validate --device gpu` compares them with the spec's fp32 (and int8) peaks and
reports how far they are from them; cuBLAS's fp16 GEMM is timed beside them against the tensor-core peak.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_REGISTRY_BY_NAME = (("H200", "h200"), ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("A100-SXM4-40GB", "a100-sxm-40gb"),
                     ("A100", "a100-sxm-80gb"), ("L40S", "l40s"), ("L4", "l4"), ("A10G", "a10g"), ("4090", "rtx-4090"))

# Both attention kernels are compiled per head size (-DHEAD_DIM=32, 64, 96 or 128), so that each lane's
# share of a row (HEAD_DIM / 32 values, dimensions lane, lane + 32, ...) lives in registers.
_ATTENTION = r"""
#define NEG_INF __int_as_float(0xff800000)
#define FULL 0xffffffffu
#define VEC (HEAD_DIM / 32)
#define ROWS 4                   // query rows per warp
#define WARPS 4
#define BLOCK_M (ROWS * WARPS)   // query rows per block
#define BLOCK_N 32               // keys per tile: one per lane for the scores
#define KPAD (HEAD_DIM + 4)      // padded K rows: lanes reading their own row as float4 hit distinct banks

extern "C" __global__ void attention_tiles(const float* q, const float* k, const float* v, float* out,
        int h, int kv_h, int s, int t, int causal) {
    __shared__ __align__(16) float qs[BLOCK_M][HEAD_DIM];
    __shared__ __align__(16) float ks[BLOCK_N][KPAD];
    __shared__ float vs[BLOCK_N][HEAD_DIM];
    int bh = blockIdx.y, bi = bh / h, hi = bh % h, kh = hi / (h / kv_h);
    int q0 = blockIdx.x * BLOCK_M, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int offset = t - s;
    const float* qb = q + (long long)bh * s * HEAD_DIM;
    const float* kb = k + ((long long)bi * kv_h + kh) * t * HEAD_DIM;
    const float* vb = v + ((long long)bi * kv_h + kh) * t * HEAD_DIM;
    float scale = rsqrtf((float)HEAD_DIM);
    for (int i = threadIdx.x; i < BLOCK_M * HEAD_DIM; i += blockDim.x) {
        int r = i / HEAD_DIM, x = i % HEAD_DIM;
        qs[r][x] = q0 + r < s ? qb[(long long)(q0 + r) * HEAD_DIM + x] * scale : 0.f;
    }
    float m[ROWS], l[ROWS], acc[ROWS][VEC];
    for (int r = 0; r < ROWS; ++r) {
        m[r] = NEG_INF; l[r] = 0.f;
        for (int c = 0; c < VEC; ++c) acc[r][c] = 0.f;
    }
    int k_end = causal ? min(t, q0 + BLOCK_M + offset) : t;  // causal: later keys are masked for every row
    for (int k0 = 0; k0 < k_end; k0 += BLOCK_N) {
        __syncthreads();  // nobody reads the previous tile any more (the first time: qs is written)
        for (int i = threadIdx.x; i < BLOCK_N * HEAD_DIM; i += blockDim.x) {
            int j = i / HEAD_DIM, x = i % HEAD_DIM;
            bool real = k0 + j < t;
            ks[j][x] = real ? kb[(long long)(k0 + j) * HEAD_DIM + x] : 0.f;
            vs[j][x] = real ? vb[(long long)(k0 + j) * HEAD_DIM + x] : 0.f;
        }
        __syncthreads();
        // S = Q K^T: lane j scores key k0 + j against the warp's ROWS query rows
        float sc[ROWS];
        for (int r = 0; r < ROWS; ++r) sc[r] = 0.f;
        const float4* krow = reinterpret_cast<const float4*>(ks[lane]);
        #pragma unroll 8
        for (int x4 = 0; x4 < HEAD_DIM / 4; ++x4) {
            float4 kk = krow[x4];
            #pragma unroll
            for (int r = 0; r < ROWS; ++r) {
                float4 qq = reinterpret_cast<const float4*>(qs[warp * ROWS + r])[x4];
                sc[r] += qq.x * kk.x + qq.y * kk.y + qq.z * kk.z + qq.w * kk.w;
            }
        }
        // online softmax (FlashAttention-2, Algorithm 1): the tile's row maximum and sum over the lanes
        int key = k0 + lane;
        #pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            int row = q0 + warp * ROWS + r;
            float sj = key < t && (!causal || key <= row + offset) ? sc[r] : NEG_INF;
            float mx = sj;
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, o));
            float m_new = fmaxf(m[r], mx);  // finite: key 0, in the first tile, is visible to every row
            float p = __expf(sj - m_new), total = p;
            for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(FULL, total, o);
            float alpha = __expf(m[r] - m_new);
            l[r] = l[r] * alpha + total;
            m[r] = m_new;
            sc[r] = p;
            for (int c = 0; c < VEC; ++c) acc[r][c] *= alpha;
        }
        // O += P V: lane owns output dimensions lane + 32 c; key j's weight comes from lane j
        #pragma unroll 4
        for (int j = 0; j < BLOCK_N; ++j) {
            float vv[VEC];
            for (int c = 0; c < VEC; ++c) vv[c] = vs[j][lane + 32 * c];
            #pragma unroll
            for (int r = 0; r < ROWS; ++r) {
                float pj = __shfl_sync(FULL, sc[r], j);
                for (int c = 0; c < VEC; ++c) acc[r][c] += pj * vv[c];
            }
        }
    }
    for (int r = 0; r < ROWS; ++r) {
        int row = q0 + warp * ROWS + r;
        if (row < s)
            for (int c = 0; c < VEC; ++c) out[((long long)bh * s + row) * HEAD_DIM + lane + 32 * c] = acc[r][c] / l[r];
    }
}
"""

_PAGED = r"""
#define NEG_INF __int_as_float(0xff800000)
#define FULL 0xffffffffu
#define VEC (HEAD_DIM / 32)
#define WARPS 4
#define TOK 4  // cached tokens a warp loads before it uses them, to keep several loads in flight

// Block (sequence x head, span): its warps take the span's tokens TOK at a time, a lane holding
// dimensions lane + 32 c of each K and V row (coalesced loads); a warp's partial softmax state is merged
// with the others' in shared memory and written per span for paged_combine.
extern "C" __global__ void paged_split(const float* q, const float* kc, const float* vc,
        const long long* tables, const long long* lens, float* m_part, float* l_part, float* acc_part,
        int h, int kv_h, int block, int max_blocks, int span) {
    __shared__ float ws_m[WARPS], ws_l[WARPS];
    __shared__ float ws_acc[WARPS][HEAD_DIM];
    int bh = blockIdx.x, si = blockIdx.y, spans = gridDim.y;
    int bi = bh / h, hi = bh % h, kh = hi / (h / kv_h);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    long long t0 = (long long)si * span, t1 = min(lens[bi], t0 + span);
    float scale = rsqrtf((float)HEAD_DIM), qv[VEC], acc[VEC];
    for (int c = 0; c < VEC; ++c) {
        qv[c] = q[(long long)bh * HEAD_DIM + lane + 32 * c] * scale;
        acc[c] = 0.f;
    }
    float m = NEG_INF, l = 0.f;
    for (long long j0 = t0 + warp * TOK; j0 < t1; j0 += WARPS * TOK) {
        float kr[TOK][VEC], vr[TOK][VEC], sc[TOK];
        #pragma unroll
        for (int u = 0; u < TOK; ++u) {
            long long j = j0 + u;
            if (j < t1) {
                long long row = ((tables[(long long)bi * max_blocks + j / block] * block + j % block) * kv_h + kh)
                                * HEAD_DIM;
                for (int c = 0; c < VEC; ++c) {
                    kr[u][c] = kc[row + lane + 32 * c];
                    vr[u][c] = vc[row + lane + 32 * c];
                }
            } else {
                for (int c = 0; c < VEC; ++c) kr[u][c] = vr[u][c] = 0.f;
            }
        }
        float m_new = m;
        #pragma unroll
        for (int u = 0; u < TOK; ++u) {
            float part = 0.f;
            for (int c = 0; c < VEC; ++c) part += qv[c] * kr[u][c];
            for (int o = 16; o > 0; o >>= 1) part += __shfl_xor_sync(FULL, part, o);
            sc[u] = j0 + u < t1 ? part : NEG_INF;
            m_new = fmaxf(m_new, sc[u]);  // finite: token j0 is real
        }
        float alpha = __expf(m - m_new);
        l *= alpha;
        for (int c = 0; c < VEC; ++c) acc[c] *= alpha;
        #pragma unroll
        for (int u = 0; u < TOK; ++u) {
            float p = __expf(sc[u] - m_new);
            l += p;
            for (int c = 0; c < VEC; ++c) acc[c] += p * vr[u][c];
        }
        m = m_new;
    }
    if (lane == 0) { ws_m[warp] = m; ws_l[warp] = l; }
    for (int c = 0; c < VEC; ++c) ws_acc[warp][lane + 32 * c] = acc[c];
    __syncthreads();
    if (warp == 0) {
        float m_all = NEG_INF, l_all = 0.f, o[VEC];
        for (int w = 0; w < WARPS; ++w) m_all = fmaxf(m_all, ws_m[w]);
        for (int c = 0; c < VEC; ++c) o[c] = 0.f;
        for (int w = 0; w < WARPS; ++w) {
            float weight = ws_m[w] == NEG_INF ? 0.f : __expf(ws_m[w] - m_all);  // a warp with no tokens: 0
            l_all += weight * ws_l[w];
            for (int c = 0; c < VEC; ++c) o[c] += weight * ws_acc[w][lane + 32 * c];
        }
        long long part = (long long)bh * spans + si;
        if (lane == 0) { m_part[part] = m_all; l_part[part] = l_all; }
        for (int c = 0; c < VEC; ++c) acc_part[part * HEAD_DIM + lane + 32 * c] = o[c];
    }
}

// One warp per (sequence x head): rescale the spans' partial outputs to their common maximum and sum.
extern "C" __global__ void paged_combine(const float* m_part, const float* l_part, const float* acc_part,
        float* out, int spans) {
    int bh = blockIdx.x, lane = threadIdx.x;
    float m_all = NEG_INF, l_all = 0.f, o[VEC];
    for (int si = 0; si < spans; ++si) m_all = fmaxf(m_all, m_part[(long long)bh * spans + si]);
    for (int c = 0; c < VEC; ++c) o[c] = 0.f;
    for (int si = 0; si < spans; ++si) {
        long long part = (long long)bh * spans + si;
        float weight = m_part[part] == NEG_INF ? 0.f : __expf(m_part[part] - m_all);  // an empty span: 0
        l_all += weight * l_part[part];
        for (int c = 0; c < VEC; ++c) o[c] += weight * acc_part[part * HEAD_DIM + lane + 32 * c];
    }
    for (int c = 0; c < VEC; ++c) out[(long long)bh * HEAD_DIM + lane + 32 * c] = o[c] / l_all;
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


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether CuPy and a GPU are here; asked once per process, as the backend dispatch asks it on every
    call, inside timed GPU runs too."""
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


@lru_cache(maxsize=None)
def _kernel(source: str, name: str, head_dim: int = 0):
    import cupy as cp
    options = ("--use_fast_math",) + ((f"-DHEAD_DIM={head_dim}",) if head_dim else ())
    return cp.RawKernel(source, name, options=options)


def _check_head_dim(d: int) -> None:
    if d % 32 or not 32 <= d <= 128:
        raise ValueError(f"the GPU attention kernels take head_dim 32, 64, 96 or 128, got {d}")


def attention(q, k, v, causal: bool = True):
    """Exact attention of CuPy fp32 arrays (see kernels.attention): FlashAttention-2's split, a block per
    16 query rows of one head walking 32-key tiles of K and V through shared memory, the online softmax
    in registers; causal masks end-aligned."""
    b, h, s, d = q.shape
    kv_h, t = k.shape[1], k.shape[2]
    _check_head_dim(d)
    if h % kv_h:
        raise ValueError(f"heads={h} must be a multiple of kv_heads={kv_h}")
    import cupy as cp
    out = cp.empty((b, h, s, d), dtype=cp.float32)
    _kernel(_ATTENTION, "attention_tiles", d)(
        ((s + 15) // 16, b * h), (128,),
        (cp.ascontiguousarray(q, cp.float32), cp.ascontiguousarray(k, cp.float32), cp.ascontiguousarray(v, cp.float32),
         out, np.int32(h), np.int32(kv_h), np.int32(s), np.int32(t), np.int32(causal)))
    return out


def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, split_tokens: int = 256):
    """Decode attention through a block table (see kernels.attention), split-KV as Flash-Decoding does:
    a block per (sequence, head, span of split_tokens cached tokens), then a pass merging the spans. The
    span count comes from the block table's width, so nothing is read back from the GPU."""
    b, h, d = q.shape
    _check_head_dim(d)
    import cupy as cp
    block, kv_h = k_cache.shape[1], k_cache.shape[2]
    spans = (block_tables.shape[1] * block + split_tokens - 1) // split_tokens
    m_part = cp.empty(b * h * spans, dtype=cp.float32)
    l_part = cp.empty_like(m_part)
    acc_part = cp.empty(b * h * spans * d, dtype=cp.float32)
    out = cp.empty((b, h, d), dtype=cp.float32)
    _kernel(_PAGED, "paged_split", d)(
        (b * h, spans), (128,),
        (cp.ascontiguousarray(q, cp.float32), cp.ascontiguousarray(k_cache, cp.float32),
         cp.ascontiguousarray(v_cache, cp.float32), cp.ascontiguousarray(block_tables, cp.int64),
         cp.ascontiguousarray(context_lens, cp.int64), m_part, l_part, acc_part, np.int32(h), np.int32(kv_h),
         np.int32(block), np.int32(block_tables.shape[1]), np.int32(split_tokens)))
    _kernel(_PAGED, "paged_combine", d)((b * h,), (32,), (m_part, l_part, acc_part, out, np.int32(spans)))
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


def require() -> None:
    """Raise a one-line error unless CuPy and a GPU are here (what backend="cupy" needs)."""
    if not available():
        raise ValueError("backend 'cupy' needs CuPy and a CUDA GPU (pip install 'infersim[gpu]'); "
                         "use backend 'numba' or 'numpy' here")


def to_device(w_q):
    """A `kernels.quant.Quantized` with its arrays on the GPU, so that timed products do not re-upload it."""
    import dataclasses

    import cupy as cp

    def dev(a, dtype=None):
        return None if a is None else cp.asarray(a, dtype=dtype)
    return dataclasses.replace(w_q, codes=dev(w_q.codes), scale=dev(w_q.scale, cp.float32),
                               zero=dev(w_q.zero, cp.float32), codebook=dev(w_q.codebook, cp.float32))


def w8a8_matmul(x, w_q, x_granularity: str = "token"):
    """int8 activations (per token or per tensor) x symmetric int8 weights (per channel or per tensor),
    int32 accumulation, rescaled (see kernels.quant.w8a8_matmul); w_q's arrays on the GPU."""
    import cupy as cp
    x = cp.asarray(x, dtype=cp.float32)
    absmax = cp.abs(x).max(axis=1, keepdims=True) if x_granularity == "token" else cp.abs(x).max().reshape(1, 1)
    sx = cp.maximum(absmax, 1e-12) / 127
    xq = cp.clip(cp.rint(x / sx), -127, 127).astype(cp.int8)
    sw = w_q.scale.reshape(1, -1) if w_q.granularity == "channel" else w_q.scale.reshape(1, 1)
    return int8_gemm(xq, w_q.codes).astype(cp.float32) * sx * sw


def w4a16_matmul(x, w_q):
    """fp32 activations x packed int4 group-quantized weights, dequantized in the kernel's inner loop (see
    kernels.quant.w4a16_matmul); w_q's arrays on the GPU, one scale (and zero) per (column, group)."""
    import cupy as cp
    m, k = x.shape
    n = w_q.codes.shape[1]
    out = cp.empty((m, n), dtype=cp.float32)
    zero = w_q.zero if w_q.zero is not None else cp.zeros_like(w_q.scale)
    _kernel(_W4A16, "w4a16")(((n + 127) // 128, m), (128,),
                             (cp.ascontiguousarray(x, cp.float32), cp.ascontiguousarray(w_q.codes),
                              cp.ascontiguousarray(w_q.scale, cp.float32), cp.ascontiguousarray(zero, cp.float32), out,
                              np.int32(m), np.int32(n), np.int32(k), np.int32(w_q.group_size),
                              np.int32(w_q.zero is None)))
    return out


def top_p_filter(logits, p: float, min_tokens_to_keep: int = 1):
    """transformers' top-p on the GPU with CuPy's sort (see kernels.sampling.top_p_filter)."""
    import cupy as cp
    order = cp.argsort(logits, axis=-1)
    sorted_logits = cp.take_along_axis(logits, order, axis=-1)
    e = cp.exp(sorted_logits - sorted_logits[:, -1:])
    cumulative = cp.cumsum(e / e.sum(axis=-1, keepdims=True), axis=-1)
    remove = cumulative <= 1 - p
    remove[:, -min_tokens_to_keep:] = False
    out = logits.copy()
    out[cp.arange(logits.shape[0])[:, None], order] = cp.where(remove, -cp.inf, sorted_logits)
    return out


def process_logits(logits, context_ids, repetition: float, temperature: float, top_k: int, top_p: float,
                   min_tokens_to_keep: int):
    """transformers' processors in its order on CuPy arrays (see kernels.sampling.process_logits)."""
    import cupy as cp
    out = cp.array(logits, dtype=cp.float32)  # a copy: the caller's logits stay as they were
    if repetition != 1.0 and context_ids is not None:
        context = cp.asarray(context_ids)
        for b in range(out.shape[0]):
            ids = cp.unique(context[b][context[b] >= 0])  # a token penalised once however often it occurs
            score = out[b, ids]
            out[b, ids] = cp.where(score < 0, score * repetition, score / repetition)
    if temperature != 1.0:
        out /= cp.float32(temperature)
    if top_k > 0:
        k = min(max(top_k, min_tokens_to_keep), out.shape[1])
        kth = -cp.partition(-out, k - 1, axis=1)[:, k - 1:k]
        out = cp.where(out < kth, cp.float32(-cp.inf), out)
    if top_p < 1.0:
        out = top_p_filter(out, top_p, min_tokens_to_keep)
    return out


def gpu_cases(hw, quick: bool = False) -> list:
    """The validation sweep on the GPU: the CPU sweep's kernels at GPU-sized shapes."""
    import cupy as cp

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
                          linear_work("w4a16", m, k_in, n_out)))
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
