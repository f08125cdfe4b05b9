"""Early-exit decoding against full-depth greedy decoding and exits worked out from the model's own layers;
the batch-depth formula against hand sums and a Monte-Carlo mean."""
import math

import numpy as np
import pytest

from infersim.kernels.early_exit import batched_exit_depth, early_exit_decode
from infersim.roofline.early_exit import expected_batch_depth
from infersim.kernels.tiny_transformer import TinyTransformer, greedy_decode

PROMPT = [3, 1, 4, 1, 5]


def entropy(logits) -> float:
    """-sum p ln p of softmax(logits), written out apart from the module's."""
    p = np.exp(np.asarray(logits, dtype=np.float64) - np.max(logits))
    p /= p.sum()
    return -sum(x * math.log(x) for x in p if x > 0)


def first_confident_layer(model, layer_inputs, position, threshold):
    """(1-based exit layer, its logits) from a list of every layer's output rows [layers][positions, dim]."""
    for layer, outputs in enumerate(layer_inputs, start=1):
        logits = model.head(outputs[position])
        if layer == model.layers or entropy(logits) < threshold:
            return layer, logits


def exact_state_decode(model, prompt, new_tokens, threshold):
    """Early exit decided on the full model's states, recomputed from scratch for every token: what the
    recompute policy must give, since it fills every skipped state with the full model's value."""
    tokens, exits = list(prompt), []
    for _ in range(new_tokens):
        layer, logits = first_confident_layer(model, model.hidden_states(tokens), -1, threshold)
        exits.append(layer)
        tokens.append(int(np.argmax(logits)))
    return tokens, exits


@pytest.mark.parametrize("policy", ["copy", "recompute"])
@pytest.mark.parametrize("threshold", [0.0, -1.0])
def test_a_threshold_at_or_below_zero_is_full_depth_greedy(policy, threshold):
    model = TinyTransformer(layers=4, seed=1)
    result = early_exit_decode(model, PROMPT, 10, threshold, policy)
    assert result.tokens == greedy_decode(model, PROMPT, 10)
    assert result.exit_layers == (4,) * 10 and result.layer_passes == 4 * 10 and result.agreement == 1.0


@pytest.mark.parametrize("policy", ["copy", "recompute"])
def test_an_infinite_threshold_exits_every_token_after_layer_one(policy):
    model = TinyTransformer(layers=4, seed=1)
    result = early_exit_decode(model, PROMPT, 10, math.inf, policy)
    assert result.exit_layers == (1,) * 10
    # no token reaches layer 2, so no skipped state is ever needed: nothing to recompute
    assert result.layer_passes == 10 and result.recomputed_layer_passes == 0
    tokens = list(PROMPT)
    for _ in range(10):  # every token is the argmax of layer 1 read through the head
        tokens.append(int(np.argmax(model.head(model.hidden_states(tokens)[0][-1]))))
    assert result.tokens == tokens


def test_the_first_step_exits_at_the_first_layer_below_the_threshold():
    model = TinyTransformer(layers=4, seed=1)
    entropies = [entropy(model.head(h[-1])) for h in model.hidden_states(PROMPT)]
    # layer entropies at the prompt's last position, nats: 0.0209, 0.00008, 0.413, 0.573
    for threshold, layer in [(0.01, 2), (0.0001, 2), (0.03, 1), (0.5, 1), (0.00005, 4)]:
        expected = next((i + 1 for i, h in enumerate(entropies) if h < threshold), 4)
        assert expected == layer
        for policy in ("copy", "recompute"):
            assert early_exit_decode(model, PROMPT, 1, threshold, policy).exit_layers == (layer,)


@pytest.mark.parametrize("threshold", [0.01, 0.03, 0.1, 0.3])
def test_recompute_exits_as_decided_on_the_full_models_states_and_reports_its_agreement(threshold):
    model = TinyTransformer(layers=4, seed=0)
    result = early_exit_decode(model, PROMPT, 16, threshold, "recompute")
    tokens, exits = exact_state_decode(model, PROMPT, 16, threshold)
    assert result.tokens == tokens and result.exit_layers == tuple(exits)
    greedy = greedy_decode(model, PROMPT, 16)
    assert result.agreement == sum(a == b for a, b in zip(tokens[5:], greedy[5:])) / 16


