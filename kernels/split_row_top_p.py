"""Top-p with one row split over many thread blocks (`cuda/top_p_split.cu`, for batches smaller than the SM
count), emulated pass for pass in NumPy so that its algorithm is tested where no GPU is.

The nucleus (Holtzman et al. 2020, with transformers' TopPLogitsWarper semantics, see `kernels.sampling`)
removes the longest prefix of the stably sorted ascending row whose cumulative probability stays <= 1 - p,
never the last min_tokens_to_keep. Without sorting: each logit's 32-bit order-preserving key is selected
digit by digit (radix select, 8 bits a level, 4 levels), the row cut into `slices` contiguous slices, a
block each. A first pass finds the row maximum M. Level l's pass builds, over the tokens whose key matches
the prefix chosen so far, a 256-bucket histogram of their next digit: mass sum exp(x - M) and count, summed
over the blocks. Two selects run side by side: by mass, the first bucket where the mass below passes
cut = (1 - p) sum exp(x - M); by count, the bucket of the (vocab - min_tokens_to_keep)-th token, the
first that min_tokens_to_keep keeps. After 4 levels each select has found a logit value U and the mass and
count of the tokens below it; the tokens tied at U are removed in index order (a stable sort's) while the
cumulative mass stays <= cut, and the count select caps the removals. The last pass masks: keys below U go,
and the tied tokens ranked below the number removed, ranked across slices by the last level's per-slice
counts. A bucket is picked as the kernel's warp picks it: each of 32 lanes sums 8 buckets, a warp
inclusive scan (Hillis and Steele) over the lanes finds the first lane that crosses, then that lane walks
its buckets. The per-block histogram sums are added in another order on the GPU (atomics), so the two agree
except where a cumulative mass lies within fp32 rounding of the cut.
"""
from __future__ import annotations

import numpy as np

THREADS = 256  # per block
BUCKETS = 256  # 8 bits a level
LEVELS = 4
LANES = 32


