"""Decoding kernels against hand-worked cases, transformers' semantics and statistics."""
import numpy as np
import pytest

from infersim.kernels.sampling import (beam_search, beam_search_all, contrastive_search, greedy, process_logits,
                                       repetition_penalty, sample, speculative_accept, top_k_filter, top_p_filter)
from infersim.kernels.tiny_transformer import TinyTransformer, greedy_decode

NEG = -np.inf


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_once():
    logits = np.array([[2.0, -2.0, 1.0, 0.5]], dtype=np.float32)
    out = process_logits(logits, np.array([[0, 1, 0, 0, -1]]), repetition=2.0)  # token 0 three times
    assert out.tolist() == [[1.0, -4.0, 1.0, 0.5]]


def test_top_k_keeps_ties_with_the_kth_value():
    logits = np.array([[3.0, 1.0, 2.0, 2.0, 0.0]], dtype=np.float32)
    assert top_k_filter(logits, 2).tolist() == [[3.0, NEG, 2.0, 2.0, NEG]]  # k=2 but the tie keeps three
    assert top_k_filter(logits, 1, min_tokens_to_keep=2).tolist() == [[3.0, NEG, 2.0, 2.0, NEG]]


def test_top_p_keeps_the_smallest_set_whose_mass_exceeds_p():
    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    logits = np.log(probs).astype(np.float32)
    # ascending cumulative mass: 0.05, 0.20, 0.50, 1.0; with p = 0.7, remove where <= 0.3: the two smallest
    assert np.isneginf(top_p_filter(logits, 0.7)).tolist() == [[False, False, True, True]]
    # p = 0.8: remove where <= 0.2, so 0.15 (cumulative 0.20) goes too -- 0.5 + 0.3 = 0.8 is not > 0.8
    assert np.isneginf(top_p_filter(logits, 0.8)).tolist() == [[False, False, True, True]]
    assert np.isneginf(top_p_filter(logits, 0.81)).tolist() == [[False, False, False, True]]
    assert np.isneginf(top_p_filter(logits, 0.01, min_tokens_to_keep=2)).tolist() == [[False, False, True, True]]


def test_processors_compose_in_transformers_order():
    # temperature before top-p changes which tokens survive: p = 0.6 on probabilities sharpened by T = 0.5
    logits = np.log(np.array([[0.5, 0.3, 0.2]])).astype(np.float32)
    out = process_logits(logits, temperature=0.5, top_p=0.6)
    # T = 0.5 squares the probabilities: 0.25, 0.09, 0.04 -> 0.66, 0.24, 0.11; cumulative ascending
    # 0.11, 0.34 <= 0.4 are removed, so only token 0 is left (at T = 1 tokens 0 and 1 would be)
    assert np.isneginf(out).tolist() == [[False, True, True]]
    assert np.isneginf(process_logits(logits, top_p=0.6)).tolist() == [[False, False, True]]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_top_p_removes_tied_tokens_in_index_order(backend):
    # four equal probabilities: ascending order is token order (a stable sort), cumulative 0.25, 0.5, 0.75,
    # 1; p = 0.5 removes where <= 0.5, tokens 0 and 1
    logits = np.zeros((1, 4), dtype=np.float32)
    assert np.isneginf(process_logits(logits, top_p=0.5, backend=backend)).tolist() == [[True, True, False, False]]
    # negative ties too: probabilities 0.0363 (tokens 0, 2, 4), 0.7286, 0.1626; with p = 0.93 the ascending
    # walk removes token 0 (0.0363 <= 0.07) and stops at token 2 (0.0725 > 0.07)
    logits = np.array([[-1.0, 2.0, -1.0, 0.5, -1.0]], dtype=np.float32)
    kept = np.isfinite(process_logits(logits, top_p=0.93, backend=backend))
    assert kept.tolist() == [[False, True, True, True, True]]


@pytest.mark.parametrize("kwargs", [dict(repetition=1.3), dict(temperature=0.7), dict(top_k=7),
                                    dict(top_p=0.9), dict(repetition=1.2, temperature=0.8, top_k=20, top_p=0.8,
                                                          min_tokens_to_keep=3)])
def test_numba_processors_match_numpy_on_a_batch(kwargs):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 50)).astype(np.float32) * 3
    context = rng.integers(-1, 50, (6, 12))
    a = process_logits(logits, context, **kwargs)
    b = process_logits(logits, context, backend="numba", **kwargs)
    assert np.array_equal(np.isneginf(a), np.isneginf(b))
    assert np.allclose(a[np.isfinite(a)], b[np.isfinite(b)], rtol=1e-6)


def test_greedy_takes_the_first_maximum_and_sampling_follows_the_softmax():
    assert greedy(np.array([[1.0, 3.0, 3.0]])).tolist() == [1]
    rng = np.random.default_rng(1)
    logits = np.log(np.array([[0.1, 0.6, 0.3]] * 60_000))
    counts = np.bincount(sample(logits, rng), minlength=3) / 60_000
    assert counts == pytest.approx([0.1, 0.6, 0.3], abs=0.01)


