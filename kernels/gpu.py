"""CuPy GPU versions of the validating kernels, with the signatures of their CPU twins. CuPy is imported
only when a function here runs, so the package works without it; `available()` says whether it can.

Attention runs on CUDA cores in fp32: tiled attention with FlashAttention-2's work split and online
softmax (K/V tiles in shared memory, each warp's query rows and output slices in registers), and
split-KV paged decode attention (Flash-Decoding) whose blocks serve all the query heads of a GQA group.
The quantized products run as engines run them: W8A8 as cuBLAS's int8 tensor-core GEMM between our
quantize and rescale kernels; W4A16 as a fused dequantizing GEMV kernel for a few token rows and as
dequantize + cuBLAS fp16 GEMM for many. Top-p is a sort-free radix select. `infersim validate --device
gpu` compares each with the roofline on the spec's peak for the dtype it computes in.
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

// Block (sequence x kv head x group of GROUP query heads sharing it, span): each cached K and V row is
// read once for the GROUP query heads that attend to it (GQA), not once per query head. Its warps take
// the span's tokens TOK at a time, a lane holding dimensions lane + 32 c of each K and V row (coalesced
// loads); a warp's partial softmax states are merged with the others' in shared memory and written per
// (sequence, query head, span) for paged_combine.
extern "C" __global__ void paged_split(const float* q, const float* kc, const float* vc,
        const long long* tables, const long long* lens, float* m_part, float* l_part, float* acc_part,
        int h, int kv_h, int block, int max_blocks, int span) {
    __shared__ float ws_m[WARPS][GROUP], ws_l[WARPS][GROUP];
    __shared__ float ws_acc[WARPS][GROUP][HEAD_DIM];
    int groups = h / kv_h / GROUP, si = blockIdx.y, spans = gridDim.y;
    int bi = blockIdx.x / (kv_h * groups), kh = blockIdx.x / groups % kv_h;
    int h0 = kh * (h / kv_h) + blockIdx.x % groups * GROUP;  // the block's first query head
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    long long t0 = (long long)si * span, t1 = min(lens[bi], t0 + span);
    float scale = rsqrtf((float)HEAD_DIM), qv[GROUP][VEC], acc[GROUP][VEC], m[GROUP], l[GROUP];
    #pragma unroll
    for (int g = 0; g < GROUP; ++g) {
        m[g] = NEG_INF; l[g] = 0.f;
        #pragma unroll
        for (int c = 0; c < VEC; ++c) {
            qv[g][c] = q[((long long)bi * h + h0 + g) * HEAD_DIM + lane + 32 * c] * scale;
            acc[g][c] = 0.f;
        }
    }
    for (long long j0 = t0 + warp * TOK; j0 < t1; j0 += WARPS * TOK) {
        float kr[TOK][VEC], vr[TOK][VEC];
        #pragma unroll
        for (int u = 0; u < TOK; ++u) {
            long long j = j0 + u;
            if (j < t1) {
                long long row = ((tables[(long long)bi * max_blocks + j / block] * block + j % block) * kv_h + kh)
                                * HEAD_DIM;
                #pragma unroll
                for (int c = 0; c < VEC; ++c) {
                    kr[u][c] = kc[row + lane + 32 * c];
                    vr[u][c] = vc[row + lane + 32 * c];
                }
            } else {
                #pragma unroll
                for (int c = 0; c < VEC; ++c) kr[u][c] = vr[u][c] = 0.f;
            }
        }
        #pragma unroll
        for (int g = 0; g < GROUP; ++g) {
            float sc[TOK], m_new = m[g];
            #pragma unroll
            for (int u = 0; u < TOK; ++u) {
                float part = 0.f;
                #pragma unroll
                for (int c = 0; c < VEC; ++c) part += qv[g][c] * kr[u][c];
                for (int o = 16; o > 0; o >>= 1) part += __shfl_xor_sync(FULL, part, o);
                sc[u] = j0 + u < t1 ? part : NEG_INF;
                m_new = fmaxf(m_new, sc[u]);  // finite: token j0 is real
            }
            float alpha = __expf(m[g] - m_new);
            l[g] *= alpha;
            #pragma unroll
            for (int c = 0; c < VEC; ++c) acc[g][c] *= alpha;
            #pragma unroll
            for (int u = 0; u < TOK; ++u) {
                float p = __expf(sc[u] - m_new);
                l[g] += p;
                #pragma unroll
                for (int c = 0; c < VEC; ++c) acc[g][c] += p * vr[u][c];
            }
            m[g] = m_new;
        }
    }
    #pragma unroll
    for (int g = 0; g < GROUP; ++g) {
        if (lane == 0) { ws_m[warp][g] = m[g]; ws_l[warp][g] = l[g]; }
        #pragma unroll
        for (int c = 0; c < VEC; ++c) ws_acc[warp][g][lane + 32 * c] = acc[g][c];
    }
    __syncthreads();
    for (int g = warp; g < GROUP; g += WARPS) {  // warp w merges query heads w, w + WARPS, ...
        float m_all = NEG_INF, l_all = 0.f, o[VEC];
        for (int w = 0; w < WARPS; ++w) m_all = fmaxf(m_all, ws_m[w][g]);
        for (int c = 0; c < VEC; ++c) o[c] = 0.f;
        for (int w = 0; w < WARPS; ++w) {
            float weight = ws_m[w][g] == NEG_INF ? 0.f : __expf(ws_m[w][g] - m_all);  // a warp with no tokens: 0
            l_all += weight * ws_l[w][g];
            for (int c = 0; c < VEC; ++c) o[c] += weight * ws_acc[w][g][lane + 32 * c];
        }
        long long part = ((long long)bi * h + h0 + g) * spans + si;
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

# W8A8's steps around cuBLAS's int8 GEMM, as kernels.quant computes them: a block per token row finds
# its absmax scale (or takes the tensor's) and rounds the row to int8; the int32 accumulators are
# rescaled by the row's and the column's (or the tensor's) scales.
_W8A8 = r"""
extern "C" __global__ void quantize_rows(const float* x, const float* tensor_absmax, signed char* q, float* sx,
        int k, int per_tensor) {
    __shared__ float warp_max[32];
    const float* row = x + (long long)blockIdx.x * k;
    float a = 0.f;
    if (per_tensor) {
        a = tensor_absmax[0];
    } else {
        for (int i = threadIdx.x; i < k; i += blockDim.x) a = fmaxf(a, fabsf(row[i]));
        for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
        if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = a;
        __syncthreads();
        for (int w = 0; w < blockDim.x / 32; ++w) a = fmaxf(a, warp_max[w]);
    }
    float s = fmaxf(a, 1e-12f) / 127.f;
    if (threadIdx.x == 0) sx[blockIdx.x] = s;
    for (int i = threadIdx.x; i < k; i += blockDim.x)
        q[(long long)blockIdx.x * k + i] = (signed char)fmaxf(-127.f, fminf(127.f, rintf(__fdiv_rn(row[i], s))));
}

