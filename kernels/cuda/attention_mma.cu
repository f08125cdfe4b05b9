// Exact attention on tensor cores, as kernels/cuda/attention.py launches it for fp16 inputs: FlashAttention-2's
// Algorithm 1 (Dao 2023) on WMMA 16x16x16 fragments (fp16 in, fp32 accumulate); emulated step for step by
// kernels/tensor_core_attention.py, which the CPU tests check against the reference.
// NOT YET RUN ON A GPU: written without a compiler at hand (issue 12); tests/test_kernels_gpu.py checks it.
//
// A block per 64 query rows of one head, a warp per 16 of them. Each 32-key tile of K and V is staged in
// shared memory; S = Q K^T (fp32 fragments) goes to the warp's shared S tile, where two lanes per row run the
// online softmax and write P in fp16; O stays in accumulator fragments, rescaled per row by
// e^(m - m') through a fragment of row indices (same fragment type, so the same element-to-row mapping,
// whatever the unspecified layout), then O += P V. Compiled per head size (-DHEAD_DIM=16 ... 128).
#include <cuda_fp16.h>
#include <mma.h>
using namespace nvcuda;

#define NEG_INF __int_as_float(0xff800000)
#define WARPS 4
#define BLOCK_M (16 * WARPS)      // query rows per block
#define BLOCK_N 32                // keys per tile
#define FRAGS (HEAD_DIM / 16)     // 16-wide chunks of a head
#define DPAD (HEAD_DIM + 8)       // half row stride of the Q/K/V tiles: a multiple of 8, rows 16 bytes aligned
#define SPAD (BLOCK_N + 4)        // float row stride of a warp's S tile
#define PPAD (BLOCK_N + 8)        // half row stride of a warp's P tile
// Shared memory, 32-byte aligned regions (WMMA's pointer alignment): Q is read into fragments once, then
// its region holds the warps' S and P tiles.
#define Q_BYTES (BLOCK_M * DPAD * 2)
#define SP_BYTES (WARPS * 16 * SPAD * 4 + WARPS * 16 * PPAD * 2)
#define REGION_A (Q_BYTES > SP_BYTES ? Q_BYTES : SP_BYTES)
#define KV_BYTES (BLOCK_N * DPAD * 2)

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> Acc;

// rows x HEAD_DIM halves from global rows [r0, r0 + rows) of src (row length HEAD_DIM) into dst (stride DPAD),
// zeros past `limit`; 16-byte vectors
__device__ void stage(half* dst, const half* src, int r0, int rows, int limit) {
    const int vecs = HEAD_DIM / 8;
    for (int i = threadIdx.x; i < rows * vecs; i += blockDim.x) {
        int r = i / vecs, c = i % vecs * 8;
        uint4 val = make_uint4(0u, 0u, 0u, 0u);
        if (r0 + r < limit) val = *reinterpret_cast<const uint4*>(src + (long long)(r0 + r) * HEAD_DIM + c);
        *reinterpret_cast<uint4*>(dst + r * DPAD + c) = val;
    }
}

