// Top-p with each row split over many blocks (kernels/cuda/sampling.py, for batches below the SM count):
// a radix select by mass and by count, 8 bits a level, over a grid of (slices, rows) blocks, as
// kernels/split_row_top_p.py describes and emulates pass for pass (the CPU tests check it keeps exactly the
// reference's tokens). Launches: row_max, then top_p_level for levels 0..3, then top_p_mask.
// NOT YET RUN ON A GPU: written without a compiler at hand (issue 12); tests/test_kernels_gpu.py checks it.
//
// Global scratch, zeroed by the caller: row_max [rows] (ordered keys), hist_mass / hist_count_p /
// hist_count_c [LEVELS][rows][256] (each level's histograms summed over the row's blocks), slice_counts
// [2][rows][slices][256] (the last level's per-block counts, for ranking tied tokens across blocks), and
// states [LEVELS][rows] (a row's two selects after `level` digits, written by the row's block 0 of launch
// `level`, read by launch level + 1).

#define THREADS 256
#define BUCKETS 256
#define LEVELS 4
#define PER_LANE (BUCKETS / 32)
#define NEG_INF __int_as_float(0xff800000)
#define FULL 0xffffffffu

struct Select {
    unsigned int prefix_p;       // the mass select's digits so far
    float under_mass;            // mass of the tokens below its prefix
    unsigned int under_count_p;  // and their count
    unsigned int prefix_c;       // the count select's digits so far
    unsigned int under_count_c;  // tokens below its prefix
    float total;                 // sum exp(x - M) over the row
    float cut;                   // (1 - p) total
    unsigned int tied_p;         // tokens matching the mass select's prefix with its last digit
};