extern "C" __global__ void rescale(const int* acc, const float* sx, const float* sw, float* out, int m, int n,
        int per_channel) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)m * n) return;
    out[i] = __fmul_rn(__fmul_rn((float)acc[i], sx[i / n]), sw[per_channel ? i % n : 0]);
}
"""

# W4A16 for a few token rows (decode), as the fused GEMV kernels of AWQ and GPTQ run it: each thread owns COLS adjacent output columns and ROWS token rows,
# streams its columns' packed codes (one 8-byte load per pair of k rows), dequantizes them in registers
# and accumulates in fp32; the k range is split across blocks (split-K) whose partial sums are added
# atomically, so that a single row still fills the GPU. Compiled per ROWS (1, 2, 4).
_W4A16 = r"""
#define COLS 8
extern "C" __global__ void w4a16_fused(const float* __restrict__ x, const unsigned char* __restrict__ packed,
        const float* __restrict__ scale, const float* __restrict__ zero, float* out,
        int m, int n, int k, int group, int kchunk) {
    int c0 = (blockIdx.x * blockDim.x + threadIdx.x) * COLS;
    int r0 = blockIdx.y * ROWS, rows = min(ROWS, m - r0);
    int p0 = blockIdx.z * kchunk, p1 = min(k, p0 + kchunk);
    if (c0 >= n) return;
    float acc[ROWS][COLS], s[COLS], z[COLS];
    #pragma unroll
    for (int r = 0; r < ROWS; ++r)
        #pragma unroll
        for (int j = 0; j < COLS; ++j) acc[r][j] = 0.f;
    #pragma unroll 4
    for (int p = p0; p < p1; p += 2) {  // a pair of k rows shares a byte and, group being even, a group
        if (p == p0 || p % group == 0) {
            long long g = (long long)(p / group) * n + c0;
            #pragma unroll
            for (int j = 0; j < COLS; ++j) { s[j] = scale[g + j]; z[j] = zero[g + j]; }
        }
        uint2 bits = *reinterpret_cast<const uint2*>(packed + (long long)(p / 2) * n + c0);
        float w0[COLS], w1[COLS];
        #pragma unroll
        for (int j = 0; j < COLS; ++j) {
            unsigned int b = ((j < 4 ? bits.x : bits.y) >> (8 * (j % 4))) & 0xFFu;
            w0[j] = ((float)(b & 15u) - z[j]) * s[j];  // row p: the low nibble
            w1[j] = ((float)(b >> 4) - z[j]) * s[j];   // row p + 1: the high nibble
        }
        #pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            const float* xr = x + (long long)(r0 + min(r, rows - 1)) * k + p;
            float xa = xr[0], xb = xr[1];
            #pragma unroll
            for (int j = 0; j < COLS; ++j) acc[r][j] = fmaf(xb, w1[j], fmaf(xa, w0[j], acc[r][j]));
        }
    }
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < COLS; ++j) atomicAdd(out + (long long)(r0 + r) * n + c0 + j, acc[r][j]);
}
"""

# W4A16 for many token rows (prefill): dequantize once into an fp16 matrix for a tensor-core GEMM, as
# engines switch to (vLLM's AWQ layer above 256 tokens). A thread takes four columns of a pair of k rows.
_W4_DEQUANTIZE = r"""
extern "C" __global__ void w4_dequantize(const unsigned char* __restrict__ packed, const float* __restrict__ scale,
        const float* __restrict__ zero, unsigned short* w, int n, int k, int group) {
    long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i >= (long long)(k / 2) * n) return;
    int p = 2 * (int)(i / n), c = (int)(i % n);
    long long g = (long long)(p / group) * n + c;
    unsigned int bits = *reinterpret_cast<const unsigned int*>(packed + i);
    unsigned short lo[4], hi[4];
    for (int j = 0; j < 4; ++j) {
        unsigned int b = (bits >> (8 * j)) & 0xFFu;
        float a = ((float)(b & 15u) - zero[g + j]) * scale[g + j], e = ((float)(b >> 4) - zero[g + j]) * scale[g + j];
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(lo[j]) : "f"(a));
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(hi[j]) : "f"(e));
    }
    *reinterpret_cast<ushort4*>(w + (long long)p * n + c) = make_ushort4(lo[0], lo[1], lo[2], lo[3]);
    *reinterpret_cast<ushort4*>(w + (long long)(p + 1) * n + c) = make_ushort4(hi[0], hi[1], hi[2], hi[3]);
}
"""

# Top-p without a sort: one block per row finds the boundary of the removed tokens by a radix select on
# the logits' order-preserving bits, 4 bits a pass (8 passes), each pass a block-wide sum of the
# probability mass falling in each of the 16 digit values under the prefix found so far; then ties at
# the boundary are removed in index order (a stable sort's), and min_tokens_to_keep caps the removals
# by a second select on counts. About ten reads of the row instead of a sort's many.
_TOP_P = r"""
#define THREADS 1024
#define WARPS (THREADS / 32)
#define NEG_INF __int_as_float(0xff800000)
#define FULL 0xffffffffu