def test_beam_search_with_one_beam_is_greedy_and_wider_beams_score_at_least_as_well():
    model = TinyTransformer()
    one, _ = beam_search(model.logits, [1, 2], beams=1, max_new_tokens=6)
    assert one == greedy_decode(model, [1, 2], 6)

    def logprob(tokens):
        total = 0.0
        for i in range(2, len(tokens)):
            lg = model(tokens[:i])[0]
            total += lg[tokens[i]] - np.log(np.exp(lg - lg.max()).sum()) - lg.max()
        return total
    wide, score = beam_search(model.logits, [1, 2], beams=4, max_new_tokens=6, length_penalty=1.0)
    assert score == pytest.approx(logprob(wide) / 6)
    assert logprob(wide) >= logprob(one) - 1e-9


def test_length_penalty_decides_between_a_short_and_a_long_finished_beam():
    # vocab: 0 = EOS, 1, 2. After the prompt EOS has probability 0.5 and token 1 0.45, after which EOS has
    # 0.9: short = ln 0.5 / 1 = -0.69; long (1, EOS) = (ln 0.45 + ln 0.9) / 2 = -0.45 at penalty 1, but
    # (ln 0.45 + ln 0.9) / 2^0 = -0.90 at penalty 0, which then prefers the short one.
    def next_logits(seqs):
        rows = []
        for s in seqs:
            rows.append(np.log([0.5, 0.45, 0.05]) if len(s) == 1 else np.log([0.9, 0.05, 0.05]))
        return np.array(rows)
    long_, _ = beam_search(next_logits, [2], beams=2, max_new_tokens=3, length_penalty=1.0, eos_id=0)
    short, _ = beam_search(next_logits, [2], beams=2, max_new_tokens=3, length_penalty=0.0, eos_id=0)
    assert long_ == [2, 1, 0] and short == [2, 0]


# Vocabulary 0 = EOS, 1, 2, 3; prompt [3]. Next-token probabilities by the tokens generated so far (a
# missing key raises KeyError, so a search that asks past the step it should stop at fails).
EARLY_STOPPING_TABLE = {(): [0.4, 0.35, 0.15, 0.10], (1,): [0.3, 0.6, 0.06, 0.04], (2,): [0.15, 0.5, 0.25, 0.10],
                        (1, 1): [0.4, 0.25, 0.2, 0.15], (2, 1): [0.1, 0.5, 0.25, 0.15],
                        (1, 1, 1): [0.9, 0.05, 0.03, 0.02], (1, 1, 2): [0.05, 0.6, 0.2, 0.15]}


def _table_logits(sequences):
    return np.log([EARLY_STOPPING_TABLE[tuple(s[1:])] for s in sequences])


@pytest.mark.parametrize("early_stopping, expected", [
    (True, [([3, 0], -0.9163), ([3, 1, 0], -1.1269)]),
    (False, [([3, 1, 1, 0], -0.8256), ([3, 0], -0.9163)]),
    ("never", [([3, 1, 1, 1, 0], -0.7631), ([3, 1, 1, 0], -0.8256)]),
])
def test_early_stopping_modes_stop_at_different_steps(early_stopping, expected):
    # beams = 2, length_penalty = 1, max_new_tokens = 4; sums of ln p, score = sum / generated length (EOS in it)
    # step 1: EOS ln .4 = -0.9163 finishes [3,0] (score -0.9163); open [1] -1.0498, [2] -1.8971
    # step 2: [1,1] -1.5606 (open), [1,EOS] -2.2538 (rank 1 < beams: finished, -1.1269), [2,1] -2.5903 (open).
    #   Two finished: True stops here, returning the finished ones only, although the open [1,1] would
    #   score -1.5606 / 2 = -0.78. False: -0.78 > worst finished -1.1269, go on; "never": -1.5606 / 4 too.
    # step 3: [1,1,EOS] -2.4769 (rank 0, finished -0.8256 replaces -1.1269), [1,1,1] -2.9469, [1,1,2] -3.1700.
    #   Worst finished -0.9163. False: -2.9469 / 3 = -0.9823 <= -0.9163, stop. "never" bounds the open beam
    #   at the longest length: -2.9469 / 4 = -0.7367 > -0.9163, go on.
    # step 4: [1,1,1,EOS] -3.0523 finished at -0.7631; best open [1,1,2,1] -3.6808 / 4 = -0.92 cannot enter.
    hyps = beam_search_all(_table_logits, [3], beams=2, max_new_tokens=4, eos_id=0, early_stopping=early_stopping,
                           num_return_sequences=2)
    assert [h.tokens for h in hyps] == [tokens for tokens, _ in expected]
    assert [h.score for h in hyps] == pytest.approx([score for _, score in expected], abs=1e-4)
    assert beam_search(_table_logits, [3], 2, 4, eos_id=0, early_stopping=early_stopping) == hyps[0]