def test_recompute_pays_once_for_each_skipped_state_a_deeper_token_later_needs():
    model = TinyTransformer(layers=4, seed=0)
    result = early_exit_decode(model, PROMPT, 16, 0.1, "recompute")
    # exits: thirteen tokens after layer 1, the fourteenth after layer 3, then two after layer 1. Layer 3
    # reads every earlier position's input to layers 2 and 3; inputs to layer 2 (layer 1's outputs) exist,
    # inputs to layer 3 are missing at the 13 early-exit positions: 13 recomputed layer-passes
    assert result.exit_layers == (1,) * 13 + (3, 1, 1)
    assert result.recomputed_layer_passes == 13 and result.layer_passes == 13 + 3 + 2 + 13
    copied = early_exit_decode(model, PROMPT, 16, 0.1, "copy")
    assert copied.exit_layers == result.exit_layers and copied.layer_passes == 18


def test_copy_feeds_the_exiting_state_to_every_deeper_layer():
    model = TinyTransformer(vocab=32, dim=16, layers=4, seed=0)
    prompt, threshold = [3, 1, 4], 0.01
    result = early_exit_decode(model, prompt, 3, threshold, "copy")
    tokens = result.tokens
    inputs = [model.embed_tokens(tokens[:5]), *model.hidden_states(tokens[:5])]  # the full model's, per layer
    # steps 1 and 2 (positions 2 and 3) exit after layer 1 on exact states
    for position in (2, 3):
        assert first_confident_layer(model, inputs[1:], position, threshold)[0] == 1
    # step 3 (position 4) under copy: positions 2 and 3 feed their layer-1 output into layers 3 and 4
    copied = [x.copy() for x in inputs]
    for layer in (2, 3):
        copied[layer][2:4] = inputs[1][2:4]
        copied[layer + 1][4] = model.layer(layer, copied[layer])[4]
    layer, logits = first_confident_layer(model, copied[1:], 4, threshold)
    assert result.exit_layers == (1, 1, layer) and tokens[5] == int(np.argmax(logits))
    # recompute sees the exact states and decides otherwise: the policy changes the output here
    exact_tokens, exact_exits = exact_state_decode(model, prompt, 3, threshold)
    assert exact_tokens[:5] == tokens[:5]
    assert (layer, tokens[5]) == (4, 17) and (exact_exits[2], exact_tokens[5]) == (3, 21)
    assert early_exit_decode(model, prompt, 3, threshold, "recompute").tokens == exact_tokens


def test_a_batch_runs_as_deep_as_its_deepest_token():
    assert batched_exit_depth([1, 3, 2]) == 3 and batched_exit_depth([2]) == 2


def test_expected_batch_depth_matches_hand_sums_for_two_layers():
    # exit after layer 1 or 2 with probability 1/2 each: E[max of b] = 1 + (1 - 0.5 ** b)
    assert expected_batch_depth([0.5, 0.5], 1) == pytest.approx(1.5)
    assert expected_batch_depth([0.5, 0.5], 2) == pytest.approx(1.75)  # max is 1 only if both exit at 1: 1/4
    assert expected_batch_depth([0.5, 0.5], 3) == pytest.approx(1.875)


def test_expected_batch_depth_matches_a_monte_carlo_mean():
    pmf = [0.4, 0.3, 0.2, 0.1]
    # batch 1 is the mean exit layer: 0.4 + 0.6 + 0.6 + 0.4 = 2.0
    assert expected_batch_depth(pmf, 1) == pytest.approx(2.0)
    draws = np.random.default_rng(0).choice(4, size=(100_000, 8), p=pmf) + 1
    # 1 + (1 - 0.4^8) + (1 - 0.7^8) + (1 - 0.9^8) = 3.5112; the sample mean's standard error is ~0.002
    assert expected_batch_depth(pmf, 8) == pytest.approx(3.5112, abs=1e-4)
    assert draws.max(axis=1).mean() == pytest.approx(expected_batch_depth(pmf, 8), abs=0.01)


@pytest.mark.parametrize("call, field", [
    (lambda: early_exit_decode(TinyTransformer(), [1], 2, 0.1, "skip"), "policy"),
    (lambda: early_exit_decode(TinyTransformer(), [1], 2, math.nan), "threshold"),
    (lambda: early_exit_decode(TinyTransformer(), [], 2, 0.1), "prompt"),
    (lambda: batched_exit_depth([]), "exit_layers"),
    (lambda: expected_batch_depth([0.5, 0.4], 2), "exit_probabilities"),
    (lambda: expected_batch_depth([0.5, 0.5], 0), "batch_size"),
])
def test_bad_arguments_are_named_in_the_error(call, field):
    with pytest.raises(ValueError, match=field):
        call()
