"""The split-row top-p kernel's algorithm (its NumPy emulation) keeps exactly the tokens transformers'
top-p keeps (`kernels.sampling.top_p_filter`, a stable sort): random, tied and adversarial logits,
min_tokens_to_keep, any number of slices."""
import numpy as np
import pytest

from infersim.kernels.sampling import top_p_filter
from infersim.kernels.split_row_top_p import (ordered_keys, ordered_to_float, pick_bucket, removed_ties, slices_for,
                                              split_row_top_p_emulated)
from infersim.kernels.validate import zipf_logits


def _same_kept(logits, p, min_keep=1, slices=None):
    got = split_row_top_p_emulated(logits, p, min_keep, slices)
    expected = top_p_filter(logits, p, min_keep)
    assert np.array_equal(np.isneginf(got), np.isneginf(expected)), (p, min_keep, slices)
    assert np.array_equal(got[np.isfinite(got)], expected[np.isfinite(expected)])  # the kept logits untouched


@pytest.mark.parametrize("slices", [1, 3, 7, 132])
@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.99])
def test_random_rows_keep_the_references_tokens(p, slices):
    logits = np.random.default_rng(int(p * 100) + slices).standard_normal((4, 1000)).astype(np.float32) * 3
    _same_kept(logits, p, slices=slices)


@pytest.mark.parametrize("p", [0.3, 0.8, 0.95])
def test_zipf_rows_of_a_llama_3_vocabulary_keep_the_references_tokens(p):
    _same_kept(zipf_logits(2, 128256, np.random.default_rng(7)), p, slices=132)


@pytest.mark.parametrize("slices", [1, 5, 64])
def test_ties_at_the_boundary_go_in_index_order_across_slices(slices):
    # integer logits: hundreds of tokens share each value, so the boundary falls inside a run of ties,
    # spread over the slices; a stable sort removes the lower indices first
    logits = np.round(np.random.default_rng(3).standard_normal((3, 2000)) * 2).astype(np.float32)
    for p in (0.2, 0.5, 0.77):
        _same_kept(logits, p, slices=slices)


def test_min_tokens_to_keep_caps_the_removals_inside_ties():
    logits = np.round(np.random.default_rng(4).standard_normal((3, 1000))).astype(np.float32)
    for min_keep in (1, 40, 999, 1000, 5000):
        _same_kept(logits, 0.01, min_keep, slices=6)


def test_adversarial_rows():
    rows = np.stack([
        np.zeros(600),  # all tied: the nucleus is the last ceil(p x 600) tokens by index
        np.r_[50.0, np.zeros(599)],  # one token holds all the mass
        np.r_[np.full(300, -np.inf), np.random.default_rng(5).standard_normal(300)],  # top-k left -inf behind
        np.linspace(-30, 30, 600),  # masses spanning 26 orders of magnitude
        np.where(np.arange(600) % 2, -0.0, 0.0),  # -0.0 and +0.0 alternating: equal logits, tied, with other bits
    ]).astype(np.float32)
    for p in (0.1, 0.5, 0.9):
        _same_kept(rows, p, slices=4)
        _same_kept(rows, p, 3, slices=4)


def test_ordered_keys_sort_as_the_floats_and_invert():
    x = np.array([-np.inf, -2.5, -1e-30, 0.0, 1e-30, 3.0, np.inf], dtype=np.float32)
    keys = ordered_keys(x)
    assert np.all(np.diff(keys.astype(np.int64)) > 0)
    assert [ordered_to_float(k) for k in keys] == list(x)


def test_the_picked_bucket_is_the_first_whose_cumulative_amount_passes_the_cut():
    # buckets 0..255 holding 1 each: below 10 with cut 15.5 passes in bucket 5 (10 + 6 > 15.5), 5 below it
    amounts = np.ones(256, dtype=np.int64)
    assert pick_bucket(amounts, amounts, 10, 15.5) == (5, 15)
    counts = np.zeros(256, dtype=np.int64)
    counts[[3, 200]] = 1  # the cut is never passed: the last non-empty bucket, with all the rest below it
    assert pick_bucket(counts, counts, 0, 10) == (200, 1)


def test_removed_ties_are_the_most_that_keep_the_mass_within_the_cut():
    # below 1.0, ties of 0.25 each, cut 1.6: 1.0 + 2 x 0.25 = 1.5 <= 1.6 < 1.75
    assert removed_ties(np.float32(1.0), np.float32(0.25), np.float32(1.6), 10) == 2
    assert removed_ties(np.float32(1.0), np.float32(0.25), np.float32(1.6), 1) == 1  # only one tied token
    assert removed_ties(np.float32(2.0), np.float32(0.25), np.float32(1.6), 10) == 0  # past the cut already
    assert removed_ties(np.float32(0.0), np.float32(0.0), np.float32(0.0), 7) == 7  # massless ties all go


def test_a_row_is_split_over_enough_blocks_to_cover_the_sms():
    # an H200's 132 SMs: batch 1 -> 132 slices of 972 tokens; batch 16 -> 9 per row; batch 200 -> 1; a
    # 1000-token row holds only 3 slices of 256 threads' worth
    assert [slices_for(b, 128256, 132) for b in (1, 16, 200)] == [132, 9, 1]
    assert slices_for(1, 1000, 132) == 3