extern "C" __global__ void __launch_bounds__(32 * WARPS) attention_mma(const half* q, const half* k, const half* v,
        half* out, int h, int kv_h, int s, int t, int causal) {
    __shared__ __align__(32) unsigned char region_a[REGION_A];
    __shared__ __align__(32) half ks[BLOCK_N * DPAD];
    __shared__ __align__(32) half vs[BLOCK_N * DPAD];
    __shared__ __align__(32) float row_of[16 * 16];
    __shared__ float alpha_s[WARPS][16];
    __shared__ float l_s[WARPS][16];
    half* qs = reinterpret_cast<half*>(region_a);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* ss = reinterpret_cast<float*>(region_a) + warp * 16 * SPAD;
    half* ps = reinterpret_cast<half*>(region_a + WARPS * 16 * SPAD * 4) + warp * 16 * PPAD;
    int bh = blockIdx.y, bi = bh / h, hi = bh % h, kh = hi / (h / kv_h);
    int q0 = blockIdx.x * BLOCK_M, offset = t - s;
    const half* kb = k + ((long long)bi * kv_h + kh) * t * HEAD_DIM;
    const half* vb = v + ((long long)bi * kv_h + kh) * t * HEAD_DIM;
    float scale = rsqrtf((float)HEAD_DIM);

    stage(qs, q + (long long)bh * s * HEAD_DIM, q0, BLOCK_M, s);
    for (int i = threadIdx.x; i < 16 * 16; i += blockDim.x) row_of[i] = (float)(i / 16);
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> qf[FRAGS];
    for (int c = 0; c < FRAGS; ++c) wmma::load_matrix_sync(qf[c], qs + warp * 16 * DPAD + c * 16, DPAD);
    Acc rows, of[FRAGS];
    wmma::load_matrix_sync(rows, row_of, 16, wmma::mem_row_major);
    for (int n = 0; n < FRAGS; ++n) wmma::fill_fragment(of[n], 0.f);

    int r = lane / 2, half_lane = lane % 2;  // softmax: two lanes per row, 16 keys each
    int row = q0 + warp * 16 + r;
    float m = NEG_INF, l = 0.f;
    int k_end = causal ? min(t, q0 + BLOCK_M + offset) : t;  // causal: later keys are masked for every row
    for (int k0 = 0; k0 < k_end; k0 += BLOCK_N) {
        __syncthreads();  // nobody reads the previous tiles (the first time: Q, whose region S and P take over)
        stage(ks, kb, k0, BLOCK_N, t);
        stage(vs, vb, k0, BLOCK_N, t);
        __syncthreads();
        // S = Q K^T: K's rows are K^T's columns, a col_major matrix_b
        for (int j = 0; j < BLOCK_N / 16; ++j) {
            Acc sf;
            wmma::fill_fragment(sf, 0.f);
            for (int c = 0; c < FRAGS; ++c) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, ks + j * 16 * DPAD + c * 16, DPAD);
                wmma::mma_sync(sf, qf[c], kf, sf);
            }
            wmma::store_matrix_sync(ss + j * 16, sf, SPAD, wmma::mem_row_major);
        }
        __syncwarp();
        // online softmax (FlashAttention-2, Algorithm 1) of row r over this lane's 16 keys and its partner's
        float sv[16], mx = NEG_INF;
        #pragma unroll
        for (int c = 0; c < 16; ++c) {
            int col = half_lane * 16 + c, key = k0 + col;
            bool visible = key < t && (!causal || key <= row + offset);
            sv[c] = visible ? ss[r * SPAD + col] * scale : NEG_INF;
            mx = fmaxf(mx, sv[c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float m_new = fmaxf(m, mx);  // finite: key 0, in the first tile, is visible to every row
        float alpha = __expf(m - m_new), total = 0.f;
        #pragma unroll
        for (int c = 0; c < 16; ++c) {
            float p = __expf(sv[c] - m_new);
            total += p;
            ps[r * PPAD + half_lane * 16 + c] = __float2half(p);
        }
        total += __shfl_xor_sync(0xffffffffu, total, 1);
        l = l * alpha + total;
        m = m_new;
        if (half_lane == 0) alpha_s[warp][r] = alpha;
        __syncwarp();
        // O = e^(m - m') O + P V
        for (int n = 0; n < FRAGS; ++n)
            for (int i = 0; i < of[n].num_elements; ++i) of[n].x[i] *= alpha_s[warp][(int)rows.x[i]];
        for (int c = 0; c < BLOCK_N / 16; ++c) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> pf;
            wmma::load_matrix_sync(pf, ps + c * 16, PPAD);
            for (int n = 0; n < FRAGS; ++n) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::row_major> vf;
                wmma::load_matrix_sync(vf, vs + c * 16 * DPAD + n * 16, DPAD);
                wmma::mma_sync(of[n], pf, vf, of[n]);
            }
        }
    }
    // O / l in fp16, a 16x16 fragment at a time through the warp's S tile
    if (half_lane == 0) l_s[warp][r] = l;
    __syncthreads();  // every warp is past its last P V (the S tile is free) and l_s is written
    for (int n = 0; n < FRAGS; ++n) {
        for (int i = 0; i < of[n].num_elements; ++i) of[n].x[i] /= l_s[warp][(int)rows.x[i]];
        wmma::store_matrix_sync(ss, of[n], SPAD, wmma::mem_row_major);
        __syncwarp();
        for (int c = half_lane * 8; c < half_lane * 8 + 8; ++c)
            if (row < s) out[((long long)bh * s + row) * HEAD_DIM + n * 16 + c] = __float2half(ss[r * SPAD + c]);
        __syncwarp();
    }
}
