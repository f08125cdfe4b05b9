"""Jacobi decoding reaches greedy decoding's tokens in no more sequential passes, fewer when blocks converge."""
import numpy as np
import pytest

from infersim.kernels.jacobi import jacobi_decode
from infersim.kernels.tiny_transformer import TinyTransformer, greedy_decode


class NextTokenRule:
    """A hand-made "model" whose greedy next token is rule(previous token): one-hot logits per position."""

    def __init__(self, rule, vocab: int = 10):
        self.rule, self.vocab, self.passes = rule, vocab, 0

    def position_logits(self, tokens):
        self.passes += 1
        return np.eye(self.vocab)[[self.rule(t) for t in tokens]]


@pytest.mark.parametrize("seed, layers", [(0, 1), (1, 2), (2, 2), (4, 1), (5, 4)])
@pytest.mark.parametrize("block_size", [1, 3, 4, 8])
def test_jacobi_output_equals_greedy_decoding_token_for_token(seed, layers, block_size):
    model = TinyTransformer(layers=layers, seed=seed)
    result = jacobi_decode(model, [3, 1, 4], 12, block_size)
    assert result.tokens == greedy_decode(model, [3, 1, 4], 12)
    # greedy spends one pass per new token; a block of m guesses is exact after at most m passes
    assert result.passes == sum(result.block_passes) <= 12


def test_block_size_one_is_plain_greedy_with_one_pass_per_token():
    model = TinyTransformer(layers=2, seed=2)
    result = jacobi_decode(model, [3, 1, 4], 9, 1)
    assert result.tokens == greedy_decode(model, [3, 1, 4], 9)
    assert result.passes == 9 and result.block_passes == (1,) * 9


def test_a_constant_continuation_converges_in_two_passes_then_one_per_block():
    model = NextTokenRule(lambda t: 7)
    result = jacobi_decode(model, [2, 5], 8, 4)
    # block 1 guesses [5, 5, 5, 5]; pass 1 predicts 7 everywhere (changed), pass 2 predicts 7 again: the fixed
    # point, 2 passes. Block 2 guesses [7, 7, 7, 7], already the answer: pass 1 changes nothing, 1 pass.
    assert result.tokens == [2, 5] + [7] * 8
    assert result.block_passes == (2, 1) and result.passes == 3 == model.passes


def test_a_counting_continuation_needs_every_pass_of_the_block():
    model = NextTokenRule(lambda t: (t + 1) % 10)
    result = jacobi_decode(model, [2], 8, 4)
    # guesses [2, 2, 2, 2] -> [3, 3, 3, 3] -> [3, 4, 4, 4] -> [3, 4, 5, 5] -> [3, 4, 5, 6]: one more right token
    # per pass, never a fixed point before pass 4, which is exact by construction and ends the block
    assert result.tokens == [2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert result.block_passes == (4, 4) and result.passes == 8


def test_a_seeded_model_repeating_its_last_prompt_token_converges_in_one_pass_per_block():
    model = TinyTransformer(layers=4, seed=3)
    assert greedy_decode(model, [3, 1, 4], 16)[3:] == [4] * 16
    # every block's guesses (the last token, 4, repeated) are already greedy's tokens, so the first parallel
    # pass predicts them unchanged: a fixed point after one pass, ceil(16 / m) passes in all
    for block_size, passes in [(4, 4), (5, 4), (8, 2), (16, 1)]:
        result = jacobi_decode(model, [3, 1, 4], 16, block_size)
        assert result.tokens[3:] == [4] * 16 and result.passes == passes


@pytest.mark.parametrize("kwargs, field", [(dict(block_size=0), "block_size"),
                                           (dict(max_new_tokens=-1), "max_new_tokens"),
                                           (dict(prompt=[]), "prompt")])
def test_bad_arguments_are_named_in_the_error(kwargs, field):
    args = dict(model=TinyTransformer(), prompt=[1], max_new_tokens=4, block_size=2) | kwargs
    with pytest.raises(ValueError, match=field):
        jacobi_decode(**args)