__device__ __forceinline__ unsigned int ordered(float x) {  // ascending as unsigned <=> ascending as float
    unsigned int b = __float_as_uint(x);
    if ((b & 0x7fffffffu) == 0u) b = 0u;  // -0.0 is +0.0: equal logits tie
    return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

__device__ __forceinline__ float from_ordered(unsigned int u) {
    return __uint_as_float((u & 0x80000000u) ? u & 0x7fffffffu : ~u);
}

// Warp 0: the first non-empty bucket where below + the amounts up to it pass cut (else the last non-empty
// one), as split_row_top_p.pick_bucket: lane sums of PER_LANE buckets, an inclusive shuffle scan, then the
// crossing lane walks its buckets. Every lane returns the bucket and the amount below it.
template <typename T>
__device__ int pick_bucket(const T* amounts, const unsigned int* counts, T below, T cut, T* under_out) {
    int lane = threadIdx.x % 32;
    T mine = amounts[lane * PER_LANE];
    unsigned int filled = counts[lane * PER_LANE];
    for (int b = 1; b < PER_LANE; ++b) {
        mine = mine + amounts[lane * PER_LANE + b];
        filled += counts[lane * PER_LANE + b];
    }
    T inclusive = mine;
    for (int o = 1; o < 32; o <<= 1) {
        T up = __shfl_up_sync(FULL, inclusive, o);
        if (lane >= o) inclusive = inclusive + up;
    }
    unsigned int nonempty = __ballot_sync(FULL, filled > 0u);
    unsigned int crossing = __ballot_sync(FULL, filled > 0u && below + inclusive > cut);
    int chosen = crossing ? __ffs(crossing) - 1 : 31 - __clz(nonempty);
    T before = __shfl_sync(FULL, inclusive, chosen > 0 ? chosen - 1 : 0);
    T under = below + (chosen > 0 ? before : (T)0);
    int pick = -1;
    T pick_under = under;
    for (int b = 0; b < PER_LANE; ++b) {
        int bucket = chosen * PER_LANE + b;
        if (counts[bucket]) {
            pick = bucket;
            pick_under = under;
            if (under + amounts[bucket] > cut) break;
        }
        under = under + amounts[bucket];
    }
    *under_out = pick_under;
    return pick;
}

// The row's selects after `level` digits (level >= 1), from those after level - 1 and level - 1's histograms.
// Run by warp 0; lane 0's result is the one used.
__device__ Select extend(int level, int row, int rows, float p, int vocab, int min_keep, const Select* states,
                         const float* hist_mass, const unsigned int* hist_count_p, const unsigned int* hist_count_c) {
    Select st = {0u, 0.f, 0u, 0u, 0u, 0.f, 0.f, 0u};
    if (level > 1) st = states[(level - 1) * rows + row];
    const float* w = hist_mass + ((long long)(level - 1) * rows + row) * BUCKETS;
    const unsigned int* cp = hist_count_p + ((long long)(level - 1) * rows + row) * BUCKETS;
    const unsigned int* cc = hist_count_c + ((long long)(level - 1) * rows + row) * BUCKETS;
    if (level == 1) {  // the row's total mass: the same lane sums and scan as pick_bucket's
        int lane = threadIdx.x % 32;
        float mine = w[lane * PER_LANE];
        for (int b = 1; b < PER_LANE; ++b) mine = mine + w[lane * PER_LANE + b];
        for (int o = 1; o < 32; o <<= 1) {
            float up = __shfl_up_sync(FULL, mine, o);
            if (lane >= o) mine = mine + up;
        }
        st.total = __shfl_sync(FULL, mine, 31);
        st.cut = (1.f - p) * st.total;
    }
    float under_mass;
    int digit_p = pick_bucket<float>(w, cp, st.under_mass, st.cut, &under_mass);
    unsigned int under_c;
    int digit_c = pick_bucket<unsigned int>(cc, cc, st.under_count_c, (unsigned int)(vocab - min_keep), &under_c);
    unsigned int below_p = 0u;
    for (int b = 0; b < digit_p; ++b) below_p += cp[b];
    st.under_mass = under_mass;
    st.under_count_p += below_p;
    st.tied_p = cp[digit_p];
    st.prefix_p = (st.prefix_p << 8) | (unsigned int)digit_p;
    st.under_count_c = under_c;
    st.prefix_c = (st.prefix_c << 8) | (unsigned int)digit_c;
    return st;
}

extern "C" __global__ void __launch_bounds__(THREADS) row_max(const float* logits, int vocab, int slices,
                                                              unsigned int* row_max_keys) {
    __shared__ unsigned int best;
    int row = blockIdx.y, width = (vocab + slices - 1) / slices;
    int start = blockIdx.x * width, end = min(vocab, start + width);
    if (threadIdx.x == 0) best = 0u;
    __syncthreads();
    unsigned int mine = 0u;
    for (int i = start + threadIdx.x; i < end; i += THREADS) mine = max(mine, ordered(logits[(long long)row * vocab + i]));
    for (int o = 16; o > 0; o >>= 1) mine = max(mine, __shfl_xor_sync(FULL, mine, o));
    if (threadIdx.x % 32 == 0) atomicMax(&best, mine);
    __syncthreads();
    if (threadIdx.x == 0) atomicMax(&row_max_keys[row], best);
}

extern "C" __global__ void __launch_bounds__(THREADS) top_p_level(const float* logits, int vocab, int slices,
        int level, float p, int min_keep, const unsigned int* row_max_keys, float* hist_mass,
        unsigned int* hist_count_p, unsigned int* hist_count_c, unsigned int* slice_counts, Select* states) {
    __shared__ float w[BUCKETS];
    __shared__ unsigned int cp[BUCKETS], cc[BUCKETS];
    __shared__ Select st;
    int row = blockIdx.y, rows = gridDim.y, width = (vocab + slices - 1) / slices;
    int start = blockIdx.x * width, end = min(vocab, start + width);
    w[threadIdx.x] = 0.f;
    cp[threadIdx.x] = 0u;
    cc[threadIdx.x] = 0u;
    if (level > 0 && threadIdx.x < 32) {
        Select s = extend(level, row, rows, p, vocab, min_keep, states, hist_mass, hist_count_p, hist_count_c);
        if (threadIdx.x == 0) {
            st = s;
            if (blockIdx.x == 0) states[level * rows + row] = s;
        }
    }
    __syncthreads();
    float top = from_ordered(row_max_keys[row]);
    int shift = 24 - 8 * level;
    unsigned int prefix_p = level > 0 ? st.prefix_p : 0u, prefix_c = level > 0 ? st.prefix_c : 0u;
    for (int i = start + threadIdx.x; i < end; i += THREADS) {
        float x = logits[(long long)row * vocab + i];
        unsigned int u = ordered(x), digit = (u >> shift) & (BUCKETS - 1);
        unsigned int above = level > 0 ? u >> (shift + 8) : 0u;  // no shift by 32: undefined
        if (above == prefix_p) {
            atomicAdd(&w[digit], __expf(x - top));
            atomicAdd(&cp[digit], 1u);
        }
        if (above == prefix_c) atomicAdd(&cc[digit], 1u);
    }
    __syncthreads();
    long long at = ((long long)level * rows + row) * BUCKETS + threadIdx.x;
    if (cp[threadIdx.x]) {
        atomicAdd(&hist_mass[at], w[threadIdx.x]);
        atomicAdd(&hist_count_p[at], cp[threadIdx.x]);
    }
    if (cc[threadIdx.x]) atomicAdd(&hist_count_c[at], cc[threadIdx.x]);
    if (level == LEVELS - 1) {
        long long mine = ((long long)row * slices + blockIdx.x) * BUCKETS + threadIdx.x;
        slice_counts[mine] = cp[threadIdx.x];
        slice_counts[(long long)rows * slices * BUCKETS + mine] = cc[threadIdx.x];
    }
}

// The most n of `tied` tokens of mass e each that keep below + n e <= cut (split_row_top_p.removed_ties)
__device__ unsigned int removed_ties(float below, float e, float cut, unsigned int tied) {
    float guess = (cut - below) / e;  // NaN for massless ties at the cut: they all go (as the emulation)
    unsigned int n = isnan(guess) ? tied : (unsigned int)fminf(fmaxf(guess, 0.f), (float)tied);
    while (n < tied && below + (float)(n + 1) * e <= cut) ++n;
    while (n > 0 && below + (float)n * e > cut) --n;
    return n;
}

extern "C" __global__ void __launch_bounds__(THREADS) top_p_mask(float* logits, int vocab, int slices, float p,
        int min_keep, const unsigned int* row_max_keys, const float* hist_mass, const unsigned int* hist_count_p,
        const unsigned int* hist_count_c, const unsigned int* slice_counts, const Select* states) {
    __shared__ unsigned int boundary, ties, tie_base, warp_ties[THREADS / 32];
    int row = blockIdx.y, rows = gridDim.y, width = (vocab + slices - 1) / slices;
    int start = blockIdx.x * width, end = min(vocab, start + width);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp == 0) {
        Select st = extend(LEVELS, row, rows, p, vocab, min_keep, states, hist_mass, hist_count_p, hist_count_c);
        float top = from_ordered(row_max_keys[row]);
        unsigned int ties_p = removed_ties(st.under_mass, __expf(from_ordered(st.prefix_p) - top), st.cut, st.tied_p);
        unsigned int target = (unsigned int)(vocab - min_keep);
        unsigned int removed_p = st.total <= st.cut ? (unsigned int)vocab : st.under_count_p + ties_p;
        int path = removed_p > target;  // the count select caps the removals (min_tokens_to_keep)
        unsigned int u = path ? st.prefix_c : st.prefix_p;
        // tied tokens in earlier slices: the last level's per-block counts at U's last digit
        const unsigned int* counts = slice_counts + (long long)path * rows * slices * BUCKETS
                                     + (long long)row * slices * BUCKETS + (u & (BUCKETS - 1));
        unsigned int earlier = 0u;
        for (int s = lane; s < blockIdx.x; s += 32) earlier += counts[(long long)s * BUCKETS];
        for (int o = 16; o > 0; o >>= 1) earlier += __shfl_xor_sync(FULL, earlier, o);
        if (lane == 0) {
            boundary = u;
            ties = path ? target - st.under_count_c : ties_p;
            tie_base = earlier;
        }
    }
    __syncthreads();
    for (int base = start; base < end; base += THREADS) {  // in index order, THREADS tokens a round
        int i = base + threadIdx.x;
        long long at = (long long)row * vocab + i;
        unsigned int u = i < end ? ordered(logits[at]) : 0u;
        bool tie = i < end && u == boundary;
        unsigned int mask = __ballot_sync(FULL, tie);
        if (lane == 0) warp_ties[warp] = __popc(mask);
        __syncthreads();
        unsigned int rank = tie_base + __popc(mask & ((1u << lane) - 1u));
        for (int w = 0; w < warp; ++w) rank += warp_ties[w];
        if (i < end && (u < boundary || (tie && rank < ties))) logits[at] = NEG_INF;
        __syncthreads();  // everyone has read warp_ties and tie_base
        if (threadIdx.x == THREADS - 1) tie_base = rank + (tie ? 1u : 0u);
        __syncthreads();
    }
}
