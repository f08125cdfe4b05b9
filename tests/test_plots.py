"""The figures read clearly: roofline labels never overlap, the panels over time of a run summarise its steps
per time bin, and the serving plot's rate axis names its ticks. Asserted on the figure objects, not on
pixels."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from infersim.plots import TIME_BINS, bin_steps, roofline_figure, run_figure, serving_figure
from infersim.roofline import StepOptions, decode_batch, get_hardware, get_model, step_cost
from infersim.serving import Comparison, ServingRun


@pytest.fixture(scope="module")
def roofline_labels():
    """The walkthrough's case: Llama-3.1-8B decode, batch 32 at context 2048 on an H100 SXM, where the five
    GEMMs and the three norms (with rope) used to pile up into unreadable clusters."""
    cost = step_cost(get_model("llama-3.1-8b"), get_hardware("h100-sxm"), decode_batch([2048] * 32), StepOptions())
    fig = roofline_figure(cost, get_hardware("h100-sxm"), "decode")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts]
    yield labels, ax.get_window_extent(renderer)
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_roofline_labels_never_overlap_and_stay_inside_the_axes(roofline_labels):
    labels, axes_box = roofline_labels
    for i, (text, box) in enumerate(labels):
        assert axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1), text
        for other, other_box in labels[i + 1:]:
            assert not box.overlaps(other_box), (text, other)


def test_ops_at_one_spot_share_one_label_naming_each_once(roofline_labels):
    labels, _ = roofline_labels
    names = [name for text, _ in labels for name in text.replace("\n", " ").split(", ")]
    # Every op with FLOPs and bytes is named once: residual_add runs twice a layer yet lands on one spot.
    assert sorted(names) == sorted(["input_norm", "qkv_proj", "rope", "attention", "o_proj", "residual_add",
                                    "post_attn_norm", "ffn_up", "ffn_act", "ffn_down", "final_norm", "lm_head",
                                    "sampling"])
    # The five GEMMs all sit at ~31.6 FLOP/B (batch 32 of fp16 weights: 2*32 FLOP per 2-byte weight, less
    # the activations) and within 0.15 decades of attained FLOP/s: one label.
    gemms = [text for text, _ in labels if "ffn_up" in text]
    assert set(gemms[0].replace("\n", " ").split(", ")) == {"qkv_proj", "o_proj", "ffn_up", "ffn_down", "lm_head"}
    # rope (0.74 FLOP/B) sits 0.12 decades left of the norms (0.985 FLOP/B), ~11 points on this axis: apart.
    assert "rope" in [text for text, _ in labels]


def synthetic_run(queue_len, duration_s=0.01):
    """A run of one replica whose steps last `duration_s` each, with the given queue lengths."""
    n = len(queue_len)
    timeline = {"start_s": np.arange(n) * duration_s, "duration_s": np.full(n, duration_s),
                "replica": np.zeros(n, dtype=int), "batch_seqs": np.full(n, 8), "kv_blocks_used": np.full(n, 50),
                "queue_len": np.asarray(queue_len)}
    table = {"state": np.array(["done"]), "ttft_s": np.array([0.1]), "tpot_s": np.array([0.01]),
             "e2e_s": np.array([1.0])}
    return SimpleNamespace(timeline=timeline, table=table, total_blocks=100)


def test_a_queue_flickering_between_0_and_1_draws_a_half_height_mean_over_a_0_to_1_band():
    # 4,000 steps of 10 ms (40 s) in 200 bins of 0.2 s: 20 steps a bin, half of them with one request waiting.
    fig = run_figure(synthetic_run(np.arange(4000) % 2), "flicker")
    queue = next(ax for ax in fig.axes if ax.get_title() == "queue")
    band, mean = queue.patches
    assert len(mean.get_data().values) == TIME_BINS  # a value per bin, not a line per step
    np.testing.assert_allclose(mean.get_data().values, 0.5)
    np.testing.assert_array_equal(band.get_data().baseline, 0)
    np.testing.assert_array_equal(band.get_data().values, 1)
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_binned_steps_weigh_each_step_by_its_time_in_the_bin():
    # Bin [0, 2): 2 for 1 s then 4 for 1 s -> mean 3. Bin [2, 4): 4 for 1 s then 10 for 1 s -> mean 7.
    binned = bin_steps(np.array([0.0, 1.0, 3.0]), np.array([1.0, 2.0, 1.0]), np.array([2.0, 4.0, 10.0]),
                       np.array([0.0, 2.0, 4.0]))
    np.testing.assert_allclose(binned.mean, [3, 7])
    np.testing.assert_array_equal(binned.low, [2, 4])
    np.testing.assert_array_equal(binned.high, [4, 10])


def test_binned_steps_average_over_busy_time_and_leave_idle_bins_empty():
    # 6 for 0.5 s then idle; nothing in [2, 4); 2 for 1 s from 4 s -> means 6, none, 2.
    binned = bin_steps(np.array([0.0, 4.0]), np.array([0.5, 1.0]), np.array([6.0, 2.0]), np.array([0.0, 2.0, 4.0, 6.0]))
    np.testing.assert_allclose(binned.mean, [6, np.nan, 2])
    np.testing.assert_allclose(binned.low, [6, np.nan, 2])
    np.testing.assert_allclose(binned.high, [6, np.nan, 2])


def test_a_step_longer_than_a_bin_fills_every_bin_it_spans():
    binned = bin_steps(np.array([0.0]), np.array([5.0]), np.array([3.0]), np.arange(6.0))
    np.testing.assert_allclose(binned.mean, 3)
    np.testing.assert_allclose(binned.low, 3)
    np.testing.assert_allclose(binned.high, 3)


def serving_run(rate):
    return Comparison(ServingRun("f.csv:2", "m", "h100-sxm", 1, 100, 10, 50, rate, 50.0, 10.0, 100.0), 60.0, 8.0,
                      100.0)


def test_the_serving_plot_ticks_rates_as_numbers_and_the_unbounded_run_as_all_at_once():
    fig = serving_figure([serving_run(rate) for rate in (2.0, 4.0, 12.0, math.inf)], "runs")
    fig.canvas.draw()
    ax = fig.axes[0]
    # Octaves from 2 to 16 (12 rounds up to 16), then the unbounded run one octave past: at 32.
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8", "16", "all at once"]
    np.testing.assert_array_equal(ax.get_xticks(), [2, 4, 8, 16, 32])
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [2, 4, 12, 32])
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_the_serving_plot_has_no_all_at_once_tick_without_an_unbounded_run():
    fig = serving_figure([serving_run(rate) for rate in (0.5, 1.0)], "runs")
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.5", "1"]
    import matplotlib.pyplot as plt
    plt.close(fig)
