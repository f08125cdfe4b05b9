"""Capacity planning (`infersim plan PLAN.yaml`): from traffic and latency targets to a deployment, its cost
and the reasons behind the choice.

A plan names models, candidate GPUs (with a price per GPU-hour and, optionally, a power draw), candidate
configurations (the scenario file's sections: parallelism, quantization, engine, scheduler, KV cache,
cluster), a workload (a generator or a trace) and SLOs as teams write them (percentile bounds, a goodput
fraction). Every model x GPU x configuration is a candidate, deployed in units of one *replica*: the
configuration's cluster (one engine by default; a prefill pool and a decode pool when disaggregated). For
each candidate the planner finds the highest Poisson arrival rate one replica sustains within the SLOs
(a search over rate, each point simulated over several seeds), beside the roofline's steady-state ceiling;
then the replicas, GPUs and cost that serve the target rate, and a line on what limits it. Candidates are
ranked by cost per hour among those that meet the SLOs. See scenarios/plans/ for examples and plan.json's
keys in `plan_json`.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, NamedTuple, Optional, Union

import numpy as np
from pydantic import (AfterValidator, BeforeValidator, Field, StrictBool, ValidationError, create_model,
                      field_validator, model_validator)

from infersim.plan_slo import SloCheck, SloWatch, check_slo
from infersim.report import counted
from infersim.roofline.boundary import UNPRINTABLE_NAME, load_yaml, unprintable
from infersim.roofline.errors import HardwareLimit, SpecError
from infersim.scenario import DEFAULT_REQUESTS, Scenario, WorkloadSection, _Section, cluster_replicas, slo_bound
from infersim.schema import YamlFloat, YamlInt, spec_error
from infersim.sim.workload import MAX_SPAN_S

if TYPE_CHECKING:
    from infersim.sim.run import RunConfig, RunResult

# The scenario sections a configuration may set; each is validated exactly as in a scenario file.
CONFIGURATION_KEYS = ("parallelism", "quantization", "engine", "scheduler", "kv_cache", "cluster", "speculative",
                      "early_exit")
RATED_PROCESSES = ("poisson", "gamma", "constant")
DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TIMELINE_POINTS = 500  # the operating point's timeline is subsampled to at most this many steps
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)")


def _percentile_keys(bounds):
    """Bounds keyed by mean or pNN; checked before pydantic reads the keys as text, so that a key `99` is
    told to be p99 (not that it must be text)."""
    if not isinstance(bounds, dict):
        return bounds  # pydantic's own error: it must be a mapping
    for key in bounds:
        match = isinstance(key, str) and _PERCENTILE.fullmatch(key)
        if key != "mean" and not (match and 0 < float(match[1]) < 100):
            raise ValueError(f"{key!r} is not a percentile: write mean, p50, p90, p99 or p99.9")
    if not bounds:
        raise ValueError("needs at least one bound, e.g. {p99: 2.0}")
    return bounds


def _latency_bounds(metric: str):
    """Bounds on `metric` by percentile, each in seconds and within scenario.SLO_MAX_S."""
    bound = Annotated[YamlFloat, Field(gt=0), AfterValidator(lambda v: slo_bound(metric, v))]
    return Annotated[dict[str, bound], BeforeValidator(_percentile_keys)]


def _watts(value: float) -> float:
    """A GPU's power: the smallest accelerator of the registry (an L4) draws 72 W, so below 10 it is likely
    kilowatts written as watts."""
    if value < 10:
        raise ValueError(f"{value:g} W is below any accelerator's draw: power_w is in watts (700 for an H100 SXM)")
    return value


class PlanSlo(_Section):
    """Percentile bounds in seconds per metric (`ttft_s: {p99: 2.0}`) and/or a goodput fraction: at least
    that share of the requests each meet the TTFT and TPOT bounds (the largest value given for each),
    DistServe's goodput (Zhong et al. OSDI 2024, §2)."""

    ttft_s: Optional[_latency_bounds("ttft_s")] = None
    tpot_s: Optional[_latency_bounds("tpot_s")] = None
    itl_s: Optional[_latency_bounds("itl_s")] = None
    e2e_s: Optional[_latency_bounds("e2e_s")] = None
    goodput_fraction: Optional[YamlFloat] = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _something_to_meet(self):
        if not any(getattr(self, k) for k in ("ttft_s", "tpot_s", "itl_s", "e2e_s")):
            raise ValueError("needs at least one latency bound (ttft_s, tpot_s, itl_s or e2e_s), e.g. "
                             "ttft_s: {p99: 2.0}")
        if self.goodput_fraction is not None and not (self.ttft_s or self.tpot_s):
            raise ValueError("goodput_fraction counts requests within the ttft_s and tpot_s bounds: give one")
        return self


class HardwareCandidate(_Section):
    name: str
    price_per_gpu_hour: YamlFloat = Field(gt=0, le=1e4)
    power_w: Optional[Annotated[YamlFloat, Field(gt=0, le=1e5), AfterValidator(_watts)]] = None


def _printable(name: str) -> str:
    if unprintable(name):
        raise ValueError(UNPRINTABLE_NAME)
    return name


Configuration = create_model(
    "Configuration", __base__=_Section, name=(Optional[Annotated[str, AfterValidator(_printable)]], None),
    **{key: (Scenario.model_fields[key].annotation, Scenario.model_fields[key]) for key in CONFIGURATION_KEYS})


