// Top-p without a sort (kernels/cuda/sampling.py): one block per row finds the boundary of the removed
// tokens by a radix select on the logits' order-preserving bits, 4 bits a pass (8 passes), each pass a
// block-wide sum of the probability mass falling in each of the 16 digit values under the prefix found so
// far; then ties at the boundary are removed in index order (a stable sort's), and min_tokens_to_keep caps
// the removals by a second select on counts. About ten reads of the row instead of a sort's many.

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
