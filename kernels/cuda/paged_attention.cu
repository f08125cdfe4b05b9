// Split-KV decode attention (Flash-Decoding) over a paged KV cache read through a block table
// (PagedAttention, Kwon et al. 2023), as kernels/cuda/attention.py launches it. Compiled per head size
// (-DHEAD_DIM=32, 64, 96 or 128: each lane's share of a row, HEAD_DIM / 32 values, lives in registers) and
// per number of query heads a block serves (-DGROUP).

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