class SearchSection(_Section):
    seeds: YamlInt = Field(2, ge=1, le=64)
    num_requests: YamlInt = Field(DEFAULT_REQUESTS // 2, ge=10, le=1_000_000, description="per simulation")
    # generated arrivals span at least this long (more requests at high rates), so that batches, queues and the
    # KV cache fill as under sustained load: 300 requests at 99/s arrive in 3 s, too short for preemptions to
    # start, and a rate that fails within minutes passes. On scenarios/plans/chat-8b.yaml the rates an H100
    # sustains settle by 300 s (within the search's 5%; an L40S's, whose KV cache fills more slowly, still fall
    # 5-10% by 600 s). At most search.max_requests (the time and memory a search may take). 0: num_requests alone.
    min_duration_s: YamlFloat = Field(300.0, ge=0, le=86_400, description="of each simulation's arrivals")
    max_requests: YamlInt = Field(20_000, ge=10, le=1_000_000, description="per simulation, however long")
    rate_low_per_s: Optional[YamlFloat] = Field(None, gt=0, le=1e7, description="default: the ceiling / 1000")
    rate_high_per_s: Optional[YamlFloat] = Field(None, gt=0, le=1e7, description="default: the ceiling")
    relative_tolerance: YamlFloat = Field(0.05, ge=0.001, le=1)
    concurrency: list[Annotated[YamlInt, Field(ge=1, le=1 << 16)]] = Field(list(DEFAULT_CONCURRENCY),
                                                                            max_length=64)
    stop_early: StrictBool = Field(True, description="end a search run once it certainly misses the SLOs (false: "
                                                     "every rate run to its end, the load curve's latencies "
                                                     "above the sustainable rate included)")

    @field_validator("concurrency")
    @classmethod
    def _each_once(cls, value: list[int]) -> list[int]:
        twice = sorted({c for c in value if value.count(c) > 1})
        if twice:
            raise ValueError(f"lists {twice[0]} twice; list each number of clients once")
        return value

    @model_validator(mode="after")
    def _ordered(self):
        if self.max_requests < self.num_requests:
            raise ValueError(f"max_requests={self.max_requests:,} must be at least num_requests={self.num_requests:,}")
        if self.rate_low_per_s and self.rate_high_per_s and self.rate_low_per_s >= self.rate_high_per_s:
            raise ValueError(f"rate_low_per_s={self.rate_low_per_s:g} must be below rate_high_per_s="
                             f"{self.rate_high_per_s:g}")
        return self


class Plan(_Section):
    name: str
    description: Optional[str] = None
    models: Annotated[list[str], Field(min_length=1, max_length=64)]
    hardware: Annotated[list[HardwareCandidate], Field(min_length=1, max_length=64)]
    configurations: Annotated[list[Configuration], Field(min_length=1, max_length=256)] = [Configuration()]
    workload: WorkloadSection
    slo: PlanSlo
    target_rate_per_s: YamlFloat = Field(gt=0, le=1e7)
    search: SearchSection = SearchSection()

    @field_validator("models", mode="before")
    @classmethod
    def _one_or_several(cls, value):
        return [value] if isinstance(value, str) else value

    @field_validator("workload", mode="before")
    @classmethod
    def _rate_is_searched(cls, value):
        """The search sets the arrival rate (a trace's rate_scale) and search.num_requests the size."""
        if not isinstance(value, dict):
            return value
        if "num_requests" in value:
            raise ValueError("num_requests is set per simulation by search.num_requests; move it there")
        if "trace" in value:
            if isinstance(value["trace"], dict) and "rate_scale" in value["trace"]:
                raise ValueError("trace.rate_scale is what the plan searches; remove it (target_rate_per_s is "
                                 "the traffic to serve)")
            return value
        arrival = dict(value.get("arrival") or {"process": "poisson"})
        if arrival.get("process", "poisson") not in RATED_PROCESSES:
            raise ValueError(f"arrival.process must be one of {', '.join(RATED_PROCESSES)} (the plan searches over "
                             f"the arrival rate; it sweeps concurrency itself), got {arrival['process']!r}")
        if "rate_per_s" in arrival:
            raise ValueError("arrival.rate_per_s is what the plan searches; remove it (target_rate_per_s is the "
                             "traffic to serve)")
        return {**value, "arrival": {**arrival, "rate_per_s": 1.0}}  # a placeholder: every run sets its own


@dataclass(frozen=True)
class PlanContext:
    """A validated plan and what every task needs beside it: the folder its paths start from, the mean
    lengths of its workload, for a trace the trace's own arrival rate (rate_scale 1), and the lowest rate
    a simulation may run at (`_lowest_rate_per_s`)."""

    plan: Plan
    base: Path
    mean_prompt_tokens: float
    mean_output_tokens: float
    trace_rate_per_s: float | None
    description: str
    lowest_rate_per_s: float


def load_plan(path: Path | str) -> PlanContext:
    """The plan file read and validated; every mistake is one line naming the file and the key."""
    from infersim.roofline import get_hardware, get_model
    from infersim.roofline.errors import errors_in
    path = Path(path)
    data = load_yaml(path, "plan")
    if not isinstance(data, dict):
        raise SpecError("", "must be a mapping (name, models, hardware, configurations, workload, slo, "
                        "target_rate_per_s)", type(data).__name__, file=path.name)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        raise spec_error(e, file=path.name, model=Plan) from None
    base = path.parent
    with errors_in(path.name):
        _check_distinct(plan, base)
        for i, model in enumerate(plan.models):
            get_model(model, base, field=f"models.{i}")
        for i, hw in enumerate(plan.hardware):
            get_hardware(hw.name, base, field=f"hardware.{i}.name")
        ctx = _context(plan, base)
        _check_rates(ctx)
        for cand in candidates(plan):
            try:
                prepare(ctx, cand)
            except SpecError as err:
                raise cand.in_plan(err) from None
        return ctx


def _check_distinct(plan: Plan, base: Path) -> None:
    """Each model, GPU and configuration label once: a candidate is named by its three (a file given by two
    paths, hw.yaml and ./hw.yaml, is one)."""
    def same(name: str) -> str:
        path = base / name
        try:
            return str(path.resolve()) if path.is_file() else name
        except OSError:  # a name no file can have (too long): get_model / get_hardware say so
            return name
    lists = (("models.{}", plan.models, same, "list each model once"),
             ("hardware.{}.name", [hw.name for hw in plan.hardware], same, "list each GPU once, at one price"),
             ("configurations.{}.name", [configuration_label(c) for c in plan.configurations], str,
              "give each configuration a distinct name"))
    for field, labels, key_of, fix in lists:
        first = {}
        for i, label in enumerate(labels):
            key = key_of(label)
            if key in first:
                repeats = f"repeats {field.format(first[key])}"
                if field.startswith("configurations") and plan.configurations[i].name is None:
                    repeats = (f"is not given, and the label made of its parallelism, quantization, engine and "
                               f"topology repeats configurations.{first[key]}'s")
                raise SpecError(field.format(i), f"{repeats}; {fix}", label)
            first[key] = i


def _check_rates(ctx: PlanContext) -> None:
    """The rates the plan sets are ones a simulation may run at (`PlanContext.lowest_rate_per_s`)."""
    s, least = ctx.plan.search, ctx.lowest_rate_per_s
    for field, rate in (("target_rate_per_s", ctx.plan.target_rate_per_s), ("search.rate_low_per_s", s.rate_low_per_s),
                        ("search.rate_high_per_s", s.rate_high_per_s)):
        if rate is not None and rate < least:
            raise SpecError(field, f"must be >= {least:g} req/s: below it a simulation's {s.num_requests:,} requests "
                            f"(search.num_requests) arrive over more than the {MAX_SPAN_S:.0e} s (3 years) the "
                            "simulated clock resolves; raise it or lower search.num_requests", rate)


def _context(plan: Plan, base: Path) -> PlanContext:
    from infersim.scenario import build_workload
    w = plan.workload
    template = WorkloadSection.model_validate({**_dump(w), "num_requests": plan.search.num_requests})
    try:
        workload, _ = build_workload(template, 0, base)
    except SpecError as err:
        if err.field != "workload.num_requests":
            raise
        from infersim.sim.workload import read_trace
        rows = len(read_trace(base / w.trace.path))
        raise SpecError("search.num_requests", f"is more than the trace's {rows:,} rows: lower it to at most "
                        f"{rows:,}", plan.search.num_requests) from None
    span_s = _span_s(workload)
    trace_rate = None
    if w.trace is not None:
        if len(workload) < 2 or span_s <= 0:
            raise SpecError("workload.trace.path", "needs at least two requests at different times to have a rate",
                            w.trace.path)
        trace_rate = (len(workload) - 1) / span_s
        description = (f"trace {w.trace.path} (its first {len(workload):,} requests: {trace_rate:.3g} requests/s "
                       f"as recorded, replayed faster or slower)")
        lowest = _lowest_rate_per_s(span_s, trace_rate)  # a trace's arrivals are every seed's
    else:
        description = (f"{w.arrival.process} arrivals; prompts {_lengths_text(w.prompt_tokens, w.lengths_file)}, "
                       f"outputs {_lengths_text(w.output_tokens, w.lengths_file)}")
        longest_s = max([span_s] + [_span_s(build_workload(template, seed, base)[0])
                                    for seed in range(1, plan.search.seeds)])
        lowest = _lowest_rate_per_s(longest_s, w.arrival.rate_per_s)
    return PlanContext(plan, base, float(np.mean(workload.prompt_tokens)), float(np.mean(workload.output_tokens)),
                       trace_rate, description + f"; mean {np.mean(workload.prompt_tokens):.0f} prompt / "
                       f"{np.mean(workload.output_tokens):.0f} output tokens", lowest)


def short_trace_note(ctx: PlanContext, rate_per_s: float) -> str | None:
    """For a trace, whether its rows replayed at `rate_per_s` (the rate a replica sustains) arrive over less than
    search.min_duration_s: a trace replays the rows it has, no more, so its runs may end before queues and
    the KV cache fill."""
    s = ctx.plan.search
    span_s = (s.num_requests - 1) / rate_per_s if rate_per_s else math.inf
    if ctx.trace_rate_per_s is None or span_s >= s.min_duration_s:
        return None
    rows = math.ceil(rate_per_s * s.min_duration_s) + 1
    return (f"note: at {rate_per_s:.3g} req/s per replica the trace's {s.num_requests:,} rows arrive over "
            f"{span_s:.1f} s, less than search.min_duration_s ({s.min_duration_s:g} s): set search.num_requests to "
            f"{rows:,} (if the trace has that many rows) for an answer under sustained load")


def _span_s(workload) -> float:
    return float(workload.arrival_s[-1] - workload.arrival_s[0])


def _lowest_rate_per_s(span_s: float, rate_per_s: float) -> float:
    """The lowest mean rate at which arrivals spanning `span_s` at `rate_per_s` (a search's longest) stay
    within the MAX_SPAN_S the simulated clock resolves (sim.workload.check_span): at rate r they span
    span_s x rate_per_s / r, every arrival process and a trace's replay scaling their gaps by 1 / r. Rounded
    up to the 3 digits an error shows: x 1.01 outweighs rounding to nearest (at most 0.5%)."""
    return float(f"{span_s * rate_per_s / MAX_SPAN_S * 1.01:.3g}")


def _lengths_text(spec, lengths_file) -> str:
    if lengths_file is not None:
        return f"from {lengths_file}"
    if isinstance(spec, int):
        return f"{spec} tokens"
    shown = {"fixed": ("value",), "uniform": ("low", "high"), "normal": ("mean", "std"),
             "lognormal": ("mean", "std"), "zipf": ("value", "zipf_a")}[spec.kind]
    return f"{spec.kind} ({', '.join(f'{k} {getattr(spec, k):g}' for k in shown)})"


def _dump(section) -> dict:
    return section.model_dump(exclude_unset=True)


# --- candidates ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    name: str
    model: str
    hardware: HardwareCandidate
    configuration: Configuration
    configuration_index: int  # its place in the plan's configurations

    @property
    def quantization(self) -> str:
        q = self.configuration.quantization
        return q if isinstance(q, str) else q.preset

    @property
    def gpus_per_replica(self) -> int:
        p = self.configuration.parallelism
        return p.tensor_parallel * p.pipeline_parallel * cluster_replicas(self.configuration.cluster)

    def scenario(self, workload: dict, seed: int) -> Scenario:
        """The scenario this candidate runs with `workload` (a scenario workload mapping)."""
        data = {"name": self.name, "model": self.model, "hardware": self.hardware.name,
                **{k: v for k, v in _dump(self.configuration).items() if k != "name"},
                "workload": workload, "seed": seed}
        return Scenario.model_validate(data)

    def in_plan(self, err: SpecError) -> SpecError:
        """A SpecError its scenario raised, naming the key where the plan sets it (a configuration's section
        under configurations.N, the requests per simulation at search.num_requests)."""
        if err.file:  # a file of its own names it (a trace's line)
            return err
        if err.field.split(".")[0] in CONFIGURATION_KEYS:
            field = f"configurations.{self.configuration_index}.{err.field}"
        else:
            field = {"workload.num_requests": "search.num_requests"}.get(err.field, err.field)
        return type(err)(field, err.problem, err.got)


def configuration_label(c: Configuration) -> str:
    """A configuration's name: the one given, else its parallelism, quantization, engine and topology."""
    if c.name:
        return c.name
    p, q = c.parallelism, c.quantization if isinstance(c.quantization, str) else c.quantization.preset
    parts = [f"tp{p.tensor_parallel}"] + ([f"pp{p.pipeline_parallel}"] if p.pipeline_parallel > 1 else [])
    parts += [q, c.engine.preset]
    if c.scheduler.chunk_tokens:
        parts.append(f"chunk{c.scheduler.chunk_tokens}")
    if c.cluster.mode == "disaggregated":
        parts.append(f"{c.cluster.prefill_replicas or 1}p{c.cluster.decode_replicas or 1}d")
    return "-".join(parts)


def candidates(plan: Plan) -> list[Candidate]:
    """Every model x hardware x configuration, in the plan's order."""
    return [Candidate(f"{model} {hw.name} {configuration_label(c)}", model, hw, c, i)
            for model in plan.models for hw in plan.hardware for i, c in enumerate(plan.configurations)]


def open_loop(ctx: PlanContext, rate_per_s: float, sized_at_per_s: float = 0.0) -> dict:
    """The plan's workload arriving at `rate_per_s` (a trace's first search.num_requests rows replayed at that
    mean rate; generated arrivals search.num_requests of them, or as many as span search.min_duration_s at
    `sized_at_per_s` where that is higher, up to search.max_requests). A search sizes every run at its top rate:
    the same requests at every rate, only closer together as it rises, so meeting the SLOs stays monotone."""
    s = ctx.plan.search
    w = _dump(ctx.plan.workload) | {"num_requests": s.num_requests}
    if ctx.trace_rate_per_s is not None:
        return w | {"trace": w["trace"] | {"rate_scale": rate_per_s / ctx.trace_rate_per_s}}
    sizing_per_s = max(rate_per_s, sized_at_per_s)
    requests = max(s.num_requests, min(math.ceil(sizing_per_s * s.min_duration_s), s.max_requests))
    return w | {"num_requests": requests, "arrival": w["arrival"] | {"rate_per_s": rate_per_s}}


def closed_loop(ctx: PlanContext, clients: int) -> dict:
    """The plan's lengths sent by `clients` clients, each sending its next request when its last one is done
    (a trace's lengths sampled row by row); 8 requests per client (at least 64), at most search.num_requests."""
    w = _dump(ctx.plan.workload)
    if ctx.trace_rate_per_s is not None:
        w = {k: v for k, v in w.items() if k != "trace"} | {"lengths_file": w["trace"]["path"]}
    requests = min(ctx.plan.search.num_requests, max(8 * clients, 64))
    return w | {"arrival": {"process": "concurrency", "concurrency": clients}, "num_requests": requests}


# --- the search over rate -----------------------------------------------------------------------------------

def highest_rate(meets: Callable[[float], bool], start_per_s: float, low_per_s: float,
                 relative_tolerance: float, guess_per_s: float | None = None) -> float:
    """The highest rate meeting the SLOs, assuming that meeting them is monotone in rate. Without a guess:
    `start_per_s` if it meets them, else halve from there until a rate does (0.0 when none down to
    `low_per_s` does). From a guess (another seed's answer, likely close): step up from it while rates meet
    them (up to `start_per_s`), or down while they do not, by 1 + relative_tolerance and then by the square
    of the last step, until the verdict flips. Then bisect in log space until the failing and passing rates
    are within `relative_tolerance` of each other. Returns the highest passing rate seen."""
    if guess_per_s is None:
        rate, step, growth = start_per_s, 2.0, 1
    else:
        rate, step, growth = min(max(guess_per_s, low_per_s), start_per_s), 1 + relative_tolerance, 2
    low, high = (rate, None) if meets(rate) else (None, rate)
    while high is None:
        if low >= start_per_s:
            return start_per_s
        rate = min(low * step, start_per_s)
        low, high = (rate, None) if meets(rate) else (low, rate)
        step **= growth
    while low is None:
        rate = max(high / step, low_per_s)
        if meets(rate):
            low = rate
        elif rate <= low_per_s:
            return 0.0
        else:
            high = rate
        step **= growth
    while high / low > 1 + relative_tolerance:
        mid = math.sqrt(low * high)
        if meets(mid):
            low = mid
        else:
            high = mid
    return low


@dataclass(frozen=True)
class RatePoint:
    """One simulated rate: its latencies and throughput, and its SLO check. A run stopped as soon as it
    certainly missed the SLOs (`stopped_early`) has no latencies or throughput, and its worst_slo_ratio is
    a lower bound."""

    rate_per_s: float
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    tpot_p50_s: float | None
    tpot_p99_s: float | None
    e2e_p99_s: float | None
    output_tokens_per_s: float | None
    meets_slo: bool
    worst_slo_ratio: float
    worst_slo: str
    worst_slo_name: str
    stopped_early: bool

    def curve_row(self) -> dict:
        """plan.json's load_curve row."""
        return asdict(self)


class Simulated(NamedTuple):
    """A candidate's run: its configuration, result and SLO check; stopped_early: the run ended as soon as
    an SloWatch saw it miss the SLOs (the check is the watch's, the result partial)."""

    cfg: RunConfig
    result: RunResult
    check: SloCheck
    stopped_early: bool


def _simulate(ctx: PlanContext, cand: Candidate, workload: dict, seed: int, stop_early: bool = False) -> Simulated:
    """The candidate run on `workload`; with `stop_early`, only until it certainly misses the SLOs (where
    `simulate` stops runs: not those compiled replica loops tell, which are told whole)."""
    from infersim.roofline.errors import errors_in
    from infersim.scenario import build_run
    from infersim.sim.run import simulate
    with errors_in(cand.name):
        cfg, requests = build_run(cand.scenario(workload, seed), ctx.base)
        watch = SloWatch(ctx.plan.slo, requests) if stop_early else None
        result = simulate(cfg, requests, stop_when=watch)
    if watch is not None and watch.missed is not None:
        return Simulated(cfg, result, watch.missed, True)
    return Simulated(cfg, result, check_slo(ctx.plan.slo, result), False)


def _point(rate_per_s: float, run: Simulated) -> RatePoint:
    check = run.check
    if run.stopped_early:
        return RatePoint(rate_per_s, None, None, None, None, None, None, check.meets, check.worst_ratio, check.worst,
                         check.worst_name, True)
    s = run.result.summary
    return RatePoint(rate_per_s, s["ttft_s"]["p50"], s["ttft_s"]["p99"], s["tpot_s"]["p50"], s["tpot_s"]["p99"],
                     s["e2e_s"]["p99"], s["throughput_tokens_per_s"], check.meets, check.worst_ratio, check.worst,
                     check.worst_name, False)


@dataclass(frozen=True)
class SeedSearch:
    seed: int
    max_rate_per_s: float
    points: list  # RatePoint, in the order simulated
    operating: dict  # `operating_point` of its run at max_rate_per_s (none there: at its lowest rate)
    capped: bool  # the search's highest rate (the ceiling, or search.rate_high_per_s) met the SLOs


@dataclass(frozen=True)
class SearchTask:
    """A candidate's search for its highest sustainable rate per replica, seed after seed: seed 0 from the
    ceiling, every other seed from seed 0's answer (`highest_rate`'s guess), which its own answer is
    usually within a step or two of. A run is stopped as soon as it certainly misses the SLOs (the search
    needs only its verdict; search.stop_early: false runs each to its end); where no rate meets them, the
    lowest is simulated to its end, so that the candidate's closest approach to the SLOs is measured, not
    bounded, and its operating point is a whole run."""

    ctx: PlanContext
    candidate: Candidate
    start_per_s: float
    low_per_s: float

    def __call__(self) -> list[SeedSearch]:
        searches = []
        for seed in range(self.ctx.plan.search.seeds):
            guess = searches[0].max_rate_per_s if searches and searches[0].max_rate_per_s > 0 else None
            searches.append(self._search(seed, guess))
        return searches

    def _search(self, seed: int, guess_per_s: float | None) -> SeedSearch:
        points, met = [], {}  # met: each rate that met the SLOs, and its run

        def run(rate_per_s: float, stop_early: bool) -> Simulated:
            return _simulate(self.ctx, self.candidate, open_loop(self.ctx, rate_per_s, self.start_per_s), seed,
                             stop_early)

        def meets(rate_per_s: float) -> bool:
            simulated = run(rate_per_s, stop_early=self.ctx.plan.search.stop_early)
            points.append(_point(rate_per_s, simulated))
            if simulated.check.meets:
                met[rate_per_s] = simulated
            return simulated.check.meets

        best = highest_rate(meets, self.start_per_s, self.low_per_s, self.ctx.plan.search.relative_tolerance,
                            guess_per_s)
        if best > 0:
            return SeedSearch(seed, best, points, operating_point(self.ctx, best, met[best]),
                              best == self.start_per_s)
        lowest = min(range(len(points)), key=lambda i: points[i].rate_per_s)
        rate = points[lowest].rate_per_s
        whole = run(rate, stop_early=False)
        points[lowest] = _point(rate, whole)
        return SeedSearch(seed, best, points, operating_point(self.ctx, rate, whole), False)


@dataclass(frozen=True)
class FrontierTask:
    """One point of the throughput-interactivity frontier: `clients` closed-loop clients."""

    ctx: PlanContext
    candidate: Candidate
    clients: int

    def __call__(self) -> dict:
        run = _simulate(self.ctx, self.candidate, closed_loop(self.ctx, self.clients), 0)
        s = run.result.summary
        tpot = s["tpot_s"]["mean"]
        return {"concurrency": self.clients,
                "output_tokens_per_s_per_gpu": s["throughput_tokens_per_s"] / s["gpus"],
                "output_tokens_per_s_per_user": 1.0 / tpot if tpot else None,
                "meets_slo": run.check.meets, "ttft_p99_s": s["ttft_s"]["p99"]}


# --- the roofline's ceiling ---------------------------------------------------------------------------------

class Work(NamedTuple):
    """Seconds of a step's (or a request's) compute and memory traffic, each summed over its ops as
    roofline.timing prices them (collectives left out)."""

    compute_s: float
    memory_s: float


class Pool(NamedTuple):
    """Replicas that share one kind of work, and that work per request."""

    replicas: int
    work: Work


def step_work(cost) -> Work:
    """A StepCost's compute and memory seconds (op by op, times its count)."""
    return Work(sum(r.timed.compute_s * r.count for r in cost.rows), sum(r.timed.memory_s * r.count for r in cost.rows))


def pools_per_request(prefill_step: Work, prompts_per_step: int, decode_step: Work, batch: int,
                      output_tokens: float, prefill_replicas: int, decode_replicas: int | None) -> list[Pool]:
    """The work each request brings: its share of a prefill step of `prompts_per_step` prompts, and
    output_tokens / batch decode steps of `batch` sequences. Colocated (`decode_replicas` None), one pool
    does both, and a prompt's weight reads ride on the decode steps (a chunked or mixed step reads the
    weights once for both), so only its compute counts; disaggregated, each pool does its own part."""
    prefill = Work(prefill_step.compute_s / prompts_per_step, prefill_step.memory_s / prompts_per_step)
    decode = Work(output_tokens * decode_step.compute_s / batch, output_tokens * decode_step.memory_s / batch)
    if decode_replicas is None:
        return [Pool(prefill_replicas, Work(prefill.compute_s + decode.compute_s, decode.memory_s))]
    return [Pool(prefill_replicas, prefill), Pool(decode_replicas, decode)]


class Ceiling(NamedTuple):
    rate_per_s: float
    bound: str  # compute or memory: the larger term of the binding pool
    batch: int  # decode sequences the KV cache holds in steady state


def ceiling_rate(pools: list[Pool], pipeline_stages: int) -> tuple[float, str]:
    """(requests/s, compute or memory) the pools sustain at most: each pool's replicas x stages / the larger
    of its compute and memory seconds per request (the roofline, Williams et al. 2009, applied per request;
    a pipeline's stages work on different micro-batches at once), and the smallest over the pools."""
    rates = [(p.replicas * pipeline_stages / max(p.work), "compute" if p.work.compute_s >= p.work.memory_s
              else "memory") for p in pools]
    return min(rates)


def steady_state_ceiling(cfg, prompt_tokens: float, output_tokens: float) -> Ceiling:
    """An upper bound on a replica's request rate. By Little's law a steady state holds on average
    KV tokens / (prompt + output / 2) sequences (each holds its prompt and, on average, half its output),
    at most max_num_seqs: decode steps run at that batch B with that context; a prompt is prefilled in steps
    of max_num_batched_tokens // prompt prompts. Per request: compute = prefill compute / prompts +
    output x decode compute / B, memory = output x decode memory / B; rate <= replicas x pp / max(compute,
    memory) (`ceiling_rate`). Host time, queueing and steps below the batch are left out, so the simulator
    stays below it."""
    from infersim.roofline import decode_batch, prefill_batch, step_cost
    from infersim.sim.cluster import Disaggregated
    from infersim.sim.run import total_kv_blocks
    prompt, output = max(1, round(prompt_tokens)), max(1.0, output_tokens)
    context = min(prompt + round(output / 2), cfg.limits.max_model_len)
    kv_tokens = total_kv_blocks(cfg) * cfg.kv_cache.block_size_tokens
    batch = max(1, min(cfg.limits.max_num_seqs, kv_tokens // context))
    prompts = max(1, min(cfg.limits.max_num_batched_tokens // prompt, cfg.limits.max_num_seqs))
    prefill = step_work(step_cost(cfg.model, cfg.hardware, prefill_batch([prompt] * prompts), cfg.options))
    decode = step_work(step_cost(cfg.model, cfg.hardware, decode_batch([context] * batch), cfg.options))
    c = cfg.cluster
    pools = (pools_per_request(prefill, prompts, decode, batch, output, c.prefill_replicas, c.decode_replicas)
             if isinstance(c, Disaggregated) else pools_per_request(prefill, prompts, decode, batch, output,
                                                                   c.replicas, None))
    rate, bound = ceiling_rate(pools, cfg.options.parallel.pipeline_parallel)
    return Ceiling(rate, bound, batch)


def roofline_ops(cfg, prompt_tokens: float, output_tokens: float, batch: int) -> dict:
    """plan.json's roofline: each op of a prefill step and of a decode step of `batch` sequences at the
    mean context, as (intensity, achieved FLOP/s) on the GPU's roofline; collectives left out."""
    from infersim.roofline import decode_batch, prefill_batch, step_cost
    prompt = max(1, round(prompt_tokens))
    context = min(prompt + round(output_tokens / 2), cfg.limits.max_model_len)
    prompts = max(1, min(cfg.limits.max_num_batched_tokens // prompt, cfg.limits.max_num_seqs))
    rows = []
    for phase, b in (("prefill", prefill_batch([prompt] * prompts)), ("decode", decode_batch([context] * batch))):
        for r in step_cost(cfg.model, cfg.hardware, b, cfg.options).rows:
            if r.timed.op.kind == "comm" or r.bytes <= 0 or r.time_s <= 0:
                continue
            rows.append({"name": r.name, "phase": phase, "intensity_flops_per_byte": r.flops / r.bytes,
                         "achieved_flops_per_s": r.flops / r.time_s})
    return {"ops": rows, "peak_flops_per_s": cfg.hardware.peak(cfg.options.quant.gemm_dtype()),
            "bandwidth_bytes_per_s": cfg.hardware.memory_bandwidth_bytes_per_s}


def network_share(cfg, prompt_tokens: float, output_tokens: float, batch: int) -> float:
    """The share of a decode step (at the steady-state batch) spent in collectives."""
    from infersim.roofline import decode_batch, step_cost
    context = min(max(1, round(prompt_tokens)) + round(output_tokens / 2), cfg.limits.max_model_len)
    cost = step_cost(cfg.model, cfg.hardware, decode_batch([context] * batch), cfg.options)
    return sum(r.time_s for r in cost.rows if r.timed.op.kind == "comm") / cost.time_s


def operating_point(ctx: PlanContext, rate_per_s: float, run: Simulated) -> dict:
    """A whole run at a candidate's chosen rate: its timeline and what bounds it."""
    result, cfg = run.result, run.cfg
    tl, s = result.timeline, result.summary
    batch = max(1, round(s["batch_size_mean"]))
    timeline = {"time_s": [], "kv_utilization": [], "batch_size": []}  # none kept of a very long run
    if tl is not None:
        keep = np.unique(np.linspace(0, len(tl["start_s"]) - 1, min(TIMELINE_POINTS, len(tl["start_s"]))).astype(int))
        timeline = {"time_s": (tl["start_s"][keep] + tl["duration_s"][keep]).tolist(),
                    "kv_utilization": (tl["kv_blocks_used"][keep] / result.total_blocks).tolist(),
                    "batch_size": tl["batch_seqs"][keep].tolist()}
    return {"rate_per_s": rate_per_s, "timeline": timeline,
            "kv_utilization_peak": s["kv_utilization_peak"], "preemptions": s["preemptions"],
            "model_flops_utilization": s["model_flops_utilization"],
            "model_bandwidth_utilization": s["model_bandwidth_utilization"],
            "batch_size_mean": s["batch_size_mean"],
            "roofline": roofline_ops(cfg, ctx.mean_prompt_tokens, ctx.mean_output_tokens, batch)}


# --- the plan -----------------------------------------------------------------------------------------------

@dataclass
class Prepared:
    """A candidate before its simulations: its ceiling, or why it cannot run."""

    candidate: Candidate
    ceiling: Ceiling | None = None
    network_share: float = 0.0
    reason: str = ""
    searches: list = field(default_factory=list)
    frontier: list = field(default_factory=list)


def _built(ctx: PlanContext, cand: Candidate, rate_per_s: float):
    """The candidate's run configuration and requests at `rate_per_s`; a run too large for this machine names
    the plan's key that sized it (search.max_requests, where search.min_duration_s added requests)."""
    from infersim.scenario import build_run
    workload = open_loop(ctx, rate_per_s)
    try:
        return build_run(cand.scenario(workload, 0), ctx.base)
    except SpecError as err:
        if (isinstance(err, HardwareLimit) or not err.field.startswith("workload.")
                or workload["num_requests"] <= ctx.plan.search.num_requests):
            raise
        raise SpecError("search.max_requests", f"{err.problem} (runs at {rate_per_s:.3g} req/s hold "
                        "search.min_duration_s of arrivals, up to this many requests): lower it",
                        ctx.plan.search.max_requests) from None


def prepare(ctx: PlanContext, cand: Candidate) -> Prepared:
    """The candidate built at the target rate, and its ceiling. A GPU that cannot hold or run it
    (HardwareLimit: it does not fit the GPU's memory, the GPU has no fp8...) makes it infeasible, with that
    error as the reason; any other SpecError (TP does not divide the heads...) is a mistake in the plan,
    raised (load_plan prepares every candidate, so that it is raised there, before any simulation)."""
    from infersim.sim.run import refusal
    try:
        cfg, requests = _built(ctx, cand, ctx.plan.target_rate_per_s)
        reasons = map(refusal(cfg), requests)
        first = next(reasons, "")
        if first and all(reasons):  # at any rate: its search would find none sustained, and say why only in latencies
            return Prepared(cand, reason=f"serves none of the workload's requests, e.g. {first}")
        ceiling = steady_state_ceiling(cfg, ctx.mean_prompt_tokens, ctx.mean_output_tokens)
        # the largest simulation the search may run (search.min_duration_s at its top rate) fits this machine
        _built(ctx, cand, max(ctx.plan.search.rate_high_per_s or ceiling.rate_per_s, ctx.plan.target_rate_per_s))
        share = network_share(cfg, ctx.mean_prompt_tokens, ctx.mean_output_tokens, ceiling.batch)
    except HardwareLimit as err:
        return Prepared(cand, reason=str(err))
    return Prepared(cand, ceiling, share)


def run_plan(ctx: PlanContext, executor, progress=None) -> dict:
    """Every candidate searched, swept and priced: plan.json's content (see `plan_json`)."""
    prepared = [prepare(ctx, cand) for cand in candidates(ctx.plan)]
    runnable = [p for p in prepared if p.ceiling is not None]
    s = ctx.plan.search
    searches = [SearchTask(ctx, p.candidate, s.rate_high_per_s or p.ceiling.rate_per_s,
                           s.rate_low_per_s or max(p.ceiling.rate_per_s / 1000, ctx.lowest_rate_per_s))
                for p in runnable]
    sweeps = [FrontierTask(ctx, p.candidate, c) for p in runnable for c in s.concurrency]
    results = executor.map(searches + sweeps, progress)
    for p, seeds in zip(runnable, results):
        p.searches = seeds
        p.frontier = [r for t, r in zip(sweeps, results[len(searches):]) if t.candidate is p.candidate]
    return plan_json(ctx, prepared, {p.candidate.name: _operating(p) for p in runnable})


def _operating(p: Prepared) -> dict:
    """The operating point: the run at the rate every seed sustains, by the seed whose answer that is; or,
    where a seed sustains none, that seed's run at its lowest rate."""
    return min(p.searches, key=lambda r: r.max_rate_per_s).operating


def plan_json(ctx: PlanContext, prepared: list[Prepared], operating: dict) -> dict:
    """The plan's result. Per candidate: max_rate_per_replica is the rate every seed sustains (value, the
    smallest of the seeds' answers: low; the largest: high); replicas = ceil(target / value); cost per
    million output tokens at the target rate; energy per output token = GPUs x power / (target x mean
    output tokens), every provisioned GPU drawing its power; memory headroom = 1 - peak KV-cache use at
    the operating point. Numbers a candidate does not have (it cannot run, or meets the SLOs at no rate) are
    null; so are the latencies of a load_curve rate whose run stopped once it certainly missed the SLOs
    (stopped_early: its worst_slo_ratio is a lower bound). limiting_slo: the worst SLO, in words, at the
    lowest rate searched above max_rate_per_replica; limited_by: that SLO's name ('TPOT p99'). Ranked by cost
    per hour among those meeting the SLOs."""
    plan = ctx.plan
    rows = [_candidate_json(ctx, p, operating.get(p.candidate.name)) for p in prepared]
    meeting = sorted((r for r in rows if r["meets_slo"]),
                     key=lambda r: (r["cost_per_hour"], -r["max_rate_per_replica"]["value"], r["name"]))
    for rank, row in enumerate(meeting, 1):
        row["rank"] = rank
    chosen = meeting[0] if meeting else None
    for row in rows:
        if row["status"] == "ok":
            row["reason"] = _why(row, chosen)
            row["limit"] = _limit_text(row) if row["meets_slo"] else None
    tried = [r for r in rows if r["status"] == "ok"]
    closest = None if chosen or not tried else min(tried, key=lambda r: r["best_worst_slo_ratio"])
    return {"name": plan.name, "description": plan.description, "target_rate_per_s": plan.target_rate_per_s,
            "slo": _dump(plan.slo),
            "workload": {"description": ctx.description, "num_requests": plan.search.num_requests,
                         # generated arrivals: as many more as arrive in min_duration_s (open_loop); a trace: its rows
                         "min_duration_s": 0.0 if ctx.trace_rate_per_s is not None else plan.search.min_duration_s,
                         "max_requests": plan.search.max_requests,
                         "mean_prompt_tokens": ctx.mean_prompt_tokens,
                         "mean_output_tokens": ctx.mean_output_tokens},
            "search": _dump(plan.search) | {"seeds": plan.search.seeds},
            "chosen": chosen["name"] if chosen else None, "feasible": chosen is not None,
            "closest": closest["name"] if closest else None, "candidates": rows}


def _candidate_json(ctx: PlanContext, p: Prepared, op: dict | None) -> dict:
    cand, plan = p.candidate, ctx.plan
    cfg = cand.configuration
    row = {"name": cand.name, "model": cand.model, "hardware": cand.hardware.name,
           "tensor_parallel": cfg.parallelism.tensor_parallel, "pipeline_parallel": cfg.parallelism.pipeline_parallel,
           "quantization": cand.quantization, "engine": cfg.engine.preset, "mode": cfg.cluster.mode,
           "gpus_per_replica": cand.gpus_per_replica, "price_per_gpu_hour": cand.hardware.price_per_gpu_hour,
           "power_w": cand.hardware.power_w, "status": "ok" if p.ceiling else "infeasible", "reason": p.reason,
           "meets_slo": False, "rank": None, "max_rate_per_replica": None,
           "ceiling_rate_per_replica": p.ceiling.rate_per_s if p.ceiling else None, "replicas": None, "gpus": None,
           "cost_per_hour": None, "cost_per_million_output_tokens": None, "energy_j_per_output_token": None,
           "memory_headroom_fraction": None, "bound": None, "limiting_slo": None, "limited_by": None,
           "best_worst_slo_ratio": None,
           "load_curve": [], "frontier": p.frontier, "operating_point": None, "roofline": None}
    if p.ceiling is None:
        return row
    per_seed = [s.max_rate_per_s for s in p.searches]
    value = min(per_seed)
    curve = sorted(p.searches[0].points, key=lambda q: q.rate_per_s)
    every_point = [q for s in p.searches for q in s.points]
    above = sorted((q for q in every_point if not q.meets_slo and q.rate_per_s > value), key=lambda q: q.rate_per_s)
    row |= {"max_rate_per_replica": {"value": value, "low": min(per_seed), "high": max(per_seed),
                                     "per_seed": per_seed,
                                     "search_capped": any(s.capped for s in p.searches)},
            "meets_slo": value > 0, "load_curve": [q.curve_row() for q in curve],
            "limiting_slo": above[0].worst_slo if above else None,
            "limited_by": above[0].worst_slo_name if above else None,
            "best_worst_slo_ratio": min(q.worst_slo_ratio for q in every_point if not q.stopped_early),
            "operating_point": {"rate_per_s": op["rate_per_s"], "timeline": op["timeline"]},
            "roofline": op["roofline"], "memory_headroom_fraction": 1.0 - op["kv_utilization_peak"],
            "operating": {k: op[k] for k in ("kv_utilization_peak", "preemptions", "model_flops_utilization",
                                              "model_bandwidth_utilization", "batch_size_mean")},
            "ceiling_bound": p.ceiling.bound, "network_share": p.network_share}
    row["bound"] = _bound(row, p)
    if value > 0:
        replicas = math.ceil(plan.target_rate_per_s / value)
        gpus = replicas * cand.gpus_per_replica
        cost = gpus * cand.hardware.price_per_gpu_hour
        tokens_per_s = plan.target_rate_per_s * ctx.mean_output_tokens
        row |= {"replicas": replicas, "gpus": gpus, "cost_per_hour": cost,
                "cost_per_million_output_tokens": cost / (tokens_per_s * 3600) * 1e6,
                "energy_j_per_output_token": gpus * cand.hardware.power_w / tokens_per_s if cand.hardware.power_w
                else None}
    return row


KV_FULL = 0.95  # peak KV-cache use at or above this: the cache, not the GPU's speed, limits the batch
INTERCONNECT_SHARE = 0.3  # collectives take at least this share of a decode step
# At or above this fraction of the roofline ceiling a rate is the ceiling's: host time and queueing keep a
# simulation a little below it, and the search's answer is within search.relative_tolerance of its own.
AT_CEILING = 0.9


def _bound(row: dict, p: Prepared) -> str:
    """What limits the candidate's rate: collectives, the KV cache's capacity, the ceiling's own bound
    (compute or memory) where the rate is essentially the ceiling; below it, latency (an SLO binds: its
    next rate searched misses it), or the search's range (every rate searched met the SLOs)."""
    op = row["operating"]
    if p.network_share >= INTERCONNECT_SHARE:
        return "interconnect"
    if op["preemptions"] > 0 or op["kv_utilization_peak"] >= KV_FULL:
        return "kv_capacity"
    if row["max_rate_per_replica"]["value"] >= AT_CEILING * p.ceiling.rate_per_s:
        return p.ceiling.bound
    return "latency" if row["limited_by"] else "search_range"


def _limit_text(row: dict) -> str:
    op, rate = row["operating"], row["max_rate_per_replica"]["value"]
    share = f"{rate / row['ceiling_rate_per_replica']:.0%} of its throughput ceiling"
    detail = {
        "interconnect": f"collectives take {row['network_share']:.0%} of a decode step",
        "kv_capacity": f"KV cache full (peak {op['kv_utilization_peak']:.0%} used, {op['preemptions']} preemptions)",
        "latency": f"limited by {row['limited_by']} at {share} ({row['limiting_slo']} just above)",
        "search_range": f"the highest rate searched, {share}, meets the SLOs (raise search.rate_high_per_s)",
        "compute": f"compute-bound at its ceiling (MFU {op['model_flops_utilization']:.0%} at this rate)",
        "memory": f"memory-bound at its ceiling (MBU {op['model_bandwidth_utilization']:.0%} at this rate)"}[row["bound"]]
    return f"{rate:.3g} req/s per replica, {detail}"


def ranking_table(result: dict) -> str:
    """The candidates as `infersim plan` prints them: ranked ones first, cheapest on top."""
    from infersim.report import table
    order = sorted(result["candidates"], key=lambda r: (r["rank"] is None, r["rank"] or 0))

    def number(value, spec):
        return "-" if value is None else format(value, spec)
    rows = [[str(r["rank"] or "-"), r["name"], r["status"],
             number(r["max_rate_per_replica"] and r["max_rate_per_replica"]["value"], ".3g"),
             number(r["ceiling_rate_per_replica"], ".3g"), number(r["replicas"], "d"), number(r["gpus"], "d"),
             number(r["cost_per_hour"], ",.2f"), number(r["cost_per_million_output_tokens"], ",.3f"),
             number(r["memory_headroom_fraction"], ".0%"), r["bound"] or "-"] for r in order]
    why = [f"{r['name']}: {'chosen, ' + r['limit'] if r['name'] == result['chosen'] else r['reason']}" for r in order]
    return "\n".join([table(["rank", "candidate", "status", "req/s/replica", "ceiling", "replicas", "GPUs", "$/h",
                              "$/M out tok", "KV free", "bound"], rows), ""] + why)


def _why(row: dict, chosen: dict | None) -> str:
    """One line: why this candidate loses to the chosen one (empty for the chosen)."""
    if not row["meets_slo"]:
        lowest = row["load_curve"][0] if row["load_curve"] else None
        return (f"misses the SLOs even at {lowest['rate_per_s']:.3g} req/s per replica: {lowest['worst_slo']}"
                if lowest else "misses the SLOs")
    if row is chosen:
        return ""
    more = row["cost_per_hour"] / chosen["cost_per_hour"] - 1
    if more < 0.005:
        return f"costs the same, with less headroom per replica than {chosen['name']}: {_limit_text(row)}"
    return (f"costs {more:.0%} more (${row['cost_per_hour']:,.2f}/h for {counted(row['gpus'], 'GPU')} vs "
            f"${chosen['cost_per_hour']:,.2f}/h): {_limit_text(row)}")
