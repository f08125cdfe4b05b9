// W4A16 for many token rows (prefill, kernels/cuda/quant.py): dequantize once into an fp16 matrix for a
// tensor-core GEMM, as engines switch to (vLLM's AWQ layer above 256 tokens). A thread takes four columns
// of a pair of k rows.

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
