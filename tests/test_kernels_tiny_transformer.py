"""The tiny transformer the decoding kernels run on: causal, and its parallel pass equals token-by-token."""
import numpy as np
import pytest

from infersim.kernels.tiny_transformer import TinyTransformer, greedy_decode


def test_a_parallel_pass_predicts_what_each_prefix_predicts_alone():
    model = TinyTransformer(layers=3, seed=1)
    tokens = [3, 1, 4, 1, 5, 9]
    every = model.position_logits(tokens)
    for end in range(1, len(tokens) + 1):
        np.testing.assert_allclose(every[end - 1], model(tokens[:end])[0], rtol=1e-5, atol=1e-5)


def test_every_layer_is_readable_through_the_tied_head():
    model = TinyTransformer(layers=4, seed=2)
    states = model.hidden_states([1, 2, 3])
    assert len(states) == 4 and all(s.shape == (3, 8) for s in states)
    np.testing.assert_allclose(model.head(states[-1][-1]), model([1, 2, 3])[0], rtol=1e-6)
    np.testing.assert_allclose(model.head(states[0]), states[0] @ model.embed.T, rtol=1e-6)


def test_greedy_decode_appends_the_argmax_of_each_pass():
    model = TinyTransformer(layers=2, seed=5)
    out = greedy_decode(model, [2, 7], 4)
    assert out[:2] == [2, 7] and len(out) == 6
    assert out[2] == int(np.argmax(model([2, 7])[0]))


def test_width_must_split_into_heads():
    with pytest.raises(ValueError, match="multiple of heads"):
        TinyTransformer(dim=10, heads=3)
