// W8A8's steps around cuBLAS's int8 GEMM (kernels/cuda/quant.py), as kernels.quant computes them: a block
// per token row finds its absmax scale (or takes the tensor's) and rounds the row to int8; the int32
// accumulators are rescaled by the row's and the column's (or the tensor's) scales.

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