__device__ __forceinline__ unsigned int ordered(float x) {  // ascending as unsigned <=> ascending as float
    unsigned int b = __float_as_uint(x);
    return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

__device__ __forceinline__ float from_ordered(unsigned int u) {
    return __uint_as_float((u & 0x80000000u) ? u & 0x7fffffffu : ~u);
}

// Block-wide sums of each thread's N values, into totals[0..N) (shared, read by every thread after).
template <int N>
__device__ void block_sums(const float* v, float (*partial)[33], float* totals) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    #pragma unroll
    for (int d = 0; d < N; ++d) {
        float x = v[d];
        for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL, x, o);
        if (lane == 0) partial[warp][d] = x;
    }
    __syncthreads();
    if (threadIdx.x < N) {
        float t = 0.f;
        for (int w = 0; w < WARPS; ++w) t += partial[w][threadIdx.x];
        totals[threadIdx.x] = t;
    }
    __syncthreads();
}

// The ordered value U at which the cumulative weight of the ascending row first exceeds cut (weight: a
// token's unnormalised probability, or 1 to count); *below gets the weight of the tokens under U.
template <bool COUNT>
__device__ unsigned int boundary(const float* row, int vocab, float mx, float cut, float* below,
                                 float (*partial)[33], float* totals) {
    unsigned int prefix = 0;
    float under = 0.f;
    for (int shift = 28; shift >= 0; shift -= 4) {
        float acc[16];
        #pragma unroll
        for (int d = 0; d < 16; ++d) acc[d] = 0.f;
        for (int i = threadIdx.x; i < vocab; i += THREADS) {
            float x = row[i];
            unsigned int u = ordered(x);
            if (shift == 28 || (u >> (shift + 4)) == prefix) {
                float w = COUNT ? 1.f : __expf(x - mx);
                unsigned int digit = (u >> shift) & 15u;
                #pragma unroll
                for (int d = 0; d < 16; ++d) acc[d] += digit == d ? w : 0.f;
            }
        }
        block_sums<16>(acc, partial, totals);
        // the first digit whose mass takes the cumulative past cut; rounding aside, one does (else the
        // last digit holding any mass)
        int pick = -1, last = 0;
        for (int d = 0; d < 16; ++d) {
            if (totals[d] > 0.f) last = d;
            if (pick < 0 && under + totals[d] > cut) pick = d;
            else if (pick < 0) under += totals[d];
        }
        if (pick < 0) {
            pick = last;
            for (int d = last; d < 16; ++d) under -= totals[d];
        }
        prefix = (prefix << 4) | (unsigned int)pick;
        __syncthreads();  // totals are rewritten by the next pass
    }
    *below = under;
    return prefix;
}

