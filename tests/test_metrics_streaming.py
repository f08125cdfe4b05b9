"""Metrics kept as NumPy columns: the summary of a run whose timeline is streamed (only its totals kept)
equals the summary from the whole timeline, and weighted percentiles found by selection equal those read
off a sorted cumulative distribution."""
import functools

import numpy as np
import pytest

import infersim.sim.run as run_module
from infersim.roofline import get_hardware, get_model
from infersim.sim.metrics import Metrics, RunRecord, StepRecord, TimelineTotals, weighted_percentiles
from infersim.sim.run import RunConfig, requests_from, simulate
from infersim.sim.workload import Workload


def _percentiles_by_sorting(values, weights, quantiles):
    """The definition: the first value, in sorted order, at which the cumulative weight reaches q of the total."""
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(weights[order])
    return values[order][np.searchsorted(cdf, np.asarray(quantiles) * cdf[-1], side="left")]


def test_weighted_percentiles_by_selection_match_the_sorted_cumulative_distribution():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        # ties (few distinct values) and zero weights are where a selection could go wrong
        values = rng.integers(0, 5, n) * 0.5 if trial % 2 else rng.random(n)
        weights = rng.integers(0 if trial % 3 == 0 else 1, 4, n)
        if weights.sum() == 0:
            continue
        quantiles = [0.0, 0.5, 0.9, 0.99, 1.0]
        assert weighted_percentiles(values, weights, quantiles).tolist() == \
            _percentiles_by_sorting(values, weights, quantiles).tolist()


def test_weighted_median_by_hand():
    # 8 tokens: 0.1 x 3, 0.2 x 4, 0.3 x 1: the 4th token (half of 8) is the first at 0.2; 7.2 of 8 (p90)
    # needs the 8th, at 0.3
    assert weighted_percentiles(np.array([0.3, 0.1, 0.2]), np.array([1, 3, 4]), [0.5, 0.9]).tolist() == [0.2, 0.3]


def test_timeline_totals_of_two_steps_by_hand():
    metrics = Metrics(block_size_tokens=4)
    metrics.step(StepRecord(0.0, 0.5, 0, 2, 10, 0, 3, 0, 10))  # 3 blocks = 12 slots, 10 held: 2 empty
    metrics.run(np.array([1.0]), np.array([0.25]), RunRecord(0, 2, 3, 0, 0, 2, 0, 10), np.array([2, 2, 2, 2]))
    totals = TimelineTotals.of(metrics.timeline(), 4)
    # the run's step opens 2 blocks (both sequences at a boundary): 5 blocks = 20 slots, 12 tokens held
    assert totals == (2, 0.75, 0.5 * 3 + 0.25 * 5, 0.5 * 12 + 0.25 * 20, 0.5 * 2 + 0.25 * 8, 0.5 * 2 + 0.25 * 2, 5)


@pytest.mark.parametrize("chunk_rows", [7, 64])
def test_a_streamed_timeline_gives_the_summary_of_the_whole_timeline(monkeypatch, chunk_rows):
    cfg = RunConfig(get_model("tiny-llama"), get_hardware("a100-sxm-80gb"))
    rng = np.random.default_rng(3)
    n = 60
    wl = Workload(np.sort(rng.random(n)) * 2.0, rng.integers(20, 300, n), rng.integers(1, 60, n))
    whole = simulate(cfg, requests_from(wl))
    monkeypatch.setattr(run_module, "Metrics", functools.partial(Metrics, stream_after_rows=3 * chunk_rows,
                                                                 chunk_rows=chunk_rows))
    streamed = simulate(cfg, requests_from(wl))
    assert whole.timeline is not None and streamed.timeline is None and streamed.metrics.streamed
    assert whole.summary["steps"] > 3 * chunk_rows  # it did stream
    for key, value in whole.summary.items():
        # the same sums, added chunk by chunk: equal but for rounding
        assert streamed.summary[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key


def test_weighted_percentiles_sum_int32_weights_past_two_to_the_31():
    # four gaps of 2^30 tokens each: 2^32 in all, which an int32 sum would wrap; the median (2^31 tokens)
    # is reached at the second smallest gap
    weights = np.full(4, 1 << 30, dtype=np.int32)
    assert weighted_percentiles(np.array([0.4, 0.1, 0.3, 0.2]), weights, [0.5]).tolist() == [0.2]
