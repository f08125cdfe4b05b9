// Exponentials per second for `infersim calibrate --device gpu` (kernels/calibrate.py): each thread
// chains `repeats` fast-math exponentials (one special-function-unit instruction each) on its value.

extern "C" __global__ void exp_loop(float* x, int n, int repeats) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    for (int r = 0; r < repeats; ++r) v = __expf(v) * 1e-3f - 1.0f;  // stays in range; one MUFU exp each
    x[i] = v;
}
