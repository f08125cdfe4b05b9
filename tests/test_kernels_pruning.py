"""Magnitude and Wanda pruning: masks worked out by hand, the patterns' counts, and Wanda keeping the weights
that outlier activations multiply."""
import numpy as np
import pytest

from infersim.kernels.pruning import magnitude_score, n_of_m_mask, pruning_report, unstructured_mask, wanda_score

# Two outputs by eight inputs, as the paper writes W; our W is its transpose ([in_features, out_features]).
W_OUT_BY_IN = np.array([[0.9, -0.1, 0.5, -0.7, 0.2, 0.8, -0.3, 0.4],
                        [-0.2, 0.6, -0.9, 0.1, 0.7, -0.4, 0.3, -0.5]], dtype=np.float32)
# X = diag(norms): eight tokens, each with one nonzero feature, so ||X_j||_2 = norms[j].
X = np.diag([1.0, 10.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0]).astype(np.float32)

# |W| rows:            [0.9, 0.1, 0.5, 0.7 | 0.2, 0.8, 0.3, 0.4] and [0.2, 0.6, 0.9, 0.1 | 0.7, 0.4, 0.3, 0.5]
# Wanda |W| x norms:   [0.9, 1.0, 0.5, 0.7 | 0.2, 0.8, 0.6, 0.4] and [0.2, 6.0, 0.9, 0.1 | 0.7, 0.4, 0.6, 0.5]
HAND_MASKS = {
    # 50%: drop the 4 lowest of each row. Magnitude row 0 drops 0.1, 0.2, 0.3, 0.4 (inputs 1, 4, 6, 7),
    # row 1 drops 0.1, 0.2, 0.3, 0.4 (inputs 3, 0, 6, 5).
    ("magnitude", "50%"): [[1, 0, 1, 1, 0, 1, 0, 0], [0, 1, 1, 0, 1, 0, 0, 1]],
    # Wanda row 0 drops 0.2, 0.4, 0.5, 0.6 (inputs 4, 7, 2, 6): input 1 (0.1 x 10) is now kept;
    # row 1 drops 0.1, 0.2, 0.4, 0.5 (inputs 3, 0, 5, 7): input 6 (0.3 x 2) is kept, 7 is not.
    ("wanda", "50%"): [[1, 1, 0, 1, 0, 1, 0, 0], [0, 1, 1, 0, 1, 0, 1, 0]],
    # 2:4: the top 2 of each half. Magnitude row 0: {0.9, 0.7} at 0, 3 and {0.8, 0.4} at 5, 7;
    # row 1: {0.6, 0.9} at 1, 2 and {0.7, 0.5} at 4, 7.
    ("magnitude", "2:4"): [[1, 0, 0, 1, 0, 1, 0, 1], [0, 1, 1, 0, 1, 0, 0, 1]],
    # Wanda row 0: {0.9, 1.0} at 0, 1 and {0.8, 0.6} at 5, 6; row 1: {6.0, 0.9} at 1, 2 and {0.7, 0.6} at 4, 6.
    ("wanda", "2:4"): [[1, 1, 0, 0, 0, 1, 1, 0], [0, 1, 1, 0, 1, 0, 1, 0]],
}


SCORES = {"magnitude": magnitude_score, "wanda": lambda w: wanda_score(w, X)}
PATTERNS = {"50%": lambda score: unstructured_mask(score, 0.5), "2:4": lambda score: n_of_m_mask(score, 2, 4)}


@pytest.mark.parametrize("score_name,pattern", list(HAND_MASKS))
def test_masks_of_a_hand_made_two_by_eight_matrix(score_name, pattern):
    mask = PATTERNS[pattern](SCORES[score_name](W_OUT_BY_IN.T))
    assert mask.T.astype(int).tolist() == HAND_MASKS[score_name, pattern]


def test_two_of_four_keeps_exactly_two_in_every_group_of_four():
    score = np.abs(np.random.default_rng(0).standard_normal((64, 24)))
    mask = n_of_m_mask(score)
    assert np.all(mask.reshape(16, 4, 24).sum(axis=1) == 2)


@pytest.mark.parametrize("sparsity,pruned_per_output", [(0.0, 0), (0.3, 30), (0.5, 50), (0.999, 99)])
def test_unstructured_prunes_the_fraction_asked_and_only_the_lowest_scores(sparsity, pruned_per_output):
    score = np.abs(np.random.default_rng(1).standard_normal((100, 7)))
    mask = unstructured_mask(score, sparsity)
    assert np.all((~mask).sum(axis=0) == pruned_per_output)  # floor(sparsity x 100)
    if pruned_per_output:
        assert np.all(np.where(mask, score, np.inf).min(axis=0) > np.where(mask, -np.inf, score).max(axis=0))


def test_wanda_loses_less_output_than_magnitude_on_outlier_activations():
    report = pruning_report(tokens=128, features=128, out_features=32)
    for pattern in ("50% unstructured", "2:4"):
        assert report[pattern]["wanda"] < 0.5 * report[pattern]["magnitude"]
    assert report["2:4"]["wanda"] > report["50% unstructured"]["wanda"]  # 2:4 is the stricter pattern


def test_bad_pruning_arguments_are_refused():
    score = np.ones((12, 3))
    with pytest.raises(ValueError, match=r"sparsity must be a fraction in \[0, 1\), got 1.0"):
        unstructured_mask(score, 1.0)
    with pytest.raises(ValueError, match="m=8 must divide in_features=12"):
        n_of_m_mask(score, 2, 8)
    with pytest.raises(ValueError, match="n:m sparsity needs 0 < n < m, got 4:4"):
        n_of_m_mask(score, 4, 4)
    with pytest.raises(ValueError, match="calibration in_features=5 must equal w's in_features=12"):
        wanda_score(score, np.ones((2, 5)))
