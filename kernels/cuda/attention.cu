// Exact attention on CUDA cores in fp32, as kernels/cuda/attention.py launches it: FlashAttention-2's work
// split and online softmax (Dao 2023, Algorithm 1), K/V tiles in shared memory, each warp's query rows and
// output slices in registers. Compiled per head size (-DHEAD_DIM=32, 64, 96 or 128), so that each lane's
// share of a row (HEAD_DIM / 32 values, dimensions lane, lane + 32, ...) lives in registers.

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
