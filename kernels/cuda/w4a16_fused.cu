// W4A16 for a few token rows (decode), as the fused GEMV kernels of AWQ and GPTQ run it
// (kernels/cuda/quant.py): each thread owns COLS adjacent output columns and ROWS token rows, streams its
// columns' packed codes (one 8-byte load per pair of k rows), dequantizes them in registers and
// accumulates in fp32; the k range is split across blocks (split-K) whose partial sums are added
// atomically, so that a single row still fills the GPU. Compiled per ROWS (-DROWS=1, 2 or 4).

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