// Block-wide counts of the tokens under U and at U.
__device__ void count_at(const float* row, int vocab, unsigned int U, int* under, int* at,
                         float (*partial)[33], float* totals) {
    float c[2] = {0.f, 0.f};
    for (int i = threadIdx.x; i < vocab; i += THREADS) {
        unsigned int u = ordered(row[i]);
        c[0] += u < U ? 1.f : 0.f;
        c[1] += u == U ? 1.f : 0.f;
    }
    block_sums<2>(c, partial, totals);
    *under = (int)totals[0];
    *at = (int)totals[1];
    __syncthreads();
}

extern "C" __global__ void __launch_bounds__(THREADS) top_p(float* logits, int vocab, float p, int min_keep) {
    __shared__ float partial[WARPS][33];
    __shared__ float totals[32];
    __shared__ float mx_shared;
    __shared__ int tie_base;
    float* row = logits + (long long)blockIdx.x * vocab;
    float mx = NEG_INF;
    for (int i = threadIdx.x; i < vocab; i += THREADS) mx = fmaxf(mx, row[i]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, o));
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32][0] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = NEG_INF;
        for (int w = 0; w < WARPS; ++w) m = fmaxf(m, partial[w][0]);
        mx_shared = m;
    }
    __syncthreads();
    mx = mx_shared;
    float z[1] = {0.f};
    for (int i = threadIdx.x; i < vocab; i += THREADS) z[0] += __expf(row[i] - mx);
    block_sums<1>(z, partial, totals);
    float total = totals[0], cut = (1.f - p) * total;  // removed: cumulative (ascending) mass <= cut
    __syncthreads();
    float below;
    unsigned int U = boundary<false>(row, vocab, mx, cut, &below, partial, totals);
    int under, at;
    count_at(row, vocab, U, &under, &at, partial, totals);
    // tokens tied at U go in index order (a stable sort's) while the cumulative mass stays <= cut
    float e_tie = __expf(from_ordered(U) - mx), acc = below;
    int ties = 0;
    while (ties < at && acc + e_tie <= cut) { acc += e_tie; ++ties; }
    int removed = total <= cut ? vocab : under + ties;
    if (removed > vocab - min_keep) {  // min_tokens_to_keep: remove the vocab - min_keep lowest instead
        U = boundary<true>(row, vocab, mx, (float)(vocab - min_keep) - 0.5f, &below, partial, totals);
        count_at(row, vocab, U, &under, &at, partial, totals);
        ties = vocab - min_keep - under;
    }
    if (threadIdx.x == 0) tie_base = 0;
    __syncthreads();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int base = 0; base < vocab; base += THREADS) {
        int i = base + threadIdx.x;
        unsigned int u = i < vocab ? ordered(row[i]) : 0xffffffffu;
        bool drop = i < vocab && u < U;
        if (ties > 0) {  // uniform branch: rank this chunk's tied tokens in index order
            bool tie = i < vocab && u == U;
            unsigned int mask = __ballot_sync(FULL, tie);
            if (lane == 0) partial[warp][0] = __int_as_float(__popc(mask));
            __syncthreads();
            int rank = tie_base + __popc(mask & ((1u << lane) - 1u));
            for (int w = 0; w < warp; ++w) rank += __float_as_int(partial[w][0]);
            drop = drop || (tie && rank < ties);
            __syncthreads();
            if (threadIdx.x == THREADS - 1) tie_base = rank + (tie ? 1 : 0);
            __syncthreads();
        }
        if (drop) row[i] = NEG_INF;
    }
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
def _kernel(source: str, name: str, *defines: str):
    """The compiled kernel `name` of `source`, with preprocessor defines such as "HEAD_DIM=128"."""
    import cupy as cp
    return cp.RawKernel(source, name, options=("--use_fast_math",) + tuple(f"-D{d}" for d in defines))


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
    _kernel(_ATTENTION, "attention_tiles", f"HEAD_DIM={d}")(
        ((s + 15) // 16, b * h), (128,),
        (cp.ascontiguousarray(q, cp.float32), cp.ascontiguousarray(k, cp.float32), cp.ascontiguousarray(v, cp.float32),
         out, np.int32(h), np.int32(kv_h), np.int32(s), np.int32(t), np.int32(causal)))
    return out


def _query_heads_per_block(group: int) -> int:
    """The query heads of one GQA group a paged_split block serves: the largest divisor of the group
    size up to 8 (registers bound it: 8 heads of 128 dimensions use ~170 of a thread's 255)."""
    return max(d for d in range(1, min(group, 8) + 1) if group % d == 0)


def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, split_tokens: int = 256):
    """Decode attention through a block table (see kernels.attention), split-KV as Flash-Decoding does:
    a block per (sequence, kv head and the query heads that share it, span of split_tokens cached
    tokens), then a pass merging the spans. The span count comes from the block table's width, so
    nothing is read back from the GPU."""
    b, h, d = q.shape
    _check_head_dim(d)
    import cupy as cp
    block, kv_h = k_cache.shape[1], k_cache.shape[2]
    if h % kv_h:
        raise ValueError(f"heads={h} must be a multiple of kv_heads={kv_h}")
    per_block = _query_heads_per_block(h // kv_h)
    spans = (block_tables.shape[1] * block + split_tokens - 1) // split_tokens
    m_part = cp.empty(b * h * spans, dtype=cp.float32)
    l_part = cp.empty_like(m_part)
    acc_part = cp.empty(b * h * spans * d, dtype=cp.float32)
    out = cp.empty((b, h, d), dtype=cp.float32)
    _kernel(_PAGED, "paged_split", f"HEAD_DIM={d}", f"GROUP={per_block}")(
        (b * h // per_block, spans), (128,),
        (cp.ascontiguousarray(q, cp.float32), cp.ascontiguousarray(k_cache, cp.float32),
         cp.ascontiguousarray(v_cache, cp.float32), cp.ascontiguousarray(block_tables, cp.int64),
         cp.ascontiguousarray(context_lens, cp.int64), m_part, l_part, acc_part, np.int32(h), np.int32(kv_h),
         np.int32(block), np.int32(block_tables.shape[1]), np.int32(split_tokens)))
    _kernel(_PAGED, "paged_combine", f"HEAD_DIM={d}", f"GROUP={per_block}")(
        (b * h,), (32,), (m_part, l_part, acc_part, out, np.int32(spans)))
    return out


# cuBLAS's enumerations (CUDA's library_types.h and cublas_api.h)
_CUDA_R_32F, _CUDA_R_16F, _CUDA_R_8I, _CUDA_R_32I = 0, 2, 3, 10
_COMPUTE_32F, _COMPUTE_32I = 68, 72


def _gemm(x, w, out, w_transposed: bool):
    """out[m, n] = x[m, k] W with cuBLAS's GemmEx on tensor cores: int8 operands accumulated in int32,
    fp16 ones in fp32. w is W [k, n] row-major, or W^T [n, k] row-major when w_transposed (the 'TN'
    layout int8 GEMMs want). Row-major arrays are cuBLAS's column-major transposes, so this asks cuBLAS
    for out^T = W^T x^T."""
    import cupy as cp
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


def require() -> None:
    """Raise a one-line error unless CuPy and a GPU are here (what backend="cupy" needs)."""
    if not available():
        raise ValueError("backend 'cupy' needs CuPy and a CUDA GPU (pip install 'infersim[gpu]'); "
                         "use backend 'numba' or 'numpy' here")


def to_device(w_q):
    """A `kernels.quant.Quantized` with its arrays on the GPU, laid out as the GPU kernels read them, so
    that timed products neither re-upload nor re-arrange it: int8 codes column-major (W^T row-major, the
    [out, in] layout of a Linear layer's weight that int8 tensor-core GEMMs take), and a packed int4
    weight's scales and zeros per (group, column), symmetric codes getting their offset of 8 as a zero."""
    import dataclasses

    import cupy as cp

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


def w8a8_matmul(x, w_q, x_granularity: str = "token"):
    """int8 activations (per token or per tensor) x symmetric int8 weights (per channel or per tensor),
    accumulated in int32 by cuBLAS's int8 tensor-core GEMM, then rescaled (see kernels.quant.w8a8_matmul;
    the weights from `to_device`): quantize, GEMM, rescale, as SmoothQuant's and TensorRT-LLM's W8A8
    paths run it."""
    import cupy as cp
    x = cp.ascontiguousarray(x, dtype=cp.float32)
    m, k = x.shape
    n = w_q.codes.shape[1]
    if k % 4:
        raise ValueError(f"the GPU int8 GEMM needs in_features divisible by 4, got {k}")
    xq, sx = cp.empty((m, k), dtype=cp.int8), cp.empty(m, dtype=cp.float32)
    per_tensor = x_granularity == "tensor"
    absmax = cp.abs(x).max() if per_tensor else sx  # per token: each row's block finds its own
    _kernel(_W8A8, "quantize_rows")((m,), (256,), (x, absmax, xq, sx, np.int32(k), np.int32(per_tensor)))
    acc = _gemm(xq, cp.ascontiguousarray(w_q.codes.T), cp.empty((m, n), dtype=cp.int32), True)
    out = cp.empty((m, n), dtype=cp.float32)
    _kernel(_W8A8, "rescale")((-(-m * n // 256),), (256,),
                              (acc, sx, w_q.scale, out, np.int32(m), np.int32(n), np.int32(w_q.granularity == "channel")))
    return out


# Up to this many token rows the fused kernel runs, above it dequantize + cuBLAS fp16: on an H200 the fused
# kernel is faster up to 8 rows and even at 16 (benchmarks/kernels_vs_cupy.py, results/kernels_gpu.json).
W4A16_FUSED_ROWS = 8


def w4a16_matmul(x, w_q, fused: bool | None = None):
    """Activations x packed int4 group-quantized weights (see kernels.quant.w4a16_matmul; the weights from
    `to_device`). Up to W4A16_FUSED_ROWS rows (or when `fused`): the fused kernel, fp32 activations and
    math, dequantizing in registers, its cost the weights' read; more rows (or `fused=False`): the weights
    dequantized once to fp16 and an fp16 tensor-core GEMM (fp16 activations, fp32 accumulation), its cost
    the GEMM's arithmetic."""
    import cupy as cp
    x = cp.ascontiguousarray(x, dtype=cp.float32)
    m, k = x.shape
    n = w_q.codes.shape[1]
    if n % 8 or w_q.group_size % 2:
        raise ValueError(f"the GPU int4 kernels need out_features divisible by 8 and an even group size, "
                         f"got {n} and {w_q.group_size}")
    if not (m <= W4A16_FUSED_ROWS if fused is None else fused):
        w16 = cp.empty((k, n), dtype=cp.float16)
        _kernel(_W4_DEQUANTIZE, "w4_dequantize")(
            ((k // 2 * n // 4 + 255) // 256,), (256,),
            (w_q.codes, w_q.scale, w_q.zero, w16, np.int32(n), np.int32(k), np.int32(w_q.group_size)))
        return _gemm(x.astype(cp.float16), w16, cp.empty((m, n), dtype=cp.float32), False)
    rows = next(r for r in (1, 2, 4) if r >= min(m, 4))
    threads = 64
    column_blocks, row_blocks = (n // 8 + threads - 1) // threads, (m + rows - 1) // rows
    # split k so that the grid has about 16 warps per SM (132 SMs on an H100), in whole pairs of rows:
    # each warp keeps only a few loads in flight, and the weights' read needs many in flight at once
    splits = max(1, min(k // 32, -(-1056 // (column_blocks * row_blocks))))
    kchunk = -(-k // splits // 2) * 2
    out = cp.zeros((m, n), dtype=cp.float32)
    _kernel(_W4A16, "w4a16_fused", f"ROWS={rows}")(
        (column_blocks, row_blocks, -(-k // kchunk)), (threads,),
        (x, w_q.codes, w_q.scale, w_q.zero, out, np.int32(m), np.int32(n), np.int32(k), np.int32(w_q.group_size),
         np.int32(kchunk)))
    return out


def _top_p_in_place(logits, p: float, min_tokens_to_keep: int) -> None:
    """Set the tokens top-p removes to -inf in a C-contiguous fp32 [batch, vocab] CuPy array."""
    batch, vocab = logits.shape
    _kernel(_TOP_P, "top_p")((batch,), (1024,), (logits, np.int32(vocab), np.float32(p),
                                                  np.int32(min(min_tokens_to_keep, vocab))))


def top_p_filter(logits, p: float, min_tokens_to_keep: int = 1):
    """transformers' top-p on the GPU without a sort (see kernels.sampling.top_p_filter and _TOP_P)."""
    import cupy as cp
    out = cp.array(logits, dtype=cp.float32, order="C")
    _top_p_in_place(out, p, min_tokens_to_keep)
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
        _top_p_in_place(out, top_p, min_tokens_to_keep)
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

    import cupy as cp

    from infersim.roofline import get_hardware
    from .measure import gpu_median_time_s
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