def slices_for(batch: int, vocab: int, sm_count: int) -> int:
    """Blocks per row: enough for the batch's rows to cover every SM, each slice a block's worth of tokens
    or more."""
    return max(1, min(-(-sm_count // batch), vocab // THREADS))


def slice_tokens(vocab: int, slices: int) -> int:
    """Tokens per slice (the last one takes what is left)."""
    return -(-vocab // slices)


def ordered_keys(x: np.ndarray) -> np.ndarray:
    """uint32 keys ascending as the fp32 values are (negative floats' bits inverted, positive ones' sign
    bit set), -0.0 taken as +0.0 (they are equal logits, tied for a stable sort)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = np.where(bits & np.uint32(0x7FFFFFFF), bits, np.uint32(0))
    return np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


def _lane_scan(per_lane: np.ndarray) -> np.ndarray:
    """Inclusive warp scan with shuffles (__shfl_up_sync by 1, 2, 4, 8, 16), in its order of additions."""
    x = per_lane.copy()
    for o in (1, 2, 4, 8, 16):
        x[o:] = x[o:] + x[:-o]  # the right side is read before the write, as every lane shuffles first
    return x


def _lane_sums(amounts: np.ndarray) -> np.ndarray:
    """Each lane's sum of its BUCKETS / LANES consecutive buckets, added in order as one thread adds them."""
    lanes = amounts.reshape(LANES, BUCKETS // LANES)
    per_lane = lanes[:, 0].copy()
    for b in range(1, lanes.shape[1]):
        per_lane = per_lane + lanes[:, b]
    return per_lane


def pick_bucket(amounts: np.ndarray, counts: np.ndarray, below, cut):
    """The first non-empty bucket where below + the amounts up to it pass `cut`, or the last non-empty one
    if none does (rounding); returns it and the amount below it. The amounts are fp32 masses or integer
    counts, summed as the kernel's warp sums them (module docstring)."""
    lanes = amounts.reshape(LANES, BUCKETS // LANES)
    inclusive = _lane_scan(_lane_sums(amounts))
    nonempty = counts.reshape(LANES, -1).sum(axis=1) > 0
    crossing = np.nonzero((below + inclusive > cut) & nonempty)[0]
    lane = crossing[0] if len(crossing) else np.nonzero(nonempty)[0][-1]
    under = below + (inclusive[lane - 1] if lane else amounts.dtype.type(0))
    pick, pick_under = -1, under
    for b in range(lanes.shape[1]):
        bucket = lane * lanes.shape[1] + b
        if counts[bucket]:
            pick, pick_under = bucket, under
            if under + amounts[bucket] > cut:
                break
        under = under + amounts[bucket]
    return pick, pick_under


def removed_ties(below: np.float32, tie_mass: np.float32, cut: np.float32, tied: int) -> int:
    """How many of `tied` tokens of mass `tie_mass` each go after the removed mass `below`: the most n with
    below + n tie_mass <= cut."""
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = (cut - below) / tie_mass
    n = tied if np.isnan(guess) else int(min(max(guess, 0.0), tied))
    while n < tied and below + np.float32(n + 1) * tie_mass <= cut:
        n += 1
    while n > 0 and below + np.float32(n) * tie_mass > cut:
        n -= 1
    return n


def _filter_row(row: np.ndarray, p: float, min_keep: int, slices: int) -> None:
    """The kernel's passes over one row, masking it in place."""
    vocab = len(row)
    keys = ordered_keys(row)
    top = row.max()
    mass = np.exp(row - top)
    target = vocab - min_keep  # the count select: tokens before the first min_tokens_to_keep keeps
    prefix_p = prefix_c = np.uint32(0)
    under_mass, under_count_p, under_count_c = np.float32(0), 0, 0
    cut = total = np.float32(0)
    for level in range(LEVELS):
        shift = np.uint32(24 - 8 * level)
        digits = ((keys >> shift) & np.uint32(BUCKETS - 1)).astype(np.int64)
        in_p = np.ones(vocab, bool) if level == 0 else (keys >> np.uint32(shift + 8)) == prefix_p
        in_c = np.ones(vocab, bool) if level == 0 else (keys >> np.uint32(shift + 8)) == prefix_c
        w = np.bincount(digits[in_p], weights=mass[in_p], minlength=BUCKETS).astype(np.float32)
        count_p = np.bincount(digits[in_p], minlength=BUCKETS)
        count_c = np.bincount(digits[in_c], minlength=BUCKETS)
        if level == 0:
            total = _lane_scan(_lane_sums(w))[-1]
            cut = np.float32(1 - p) * total
        digit_p, under_mass = pick_bucket(w, count_p, under_mass, cut)
        digit_c, under_count_c = pick_bucket(count_c, count_c, under_count_c, target)
        under_count_p += int(count_p[:digit_p].sum())
        tied_p = int(count_p[digit_p])
        prefix_p = np.uint32((int(prefix_p) << 8) | digit_p)
        prefix_c = np.uint32((int(prefix_c) << 8) | digit_c)
    tie_mass = np.exp(ordered_to_float(prefix_p) - top)
    ties_p = removed_ties(under_mass, tie_mass, cut, tied_p)
    removed_p = vocab if total <= cut else under_count_p + ties_p
    boundary, ties = (prefix_c, target - under_count_c) if removed_p > target else (prefix_p, ties_p)
    tied = keys == boundary
    width = slice_tokens(vocab, slices)
    per_slice = np.add.reduceat(tied, np.arange(0, vocab, width))  # the last level's per-slice counts at U
    earlier = np.repeat(np.cumsum(per_slice) - per_slice, width)[:vocab]
    in_slice = np.concatenate([np.cumsum(tied[i:i + width]) for i in range(0, vocab, width)]) - tied
    tie_rank = earlier + in_slice
    row[(keys < boundary) | (tied & (tie_rank < ties))] = -np.inf


def ordered_to_float(key: np.uint32) -> np.float32:
    """The fp32 value of an ordered key (`ordered_keys` inverted)."""
    bits = np.uint32(key & np.uint32(0x7FFFFFFF)) if key >> np.uint32(31) else np.uint32(~key)
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


def split_row_top_p_emulated(logits: np.ndarray, p: float, min_tokens_to_keep: int = 1,
                             slices: int | None = None) -> np.ndarray:
    """Top-p of [batch, vocab] logits as `cuda/top_p_split.cu` computes it (module docstring), each row in
    `slices` slices (default: as on a 132-SM H200); the logits are not changed."""
    out = np.array(logits, dtype=np.float32)
    vocab = out.shape[1]
    slices = slices or slices_for(out.shape[0], vocab, 132)
    for row in out:
        _filter_row(row, p, min(min_tokens_to_keep, vocab), slices)
    return out