def test_num_return_sequences_are_the_best_finished_beams_best_first():
    model = TinyTransformer(seed=2)

    def logprob(tokens):  # the sequence's summed log-probability, one full pass per prefix
        lg = [model(tokens[:i])[0] for i in range(2, len(tokens))]
        return sum(g[t] - g.max() - np.log(np.exp(g - g.max()).sum()) for g, t in zip(lg, tokens[2:]))
    hyps = beam_search_all(model.logits, [1, 2], beams=4, max_new_tokens=5, num_return_sequences=3)
    assert len(hyps) == 3 and len({tuple(h.tokens) for h in hyps}) == 3
    assert [h.score for h in hyps] == pytest.approx([logprob(h.tokens) / 5 for h in hyps])
    assert hyps[0].score >= hyps[1].score >= hyps[2].score
    assert beam_search(model.logits, [1, 2], beams=4, max_new_tokens=5) == hyps[0]


@pytest.mark.parametrize("kwargs, field", [(dict(early_stopping="sometimes"), "early_stopping"),
                                           (dict(num_return_sequences=3), "num_return_sequences"),
                                           (dict(num_return_sequences=0), "num_return_sequences")])
def test_beam_search_rejects_unknown_modes_and_more_sequences_than_beams(kwargs, field):
    with pytest.raises(ValueError, match=field):
        beam_search_all(_table_logits, [3], beams=2, max_new_tokens=4, eos_id=0, **kwargs)


def test_processors_act_on_log_probabilities_which_are_not_renormalised():
    # vocab 0, 1, 2 with probabilities .2, .5, .3 after prompt [1]. Repetition penalty 2 on the log-probabilities
    # (as transformers' beam search applies it) multiplies token 1's ln .5 = -0.693 by 2: -1.386, below
    # token 2's ln .3 = -1.204, which now wins with score -1.204 (renormalised it would be ln(.3 / .75) = -0.92)
    def next_logits(sequences):
        return np.log([[0.2, 0.5, 0.3]] * len(sequences))
    seen = []

    def penalise(logprobs, sequences):
        seen.append(sequences)
        return repetition_penalty(logprobs, np.array(sequences), 2.0)
    plain = beam_search_all(next_logits, [1], beams=2, max_new_tokens=1, num_return_sequences=2)
    hyps = beam_search_all(next_logits, [1], beams=2, max_new_tokens=1, num_return_sequences=2, process=penalise)
    assert [h.tokens for h in plain] == [[1, 1], [1, 2]]
    assert [h.tokens for h in hyps] == [[1, 2], [1, 1]]
    assert [h.score for h in hyps] == pytest.approx([np.log(0.3), 2 * np.log(0.5)])
    assert seen == [[[1]]]


def test_contrastive_search_is_greedy_at_alpha_zero_and_avoids_repeats_with_a_penalty():
    model = TinyTransformer(seed=3)
    assert contrastive_search(model, [4, 5], top_k=4, alpha=0.0, max_new_tokens=8) == greedy_decode(model, [4, 5], 8)
    for seed in range(4):  # greedy decoding of these fixed models falls into a one-token loop ...
        model = TinyTransformer(seed=seed)
        plain = greedy_decode(model, [4, 5], 12)[2:]
        penalised = contrastive_search(model, [4, 5], top_k=5, alpha=0.9, max_new_tokens=12)[2:]
        assert len(set(plain)) == 1 and len(set(penalised)) >= 5  # ... which the degeneration penalty breaks


@pytest.mark.parametrize("gamma", [1, 3])
def test_speculative_sampling_emits_the_target_distribution(gamma):
    """Leviathan et al. 2023, Theorem 3.5: whatever the draft, the first emitted token ~ p."""
    rng = np.random.default_rng(7)
    p = np.array([0.05, 0.4, 0.1, 0.25, 0.2])
    q = np.array([0.3, 0.1, 0.3, 0.1, 0.2])  # a poor draft
    n = 40_000
    first = np.empty(n, dtype=np.int64)
    accepted = 0
    for t in range(n):
        draft = rng.choice(5, size=gamma, p=q)
        out = speculative_accept(draft, np.tile(q, (gamma, 1)), np.tile(p, (gamma + 1, 1)), rng)
        first[t] = out[0]
        accepted += len(out) - 1
    freq = np.bincount(first, minlength=5) / n
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n))
    # acceptance rate per token is sum_x min(p, q) = 0.05 + 0.1 + 0.1 + 0.1 + 0.2 = 0.55
    if gamma == 1:
        assert accepted / n == pytest.approx(0.55, abs=0.02)


def test_contrastive_search_appends_eos_and_stops():
    # a chain model: the next token is (last + 1) mod 4 with probability ~1, and every hidden state is the
    # same vector, so the degeneration penalty is equal for all candidates and the chain is followed
    def model(tokens):
        logits = np.full(4, -5.0)
        logits[(tokens[-1] + 1) % 4] = 5.0
        return logits, np.ones((len(tokens), 2))
    assert contrastive_search(model, [1], top_k=2, alpha=0.5, max_new_tokens=5, eos_id=0) == [1, 2, 3, 0]
    assert contrastive_search(model, [1], top_k=2, alpha=0.5, max_new_tokens=5) == [1, 2, 3, 0, 1, 2]
