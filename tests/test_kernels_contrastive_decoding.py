"""Contrastive decoding (Li et al. 2023, Eq. 2-4) against hand-worked scores and the TinyTransformer."""
import numpy as np
import pytest

from infersim.kernels.contrastive_decoding import contrastive_decode, contrastive_scores
from infersim.kernels.tiny_transformer import TinyTransformer, greedy_decode

EXPERT_P = np.array([0.5, 0.3, 0.16, 0.04])
AMATEUR_P = np.array([0.6, 0.1, 0.29, 0.01])


def test_scores_are_the_log_ratio_on_the_expert_plausible_head():
    # alpha = 0.1: V_head = {v : p_e(v) >= 0.1 * 0.5 = 0.05} = tokens 0, 1, 2 (0.04 misses it).
    # scores ln(.5/.6) = -0.1823, ln(.3/.1) = 1.0986, ln(.16/.29) = -0.5947, -inf: argmax token 1, where the
    # expert alone would take token 0. Logits are the log-probabilities plus any per-row constant.
    # The second row is the first reversed, to check the head is taken per row.
    expert = np.log(np.stack([EXPERT_P, EXPERT_P[::-1]])) + 2.0
    amateur = np.log(np.stack([AMATEUR_P, AMATEUR_P[::-1]])) - 1.0
    scores = contrastive_scores(expert, amateur, alpha=0.1)
    expected = [-0.18232, 1.09861, -0.59470, -np.inf]
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    assert scores[1] == pytest.approx(expected[::-1], abs=1e-5)
    assert np.argmax(scores, axis=1).tolist() == [1, 2]
    # alpha = 0.05 lowers the bar to 0.025: token 3 joins the head and the amateur's 0.01 gives it
    # ln(.04/.01) = 1.386, the best score -- the implausible token the head is there to keep out
    wide = contrastive_scores(expert[:1], amateur[:1], alpha=0.05)[0]
    assert wide[3] == pytest.approx(np.log(4)) and np.argmax(wide) == 3


def test_an_amateur_identical_to_the_expert_scores_zero_and_ties_go_to_the_lowest_plausible_token():
    # p_e / max p_e = exp(z - 3) = e^-2 = .14, e^-.5 = .61, 1, e^-3 = .05: alpha = 0.5 keeps tokens 1 and 2,
    # both score 0, and the tie goes to token 1 although the expert's argmax is token 2
    logits = np.array([[1.0, 2.5, 3.0, 0.0]])
    scores = contrastive_scores(logits, logits, alpha=0.5)
    assert scores.tolist() == [[-np.inf, 0.0, 0.0, -np.inf]]

    def model(tokens):
        return logits[0]
    assert contrastive_decode(model, model, [0], alpha=0.5, max_new_tokens=2) == [0, 1, 1]


@pytest.mark.parametrize("seed", [0, 3])
def test_alpha_one_keeps_only_the_expert_argmax_so_decoding_is_the_expert_greedy(seed):
    expert, amateur = TinyTransformer(layers=3, seed=seed), TinyTransformer(layers=1, seed=seed + 1)
    out = contrastive_decode(lambda t: expert(t)[0], lambda t: amateur(t)[0], [4, 5], alpha=1.0, max_new_tokens=8)
    assert out == greedy_decode(expert, [4, 5], 8)


def test_a_shallow_amateur_steers_a_deep_expert_off_its_greedy_path_within_the_plausible_head():
    # expert: 3 layers, seed 3; amateur: 1 layer, seed 4. The expert's greedy path repeats token 1.
    expert, amateur = TinyTransformer(layers=3, seed=3), TinyTransformer(layers=1, seed=4)
    out = contrastive_decode(lambda t: expert(t)[0], lambda t: amateur(t)[0], [4, 5], alpha=0.1, max_new_tokens=8)
    greedy = greedy_decode(expert, [4, 5], 8)
    assert greedy[2:] == [1] * 8
    assert sum(a != b for a, b in zip(out, greedy)) >= 1
    for i in range(2, len(out)):  # every chosen token is one the expert finds plausible: p >= 0.1 max p
        logits = expert(out[:i])[0].astype(np.float64)
        p = np.exp(logits - logits.max())
        assert p[out[i]] >= 0.1 * p.max()


def test_decoding_appends_eos_and_stops():
    # the expert prefers the next token of the chain 1 -> 2 -> 3 -> 0 (EOS); a uniform amateur changes nothing
    def expert(tokens):
        logits = np.zeros(4)
        logits[(tokens[-1] + 1) % 4] = 5.0
        return logits

    def uniform(tokens):
        return np.zeros(4)
    assert contrastive_decode(expert, uniform, [1], alpha=0.1, max_new_tokens=6, eos_id=0) == [1, 2, 3, 0]
    assert contrastive_decode(expert, uniform, [1], alpha=0.1, max_new_tokens=6) == [1, 2, 3, 0, 1, 2, 3]


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_alpha_outside_zero_one_is_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        contrastive_scores(np.zeros((1, 4)), np.zeros((1, 4)), alpha)
