"""Whether a simulated run meets a plan's SLOs: judged on the whole run (`check_slo`), or settled while it
runs, as soon as the requests done so far prove it misses them whatever the others do (`SloWatch`, the
planner's early stop: a run above a candidate's sustainable rate need not be simulated to its end).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from infersim.plan import PlanSlo
    from infersim.sim.request import Request

LATENCY_METRICS = ("ttft_s", "tpot_s", "e2e_s", "itl_s")


UNSERVED = "unserved requests"  # the name of the bound every SLO check holds: each request served


class SloCheck(NamedTuple):
    meets: bool
    worst_ratio: float  # the largest observed / bound (for goodput and served requests: required / achieved)
    worst: str  # that bound and what was observed, in words
    worst_name: str  # that bound's name: 'TPOT p99', 'goodput' or UNSERVED


def check_slo(slo: PlanSlo, result) -> SloCheck:
    """Whether a run (sim.run.RunResult) meets every bound. Percentiles are over completed requests (TPOT:
    those of more than one output token; ITL: every gap between tokens, as summary.json's itl_s); a
    request refused or left unfinished fails the run."""
    from infersim.sim.metrics import weighted_percentiles
    from infersim.sim.request import DONE
    t = result.table
    done = t["state"] == DONE
    n = max(1, len(done))
    checks = [] if done.all() else [(n / max(done.sum(), 1e-9), f"{n - int(done.sum())} of {n} requests not served",
                                     UNSERVED)]
    for metric in LATENCY_METRICS:
        bounds = getattr(slo, metric)
        if not bounds or not done.any():  # nothing served: the unserved requests are the reason, not latencies
            continue
        if metric == "itl_s":
            values, weights = result.metrics.itl_gaps()
        else:
            values = t[metric][done & ((t["output_tokens"] > 1) if metric == "tpot_s" else True)].astype(float)
            weights = np.ones(len(values))
        for key, bound in bounds.items():
            if len(values) == 0:
                observed = math.inf
            elif key == "mean":
                observed = float(np.average(values, weights=weights))
            elif metric == "itl_s":
                observed = float(weighted_percentiles(values, weights, [float(key[1:]) / 100])[0])
            else:
                observed = float(np.percentile(values, float(key[1:])))
            checks.append((observed / bound, f"{_label(metric, key)} {observed:.4g} s > {bound:g} s" if observed > bound
                           else f"{_label(metric, key)} {observed:.4g} s <= {bound:g} s", _label(metric, key)))
    if slo.goodput_fraction is not None:
        ok = done.copy()
        for metric, bounds in (("ttft_s", slo.ttft_s), ("tpot_s", slo.tpot_s)):
            if bounds:
                ok &= np.nan_to_num(t[metric].astype(float), nan=0.0) <= max(bounds.values())
        achieved = float(ok.sum()) / n
        checks.append((slo.goodput_fraction / max(achieved, 1e-9),
                       f"goodput {achieved:.1%} of requests within bounds (required {slo.goodput_fraction:.0%})",
                       "goodput"))
    ratio, worst, name = max(checks, key=lambda c: c[0])
    return SloCheck(bool(ratio <= 1.0), float(ratio), worst, name)


def _label(metric: str, key: str) -> str:
    return f"{metric[:-2].upper()} {key}"


def request_latency_s(req: Request, metric: str) -> float:
    """A completed request's TTFT, TPOT or E2E, as sim.metrics.request_table computes it (TPOT: NaN for a
    request of one output token)."""
    if metric == "ttft_s":
        return req.first_token_s - req.arrival_s
    if metric == "e2e_s":
        return req.completion_s - req.arrival_s
    return (req.completion_s - req.first_token_s) / (req.output_tokens - 1) if req.output_tokens > 1 else math.nan


def over_bound_to_miss(count: int, percentile: float) -> int:
    """How many of `count` values must exceed a bound for their `percentile` to exceed it. np.percentile
    interpolates linearly between the order statistics v[floor(h)] and v[floor(h) + 1], h = (count - 1) x
    percentile / 100 (computed here as NumPy computes it), so it is at least v[floor(h)], which exceeds the
    bound once count - floor(h) values do (p99 of 2,000: h = 1979.01, 21 values)."""
    return count - math.floor((count - 1) * (percentile / 100))


class _Bound:
    """One latency bound under watch: its requests seen over it, or (a mean) the sum of their values."""

    def __init__(self, metric: str, key: str, bound_s: float, count: int):
        self.metric, self.key, self.bound_s, self.count = metric, key, bound_s, count
        self.needed = None if key == "mean" else over_bound_to_miss(count, float(key[1:]))
        self.over, self.least_over_s, self.sum_s = 0, math.inf, 0.0

    def missed(self, value_s: float) -> SloCheck | None:
        """Take one request's value; the bound's verdict once it is certainly missed."""
        if math.isnan(value_s):
            return None
        if self.needed is None:
            # values are >= 0, so the mean over all `count` is at least the sum so far / count; the margin
            # covers NumPy summing in another order
            self.sum_s += float(value_s)
            if self.sum_s > self.count * self.bound_s * (1 + 1e-9):
                return SloCheck(False, self.sum_s / (self.count * self.bound_s),
                                f"{_label(self.metric, self.key)} > {self.bound_s:g} s (the requests done so far "
                                f"alone bring it to {self.sum_s / self.count:.4g} s)", _label(self.metric, self.key))
            return None
        if value_s > self.bound_s * (1 + 1e-9):  # a hair over, so that check_slo's observed / bound is > 1
            self.over += 1
            self.least_over_s = min(self.least_over_s, float(value_s))
            if self.over >= self.needed:  # the percentile is at least the least of these
                return SloCheck(False, self.least_over_s / self.bound_s,
                                f"{_label(self.metric, self.key)} >= {self.least_over_s:.4g} s > {self.bound_s:g} s "
                                f"({self.over} of {self.count} requests over it)", _label(self.metric, self.key))
        return None


class SloWatch:
    """simulate's stop_when for a plan's SLOs: sees each request as it completes or is refused and returns
    True once the run certainly misses the SLOs (then `missed` says which bound, with a lower bound on its
    worst ratio), whatever the requests not yet done would do. What settles it, as `check_slo` judges:
    a refused request (every request must be served); for a percentile of a metric over the M requests it
    counts (every request for TTFT and E2E, those of more than one output token for TPOT: all of them once
    every request is served), `over_bound_to_miss(M, p)` requests over the bound; for a mean, values summing
    to more than M x the bound; for goodput g of N requests, more than N (1 - g) requests outside the TTFT
    or TPOT bound. ITL bounds (a percentile over every token gap) are left to `check_slo`. A run this never
    stops gets the same verdict from `check_slo` as before; one it stops would have failed there too."""

    def __init__(self, slo: PlanSlo, requests: list[Request]):
        n = len(requests)
        counts = {"ttft_s": n, "e2e_s": n, "tpot_s": sum(r.output_tokens > 1 for r in requests)}
        self._bounds = [_Bound(metric, key, bound, counts[metric]) for metric in ("ttft_s", "tpot_s", "e2e_s")
                        for key, bound in (getattr(slo, metric) or {}).items()]
        self._goodput = slo.goodput_fraction
        self._within_s = {m: max(getattr(slo, m).values()) for m in ("ttft_s", "tpot_s") if getattr(slo, m)}
        self._requests, self._outside = n, 0
        self.missed: SloCheck | None = None

    def __call__(self, req: Request) -> bool:
        from infersim.sim.request import DONE
        if self.missed is None:
            self.missed = self._missed(req) if req.state == DONE else SloCheck(
                False, self._requests / max(self._requests - 1, 1), f"request {req.id} refused: {req.reject_reason}",
                UNSERVED)
        return self.missed is not None

    def _missed(self, req: Request) -> SloCheck | None:
        values = {m: request_latency_s(req, m) for m in ("ttft_s", "tpot_s", "e2e_s")}
        for bound in self._bounds:
            verdict = bound.missed(values[bound.metric])
            if verdict is not None:
                return verdict
        if self._goodput is None:
            return None
        self._outside += any(values[m] > bound_s for m, bound_s in self._within_s.items())
        best = (self._requests - self._outside) / self._requests  # of the requests within bounds, at most
        if self._goodput / max(best, 1e-9) > 1.0:
            return SloCheck(False, self._goodput / max(best, 1e-9),
                            f"goodput at most {best:.1%} of requests within bounds ({self._outside} outside; "
                            f"required {self._goodput:.0%})", "goodput")
        return None
