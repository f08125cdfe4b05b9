"""The scenario file: a YAML description of a deployment and its traffic, validated with pydantic.

Every mistake becomes one `SpecError` line naming the key path, the bad value and what is allowed, e.g.
``workload.arrival.rate_per_s: must be > 0, got -3``. Relative paths (traces, hardware YAML, config.json)
are resolved against the scenario file's folder. See scenarios/default.yaml for a commented example.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, ValidationError,
                      field_validator, model_validator)

from infersim.budget import RunSize, check_memory, max_steps
from infersim.roofline.boundary import UNPRINTABLE_NAME, bound_text, load_yaml, read_text, unprintable
from infersim.roofline.errors import HardwareLimit, SpecError, errors_in
from infersim.roofline.models import MAX_CONTEXT_TOKENS, MAX_MODEL_SIZE
from infersim.schema import YamlFloat, YamlInt, spec_error

Positive = Field(gt=0)
Tokens = Annotated[YamlInt, Field(ge=1, le=MAX_CONTEXT_TOKENS)]
MAX_REPLICAS = 10_000  # a cluster of more model replicas than this is not a deployment anyone plans
MAX_REQUESTS = 10 ** 9  # far above what fits in memory (infersim/budget.py refuses it with the estimate)
DEFAULT_REQUESTS = 1000


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ParallelismSection(_Section):
    tensor_parallel: YamlInt = Field(1, ge=1, le=MAX_MODEL_SIZE)  # it divides the heads, as pp the layers
    pipeline_parallel: YamlInt = Field(1, ge=1, le=MAX_MODEL_SIZE)


class QuantizationSection(_Section):
    preset: str = "fp16"
    kv_bits: Optional[Literal[16, 8, 4]] = None


def _registered(registry: str, field: str):
    """A validator: the value must name an entry of the simulator's registry `registry` (module:variable)."""
    def check(value: str) -> str:
        import importlib
        module, variable = registry.split(":")
        names = getattr(importlib.import_module(module), variable)
        if value not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return value
    return field_validator(field)(check)


class EngineSection(_Section):
    """The serving engine (sim.engines): a preset sets the scheduler, its limits, the KV cache layout, which
    steps replay CUDA graphs (whole, for decode steps, or piecewise) and the host's time per step; every key
    left out here, in `scheduler` or in `kv_cache` takes the preset's value for the GPU."""

    preset: str = "vllm-v1"
    flash_attention: StrictBool = True
    sampling: Literal["greedy", "top_p"] = "top_p"
    overhead_fixed_s: Optional[YamlFloat] = Field(None, ge=0, le=10)
    overhead_per_seq_s: Optional[YamlFloat] = Field(None, ge=0, le=1)
    host_overlaps_gpu: Optional[StrictBool] = None
    cuda_graph_max_batch: Optional[YamlInt] = Field(None, ge=0, le=1 << 20)
    # the sizes a padded capture holds, ascending: a decode batch replays the smallest at least its size and runs
    # its padding rows (KernelSet.padded_sizes); up to the largest, unless cuda_graph_max_batch says less
    cuda_graph_padded_sizes: Optional[list[Annotated[YamlInt, Field(ge=1, le=1 << 20)]]] = Field(None, min_length=1)
    piecewise_graph_max_tokens: Optional[YamlInt] = Field(None, ge=0, le=1 << 20)
    cuda_graph_kernel_s: Optional[YamlFloat] = Field(None, ge=0, le=1e-3)
    eager_kernel_s: Optional[YamlFloat] = Field(None, ge=0, le=1e-3)
    frontend_s: Optional[YamlFloat] = Field(None, ge=0, le=60)
    all_reduce: Optional[str] = None  # the engine's all-reduce rule (roofline/custom_all_reduce.py)
    fusions: Optional[list[str]] = None  # ops it runs as one kernel (roofline.step.FUSIONS); [] for none

    _known = _registered("infersim.sim.engines:ENGINES", "preset")
    _known_all_reduce = _registered("infersim.roofline.custom_all_reduce:ALL_REDUCES", "all_reduce")

    @model_validator(mode="before")
    @classmethod
    def _a_preset_alone(cls, value):
        return _named_alone(value, "preset")

    @field_validator("fusions")
    @classmethod
    def _known_fusions(cls, names: list[str] | None) -> list[str] | None:
        from infersim.roofline.step import FUSIONS
        unknown = [n for n in names or [] if n not in FUSIONS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a fusion; the fusions are {', '.join(FUSIONS)}")
        return names


def _named_alone(value, key: str):
    """A section given as a bare name is that name under its key: `engine: sglang` is `{preset: sglang}`,
    `scheduler: sarathi` is `{name: sarathi}`, as `quantization: fp8` names its preset."""
    return {key: value} if isinstance(value, str) else value


class SchedulerSection(_Section):
    name: Optional[str] = None
    max_num_seqs: Optional[YamlInt] = Field(None, ge=1, le=1 << 20)
    max_num_batched_tokens: Optional[Tokens] = None
    max_model_len: Optional[Annotated[YamlInt, Field(ge=2, le=MAX_CONTEXT_TOKENS)]] = Field(
        None, description="default: the model's context length")
    chunk_tokens: Optional[Tokens] = None
    preemption: Literal["recompute", "swap"] = "recompute"

    @model_validator(mode="before")
    @classmethod
    def _a_name_alone(cls, value):
        return _named_alone(value, "name")

    @field_validator("name", mode="before")
    @classmethod
    def _not_a_topology(cls, value):
        if value == "disaggregated":
            raise ValueError("disaggregation is a cluster topology: set cluster: {mode: disaggregated, "
                             "prefill_replicas: N, decode_replicas: M} and keep a scheduler here")
        return value

    _known = _registered("infersim.sim.schedulers:SCHEDULERS", "name")


class KVCacheSection(_Section):
    block_size: Optional[YamlInt] = Field(None, ge=1, le=1024)
    num_blocks: Optional[YamlInt] = Field(None, ge=1, le=1 << 40,
                                          description="default: what the memory plan leaves for KV")
    allocator: Optional[Literal["paged", "contiguous"]] = Field(
        None, description="default: the scheduler's (contiguous for static and orca, paged otherwise)")
    memory_utilization: Optional[YamlFloat] = Field(None, ge=0.01, le=1)
    memory_utilization_of: Optional[Literal["total", "free"]] = Field(
        None, description="total: a share of the GPU's memory (vLLM, SGLang); free: the KV cache's share of what "
                          "weights and activations leave (TensorRT-LLM); default: the engine's")
    watermark: Optional[YamlFloat] = Field(None, ge=0, lt=1)
    prefix_caching: Optional[StrictBool] = None
    swap_space_gib: YamlFloat = Field(4.0, ge=0, le=1 << 20)
    runtime_gib: Optional[YamlFloat] = Field(
        None, ge=0, le=1 << 20, description="memory the engine's process holds beyond weights, activations and KV "
                                            "(CUDA context, workspaces, buffers); default: the engine's")
    memory_profile: Optional[Literal["step", "context", "static", "engine"]] = Field(
        None, description="step: the KV cache is sized after the largest step, every sequence's logits included "
                          "(vLLM); context: after context requests filling the token budget, each sampling one "
                          "token (TensorRT-LLM's PyTorch backend); static: after no pass, the activations living in "
                          "the share memory_utilization leaves out (SGLang); engine: the largest step's activations and every "
                          "sequence's logits held at once (a TensorRT engine); default: the engine's")


class ArrivalSection(_Section):
    """Open loop (poisson, gamma, constant at `rate_per_s`; burst: every request at once) or closed loop
    (concurrency: that many clients, each sending its next request when its last one completes)."""

    process: Literal["poisson", "gamma", "constant", "burst", "concurrency"] = "poisson"
    rate_per_s: Optional[YamlFloat] = Field(None, gt=0)
    cv: YamlFloat = Field(1.0, ge=0.01, le=100)
    concurrency: Optional[YamlInt] = Field(None, ge=1, le=1 << 20)

    @model_validator(mode="after")
    def _keys_of_its_process(self):
        rated = self.process in ("poisson", "gamma", "constant")
        if rated and self.rate_per_s is None:
            if "process" not in self.model_fields_set and self.concurrency is not None:
                raise ValueError("concurrency needs process: concurrency (the process is poisson, at rate_per_s, "
                                 "unless it says)")
            raise ValueError(f"process {self.process} needs rate_per_s")
        if self.process == "concurrency" and self.concurrency is None:
            raise ValueError("process concurrency needs concurrency (the number of clients)")
        if self.process == "gamma" and "cv" not in self.model_fields_set:
            raise ValueError("process gamma needs cv, the gaps' coefficient of variation (1 is poisson; 2 is burstier)")
        stray = [k for k, wanted in (("rate_per_s", rated), ("concurrency", self.process == "concurrency"),
                                     ("cv", self.process == "gamma")) if k in self.model_fields_set and not wanted]
        if stray:
            raise ValueError(f"{stray[0]} does not apply to process {self.process}")
        return self


class LengthSection(_Section):
    kind: Literal["fixed", "uniform", "normal", "lognormal", "zipf"] = "fixed"
    value: YamlInt = Field(0, ge=0, le=MAX_CONTEXT_TOKENS)
    low: Tokens = 1
    high: Tokens = 1
    mean: YamlFloat = Field(0.0, ge=0, le=MAX_CONTEXT_TOKENS)
    std: YamlFloat = Field(0.0, ge=0, le=MAX_CONTEXT_TOKENS)
    zipf_a: YamlFloat = Field(1.5, gt=1, le=100)
    max_tokens: Tokens = 1 << 20

    @model_validator(mode="after")
    def _complete(self):
        needs, optional, clipped = _LENGTH_KEYS[self.kind]
        for key in needs:
            if key not in self.model_fields_set:
                raise ValueError(f"kind {self.kind} needs {' and '.join(needs)}")
        stray = sorted(self.model_fields_set - {"kind", *needs, *optional})
        if stray:
            raise ValueError(f"{stray[0]} does not apply to kind {self.kind} (it takes "
                             f"{', '.join((*needs, *optional))})")
        if self.kind in ("fixed", "zipf") and self.value < 1:
            raise ValueError(f"value must be >= 1, got {bound_text(self.value)}")
        if self.kind == "uniform" and self.high < self.low:
            raise ValueError(f"high must be >= low={self.low}, got {self.high}")
        if self.kind in ("normal", "lognormal") and self.mean < 1:  # lengths are at least 1: most would pile up there
            raise ValueError(f"mean must be >= 1 token, got {bound_text(self.mean)}")
        if clipped and self.max_tokens < getattr(self, clipped):
            raise ValueError(f"max_tokens={bound_text(self.max_tokens)} is below {clipped}="
                             f"{bound_text(getattr(self, clipped))}, so lengths would pile up at max_tokens; raise "
                             f"max_tokens or lower {clipped}")
        return self


# kind -> (keys it needs, keys it may take, the key max_tokens must not be below: clipping more would
# change the distribution rather than trim its tail)
_LENGTH_KEYS = {"fixed": (("value",), (), None), "uniform": (("low", "high"), ("max_tokens",), "high"),
                "normal": (("mean", "std"), ("max_tokens",), "mean"),
                "lognormal": (("mean", "std"), ("max_tokens",), "mean"),
                "zipf": (("value",), ("zipf_a", "max_tokens"), "value")}


def _a_path(value: str) -> str:
    if not value.strip():
        raise ValueError("must name a file (it is empty)")
    return value


FilePath = Annotated[str, AfterValidator(_a_path)]


class TraceSection(_Section):
    path: FilePath
    rate_scale: YamlFloat = Field(1.0, gt=0, le=1e6, description="the trace replayed this many times faster")


class SharedPrefixSection(_Section):
    tokens: Tokens
    groups: YamlInt = Field(1, ge=1, le=1 << 31)
    fraction: YamlFloat = Field(1.0, ge=0, le=1)


class WorkloadSection(_Section):
    num_requests: Optional[YamlInt] = Field(None, ge=1, le=MAX_REQUESTS,
                                            description="default: 1000, or the whole trace")
    trace: Optional[TraceSection] = None
    arrival: Optional[ArrivalSection] = None
    prompt_tokens: Optional[Union[Tokens, LengthSection]] = None
    output_tokens: Optional[Union[Tokens, LengthSection]] = None
    lengths_file: Optional[FilePath] = None
    num_seqs: YamlInt = Field(1, ge=1, le=1 << 16)
    shared_prefix: Optional[SharedPrefixSection] = None

    @model_validator(mode="after")
    def _one_source(self):
        if self.trace is not None:
            extra = [k for k in ("arrival", "prompt_tokens", "output_tokens", "lengths_file")
                     if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"a trace fixes arrivals and lengths; remove {', '.join(extra)}")
            return self
        if self.arrival is None:
            raise ValueError("needs an arrival process (arrival: {process: poisson, rate_per_s: ...}) or a trace")
        if self.lengths_file is None and (self.prompt_tokens is None or self.output_tokens is None):
            raise ValueError("needs prompt_tokens and output_tokens, or a lengths_file")
        if self.lengths_file is not None and (self.prompt_tokens is not None or self.output_tokens is not None):
            raise ValueError("a lengths_file fixes prompt and output lengths; remove prompt_tokens and output_tokens")
        return self


class SpeculativeSection(_Section):
    """Speculative decoding (roofline/speculative.py): a preset (infersim.roofline.speculative.PRESETS) and/or
    the method, how many tokens to draft per step, and the acceptance rate (one for every position, or
    one per position, each given that the positions before it were accepted)."""

    preset: Optional[str] = None
    method: Optional[Literal["model", "eagle", "mtp", "medusa", "ngram"]] = None
    num_speculative_tokens: Optional[YamlInt] = Field(None, ge=1, le=16)
    acceptance_rate: Optional[Union[Annotated[YamlFloat, Field(ge=0, le=1)],
                                    Annotated[list[Annotated[YamlFloat, Field(ge=0, le=1)]],
                                              Field(min_length=1)]]] = None
    draft_model: Optional[str] = None

    _known = _registered("infersim.roofline.speculative:PRESETS", "preset")

    @model_validator(mode="after")
    def _complete(self):
        if self.preset is None:
            missing = [k for k in ("method", "num_speculative_tokens", "acceptance_rate") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"needs a preset, or method, num_speculative_tokens and acceptance_rate "
                                 f"(missing: {', '.join(missing)})")
        method = self.method or (self.preset and _speculative_preset(self.preset).method)
        if (method == "model") != (self.draft_model is not None):
            raise ValueError("draft_model is needed by method model (a registry name or config.json) and only by it")
        return self


def _speculative_preset(name: str):
    from infersim.roofline.speculative import PRESETS
    return PRESETS[name]


class EarlyExitSection(_Section):
    """Early exit (roofline/early_exit.py): tokens leave after `exit_fractions[i]` of the layers with
    `probabilities[i]`; skipped layers' K/V are filled by `kv_fill` (copy or recompute)."""

    exit_fractions: list[Annotated[YamlFloat, Field(gt=0, le=1)]] = Field(min_length=1, max_length=1024)
    probabilities: list[Annotated[YamlFloat, Field(ge=0, le=1)]] = Field(min_length=1, max_length=1024)
    kv_fill: Literal["copy", "recompute"] = "copy"


class ContrastiveSection(_Section):
    """Contrastive decoding (roofline/contrastive.py): an amateur model runs beside the served one."""

    amateur_model: str


# The longest bound each latency SLO may set, in seconds: past them a bound is likely milliseconds written as
# seconds (a TTFT of minutes is a 1M-token prefill's; a token every 10 s no served model is that slow)
SLO_MAX_S = {"ttft_s": 300.0, "tpot_s": 10.0, "itl_s": 10.0, "e2e_s": 3600.0}


def slo_bound(metric: str, value: float) -> float:
    """`value`, a bound on `metric` in seconds, if within SLO_MAX_S; else why it reads as milliseconds."""
    if value > SLO_MAX_S[metric]:
        raise ValueError(f"{value:g} s is over {SLO_MAX_S[metric]:g} s: SLO bounds are in seconds (write "
                         f"{value / 1000:g} for {value:g} ms)")
    return value


class SLOSection(_Section):
    ttft_s: Optional[Annotated[YamlFloat, Field(gt=0), AfterValidator(lambda v: slo_bound("ttft_s", v))]] = None
    tpot_s: Optional[Annotated[YamlFloat, Field(gt=0), AfterValidator(lambda v: slo_bound("tpot_s", v))]] = None


class ClusterSection(_Section):
    mode: Literal["colocated", "disaggregated"] = "colocated"
    replicas: Optional[YamlInt] = Field(None, ge=1, le=MAX_REPLICAS, description="colocated: 1 by default")
    router: str = "round_robin"
    prefill_replicas: Optional[YamlInt] = Field(None, ge=1, le=MAX_REPLICAS, description="disaggregated: 1 by default")
    decode_replicas: Optional[YamlInt] = Field(None, ge=1, le=MAX_REPLICAS, description="disaggregated: 1 by default")
    kv_transfer_gb_per_s: Optional[YamlFloat] = Field(None, ge=1e-3, le=1e6,
                                                      description="default: the GPU interconnect")

    _known = _registered("infersim.sim.router:ROUTERS", "router")

    @model_validator(mode="after")
    def _keys_of_its_mode(self):
        mine = {"colocated": ("replicas",),
                "disaggregated": ("prefill_replicas", "decode_replicas", "kv_transfer_gb_per_s")}[self.mode]
        others = {"replicas", "prefill_replicas", "decode_replicas", "kv_transfer_gb_per_s"} - set(mine)
        stray = sorted(k for k in others if getattr(self, k) is not None)
        if stray:
            raise ValueError(f"{stray[0]} does not apply to mode {self.mode}")
        return self


MAX_TIERS = 16  # a cascade longer than this is not one anyone deploys


class TierSection(_Section):
    """One pool of a cascade. A key left out takes the scenario's top-level value (a section given replaces
    the top-level one whole; `replicas` defaults to cluster.replicas), so the last tier is usually `{}`: the
    scenario's own deployment. `escalate` is the probability that an answer of this tier is judged
    inadequate and the request goes on to the next tier: every tier but the last has one."""

    model: Optional[str] = None
    hardware: Optional[str] = None
    parallelism: Optional[ParallelismSection] = None
    quantization: Optional[Union[str, QuantizationSection]] = None
    engine: Optional[EngineSection] = None
    replicas: Optional[YamlInt] = Field(None, ge=1, le=MAX_REPLICAS, description="default: cluster.replicas")
    escalate: Optional[YamlFloat] = Field(None, ge=0, le=1)


class CascadeSection(_Section):
    """Cascade serving (sim/cascade.py): `tiers` from the smallest model to the largest, every request
    answered by tier 0 and escalated up while its answer is judged inadequate (a probability per tier: the
    stated model of difficulty). `policy` restart: the next tier answers the original prompt (the rejected
    answer is wasted work); keep: it reads the rejected attempt's prompt and answer as context. The
    top-level model, hardware, parallelism, quantization and engine are the tiers' defaults (the last
    tier's, as a rule); scheduler, kv_cache, slo, speculative and early_exit apply to every tier. Tiers are
    colocated pools driven open loop: neither cluster.mode disaggregated nor arrival concurrency applies."""

    policy: str = "restart"
    tiers: list[TierSection] = Field(max_length=MAX_TIERS)

    _known = _registered("infersim.sim.cascade:ESCALATIONS", "policy")

    @field_validator("tiers")
    @classmethod
    def _escalate_on_every_tier_but_the_last(cls, tiers):
        if len(tiers) < 2:
            raise ValueError("a cascade needs at least 2 tiers, smallest model first")
        missing = next((i for i, tier in enumerate(tiers[:-1]) if tier.escalate is None), None)
        if missing is not None:
            raise ValueError(f"tier {missing} needs escalate (the probability that its answer goes on to tier "
                             f"{missing + 1}): every tier but the last has one")
        if tiers[-1].escalate is not None:
            raise ValueError(f"tier {len(tiers) - 1}, the last, gives final answers: remove its escalate "
                             f"({bound_text(tiers[-1].escalate)})")
        return tiers


class Scenario(_Section):
    name: Optional[str] = None
    description: Optional[str] = None
    model: str
    hardware: str
    parallelism: ParallelismSection = ParallelismSection()
    quantization: Union[str, QuantizationSection] = "fp16"
    engine: EngineSection = EngineSection()
    scheduler: SchedulerSection = SchedulerSection()
    kv_cache: KVCacheSection = KVCacheSection()
    workload: WorkloadSection
    slo: SLOSection = SLOSection()
    cluster: ClusterSection = ClusterSection()
    speculative: Optional[SpeculativeSection] = None
    early_exit: Optional[EarlyExitSection] = None
    contrastive: Optional[ContrastiveSection] = None
    cascade: Optional[CascadeSection] = None
    seed: YamlInt = Field(0, ge=0, lt=1 << 64)

    @field_validator("name", "description")
    @classmethod
    def _printable(cls, text, info):
        if text is not None and unprintable(text, lines=info.field_name == "description"):
            raise ValueError(UNPRINTABLE_NAME)
        return text


def load_scenario(path: Path | str) -> tuple[Scenario, Path]:
    """The validated scenario and the folder its relative paths start from."""
    path = Path(path)
    data = load_yaml(path, "scenario")
    if not isinstance(data, dict):
        raise SpecError("", "must be a mapping of sections (model, hardware, workload, ...)", type(data).__name__,
                        file=path.name)
    try:
        return Scenario.model_validate(data), path.parent
    except ValidationError as e:
        raise spec_error(e, file=path.name, model=Scenario) from None


class EngineFile(_Section):
    """A deployment's engine apart from what it serves: a scenario's `engine`, `scheduler` and `kv_cache`
    sections, as `infersim compare-serving --engine FILE.yaml` reads them (and `calibrate --from-serving`
    writes them) to simulate measured runs, which give the model, GPU, parallelism and workload themselves."""

    engine: EngineSection = EngineSection()
    scheduler: SchedulerSection = SchedulerSection()
    kv_cache: KVCacheSection = KVCacheSection()
    _file: Optional[str] = PrivateAttr(None)  # the file it was read from, which its keys' errors name

    @property
    def file(self) -> str | None:
        return self._file


def load_engine_file(path: Path | str, max_model_len_given: bool = False) -> EngineFile:
    """The engine, scheduler and kv_cache sections of a YAML file (a scenario's others are refused: measured
    runs or flags say what is served; so do the runs of the longest context, unless `max_model_len_given`)."""
    path = Path(path)
    data = load_yaml(path, "--engine")
    if not isinstance(data, dict):
        raise SpecError("", "must be a mapping with an engine section (and scheduler, kv_cache if you set them)",
                        type(data).__name__, file=path.name)
    other = next((key for key in data if key in Scenario.model_fields and key not in EngineFile.model_fields), None)
    if other is not None:
        raise SpecError(other, "is a scenario's section, not an engine file's: it holds only engine, scheduler and "
                        "kv_cache (the runs or the flags give the model, GPU, parallelism, quantization and workload)",
                        file=path.name)
    try:
        deployment = EngineFile.model_validate(data)
    except ValidationError as e:
        raise spec_error(e, file=path.name, model=EngineFile) from None
    if deployment.scheduler.max_model_len is not None and not max_model_len_given:
        raise SpecError("scheduler.max_model_len", "is each run's own (its longest request): leave it out",
                        deployment.scheduler.max_model_len, file=path.name)
    deployment._file = path.name
    return deployment


def load_run(path: Path | str) -> tuple[Scenario, object, list]:
    """A scenario file read, validated, checked against this machine's memory and built: (scenario, what
    to simulate: a RunConfig for sim.run.simulate, or with a cascade section a CascadeConfig for
    sim.cascade.simulate_cascade, requests). Every mistake is one line naming the file (or the trace that
    holds it)."""
    path = Path(path)
    scn, base = load_scenario(path)
    with errors_in(path.name):
        check_memory(RunSize(_request_count(scn.workload, base) * _attempts_per_request(scn),
                             _replica_count(scn)))  # before sampling
        cfg, requests = build_run(scn, base)
        if scn.cascade is not None:
            return scn, build_cascade(scn, base), requests
    return scn, cfg, requests


def _request_count(w: WorkloadSection, base: Path) -> int:
    """Requests the workload will hold: num_requests, or at most the trace's rows."""
    if w.trace is None:
        return w.num_requests or DEFAULT_REQUESTS
    rows = read_text(base / w.trace.path, "workload.trace.path").count("\n")
    return min(rows, w.num_requests or rows)


def _replica_count(scn: Scenario) -> int:
    """Replicas the scenario runs (as build_run and build_cascade build them)."""
    if scn.cascade is not None:
        return sum(tier.replicas or scn.cluster.replicas or 1 for tier in scn.cascade.tiers)
    return cluster_replicas(scn.cluster)


def cluster_replicas(cluster: ClusterSection) -> int:
    """Replicas a cluster section runs: its colocated replicas, or both disaggregated pools."""
    if cluster.mode == "disaggregated":
        return (cluster.prefill_replicas or 1) + (cluster.decode_replicas or 1)
    return cluster.replicas or 1


def _attempts_per_request(scn: Scenario) -> int:
    """The most times a request is served: once, or once per tier of a cascade."""
    return 1 if scn.cascade is None else len(scn.cascade.tiers)


def build_run(scn: Scenario, base: Path):
    """(RunConfig, requests) for the simulator (the top-level deployment's, a cascade's too: see
    build_cascade); a run too large for this machine's memory is refused first."""
    from infersim.sim.run import requests_from
    cfg = _run_config(scn, base)
    w = scn.workload
    workload, prefix_id = build_workload(w, scn.seed, base)
    steps = max_steps(workload.prompt_tokens, workload.output_tokens,
                      min(cfg.limits.chunk_tokens, cfg.limits.max_num_batched_tokens), cfg.limits.max_model_len)
    attempts = _attempts_per_request(scn)
    check_memory(RunSize(len(workload) * attempts, _replica_count(scn), steps * attempts,
                         len(workload) * w.num_seqs * attempts), lengths_field=_lengths_field(w))
    return cfg, requests_from(workload, w.num_seqs, prefix_id=prefix_id,
                              prefix_tokens=w.shared_prefix.tokens if w.shared_prefix else 0)


_TIER_KEYS = ("model", "hardware", "parallelism", "quantization", "engine")  # a tier's own, over the top level's


def build_cascade(scn: Scenario, base: Path):
    """The scenario's CascadeConfig: each tier deployed as the scenario with the tier's keys in place of the
    top-level ones; a mistake in a tier's key is named by its path under cascade.tiers."""
    from infersim.sim.cascade import CascadeConfig, Tier, check_cascade
    from infersim.sim.run import check_deployable
    if scn.cluster.mode == "disaggregated":
        raise SpecError("cluster.mode", "a cascade's tiers are colocated pools; remove the cascade or set mode "
                        "colocated", scn.cluster.mode)
    tiers = []
    for i, tier in enumerate(scn.cascade.tiers):
        given = {key: getattr(tier, key) for key in _TIER_KEYS if getattr(tier, key) is not None}
        cluster = scn.cluster.model_copy(update={"replicas": tier.replicas or scn.cluster.replicas})
        try:
            run = _run_config(scn.model_copy(update={**given, "cluster": cluster}), base)
            check_deployable(run)
        except SpecError as e:
            if not given or e.field.split(".")[0] not in _TIER_KEYS:  # the top level's deployment, or its other keys
                raise
            if not given.keys() & {"model", "hardware", "parallelism", "quantization"}:
                check_deployable(_run_config(scn, base))  # the top level's deployment, which the tier runs
            raise type(e)(f"cascade.tiers.{i}.{e.field}", e.problem, e.got) from None
        tiers.append(Tier(run, tier.escalate or 0.0))
    cascade = CascadeConfig(tuple(tiers), scn.cascade.policy, scn.seed)
    check_cascade(cascade)
    return cascade


def _run_config(scn: Scenario, base: Path):
    """The RunConfig of the scenario's deployment: the engine preset's, with the keys the scenario sets."""
    from infersim.roofline import Parallelism, get_hardware, get_model, get_quant
    from infersim.roofline.hardware import Link
    from infersim.roofline.quant import check_runs_on
    from infersim.sim.cluster import Colocated, Disaggregated
    from infersim.sim.metrics import Slo

    model = get_model(scn.model, base)
    hardware = get_hardware(scn.hardware, base)
    q = scn.quantization if isinstance(scn.quantization, QuantizationSection) else QuantizationSection(preset=scn.quantization)
    try:
        quant = get_quant(q.preset, q.kv_bits) if q.kv_bits else get_quant(q.preset)
    except SpecError as e:
        raise SpecError("quantization.preset", str(e).split(": ", 1)[1]) from None
    check_runs_on(quant, hardware, "quantization" if isinstance(scn.quantization, str) else "quantization.preset",
                  q.preset)
    s, kv, c, e = scn.scheduler, scn.kv_cache, scn.cluster, scn.engine
    max_model_len = s.max_model_len or model.max_context_tokens
    if max_model_len > model.max_context_tokens:
        raise SpecError("scheduler.max_model_len", f"must be <= {model.name}'s context of {model.max_context_tokens}",
                        max_model_len)
    if c.mode == "disaggregated":
        cluster = Disaggregated(c.prefill_replicas or 1, c.decode_replicas or 1, c.router)
    else:
        cluster = Colocated(c.replicas or 1, c.router)
    kv_link = (Link(c.kv_transfer_gb_per_s * 1e9, 1.0, hardware.interconnect_latency_s)
               if c.kv_transfer_gb_per_s else None)
    parallel = Parallelism(scn.parallelism.tensor_parallel, scn.parallelism.pipeline_parallel)
    return deployed_config(EngineFile(engine=e, scheduler=s, kv_cache=kv), model, hardware, quant, parallel,
                           max_model_len, cluster=cluster, kv_link=kv_link, slo=Slo(scn.slo.ttft_s, scn.slo.tpot_s),
                           concurrency=scn.workload.arrival.concurrency if scn.workload.arrival else None,
                           speculative=_speculative(scn.speculative, base), early_exit=_early_exit(scn.early_exit),
                           contrastive=_contrastive(scn.contrastive, base), seed=scn.seed)


def deployed_config(deployment: EngineFile, model, hardware, quant, parallel, max_model_len: int, **run_fields):
    """The RunConfig of `model` on `hardware` as the engine preset of `deployment.engine` runs it, with the keys
    its engine, scheduler and kv_cache sections set in place of the preset's (`run_fields`, e.g. cluster, slo,
    concurrency, go to RunConfig as they are); a configuration the simulator cannot run, or a KV cache or swap
    space the GPU cannot hold, is refused."""
    from infersim.roofline import StepOptions
    from infersim.sim.engines import preset_config
    from infersim.sim.run import check_config
    e, s, kv = deployment.engine, deployment.scheduler, deployment.kv_cache
    options = StepOptions(quant=quant, parallel=parallel, flash_attention=e.flash_attention, sampling=e.sampling)
    preset = preset_config(e.preset, model, hardware, options, max_model_len, **run_fields)
    kernels = _over(preset.kernels, graph_max_batch=e.cuda_graph_max_batch,
                    piecewise_max_tokens=_piecewise_max_tokens(e), graph_kernel_floor_s=e.cuda_graph_kernel_s,
                    eager_floor_s=e.eager_kernel_s, all_reduce=e.all_reduce)
    if e.cuda_graph_padded_sizes is not None:
        kernels = kernels.padded_capture(tuple(e.cuda_graph_padded_sizes), e.cuda_graph_max_batch)
    elif e.cuda_graph_max_batch is not None and kernels.padded_sizes:  # the preset's padded capture, to that max
        kernels = kernels.padded_up_to(e.cuda_graph_max_batch)
    cfg = replace(
        preset, scheduler=_given(s.name, preset.scheduler),
        options=preset.options if e.fusions is None else replace(preset.options, fusions=frozenset(e.fusions)),
        limits=_over(preset.limits, max_num_seqs=s.max_num_seqs, max_num_batched_tokens=s.max_num_batched_tokens,
                     chunk_tokens=s.chunk_tokens, preemption=s.preemption),
        kv_cache=_over(preset.kv_cache, block_size_tokens=kv.block_size, num_blocks=kv.num_blocks,
                       allocator=kv.allocator, prefix_caching=kv.prefix_caching, watermark_fraction=kv.watermark,
                       memory_utilization=kv.memory_utilization, swap_space_gib=kv.swap_space_gib,
                       memory_utilization_of=kv.memory_utilization_of, runtime_gib=kv.runtime_gib,
                       memory_profile=kv.memory_profile),
        overhead=_over(preset.overhead, fixed_s=e.overhead_fixed_s, per_seq_s=e.overhead_per_seq_s,
                       overlaps_gpu=e.host_overlaps_gpu, frontend_s=e.frontend_s),
        kernels=kernels)
    if kv.prefix_caching is None:
        cfg = _prefix_caching_where_blocks_share(cfg)
    check_config(cfg)
    _check_swap_space(cfg)
    _check_num_blocks(cfg)
    return cfg


def _piecewise_max_tokens(engine: EngineSection) -> int | None:
    """The engine's piecewise graphs: as the scenario sets them, none where it turns CUDA graphs off
    (`cuda_graph_max_batch: 0`, as vLLM's enforce_eager turns off both kinds) and leaves them unset, else
    the preset's (None)."""
    if engine.piecewise_graph_max_tokens is None and engine.cuda_graph_max_batch == 0:
        return 0
    return engine.piecewise_graph_max_tokens


def _speculative(section: SpeculativeSection | None, base: Path):
    """The drafter and its acceptance model: the preset's, with the keys the scenario sets in their place."""
    if section is None:
        return None
    from infersim.roofline import get_model
    from infersim.roofline.speculative import AcceptanceModel, SpeculativeSpec
    preset = _speculative_preset(section.preset) if section.preset else None
    rate = _given(section.acceptance_rate, preset and preset.acceptance_rate)
    draft = get_model(section.draft_model, base, field="speculative.draft_model") if section.draft_model else None
    return SpeculativeSpec(_given(section.method, preset and preset.method),
                           _given(section.num_speculative_tokens, preset and preset.num_speculative_tokens),
                           AcceptanceModel(tuple(rate) if isinstance(rate, list) else (rate,)), draft)


def _early_exit(section: EarlyExitSection | None):
    if section is None:
        return None
    from infersim.roofline.early_exit import EarlyExitSpec
    return EarlyExitSpec(tuple(section.exit_fractions), tuple(section.probabilities), section.kv_fill)


def _contrastive(section: ContrastiveSection | None, base: Path):
    if section is None:
        return None
    from infersim.roofline import get_model
    from infersim.roofline.contrastive import ContrastiveSpec
    return ContrastiveSpec(get_model(section.amateur_model, base, field="contrastive.amateur_model"))


def _given(value, preset_value):
    """A key the scenario sets wins over the engine preset's default."""
    return preset_value if value is None else value


def _over(spec, **given):
    """The preset's `spec` with the fields the scenario sets (those not None) in place of its values."""
    return replace(spec, **{name: value for name, value in given.items() if value is not None})


def _prefix_caching_where_blocks_share(cfg):
    """`cfg` with the preset's prefix caching left on only where its KV allocator shares blocks: the preset
    turns it on for its own scheduler's paged blocks, not for the contiguous ones the scenario's scheduler
    (static, orca) runs on."""
    from infersim.sim.kv_cache import ALLOCATORS
    if not cfg.kv_cache.prefix_caching or ALLOCATORS[cfg.allocator].shares_prefixes:
        return cfg
    return replace(cfg, kv_cache=replace(cfg.kv_cache, prefix_caching=False))


def _check_swap_space(cfg) -> None:
    """Swap preemption needs host memory for at least one KV block (the simulator would recompute instead)."""
    from infersim.roofline.memory import kv_bytes_per_token_per_gpu
    kv_cache = cfg.kv_cache
    block_gib = (kv_bytes_per_token_per_gpu(cfg.model, cfg.options.quant, cfg.options.parallel)
                 * kv_cache.block_size_tokens / 2 ** 30)
    preemption, swap_space_gib = cfg.limits.preemption, kv_cache.swap_space_gib
    if preemption == "swap" and swap_space_gib < block_gib:
        raise SpecError("kv_cache.swap_space_gib", f"holds no KV block ({block_gib:.3g} GiB each here) for "
                        "scheduler.preemption swap; give swap space or use preemption: recompute", swap_space_gib)


def _check_num_blocks(cfg) -> None:
    """A KV-block override (vLLM's num_gpu_blocks_override) may shrink the cache, not make it larger than the
    memory the weights and activations leave: such a cache could not be allocated."""
    from infersim.sim.run import total_kv_blocks
    given = cfg.kv_cache.num_blocks
    if given is None:
        return
    most = total_kv_blocks(replace(cfg, kv_cache=replace(cfg.kv_cache, num_blocks=None)))
    if given > most:
        raise HardwareLimit("kv_cache.num_blocks", f"is more than {cfg.hardware.name} holds: {most:,} blocks of "
                        f"{cfg.kv_cache.block_size_tokens} tokens fit beside {cfg.model.name}'s weights and "
                        "activations at this memory_utilization; give at most that", given)


def _lengths(spec, count: int, rng) -> np.ndarray:
    from infersim.sim.workload import sample_lengths
    if isinstance(spec, int):
        return np.full(count, spec, dtype=np.int64)
    return sample_lengths(spec.kind, count, rng, value=spec.value, low=spec.low, high=spec.high, mean=spec.mean,
                          std=spec.std, zipf_a=spec.zipf_a, max_tokens=spec.max_tokens)


def _lengths_field(w: WorkloadSection) -> str:
    """The key where the workload's lengths come from."""
    return ("workload.trace.path" if w.trace is not None else "workload.lengths_file" if w.lengths_file is not None
            else "workload.output_tokens")


def build_workload(w: WorkloadSection, seed: int, base: Path):
    """The requests' arrivals and lengths (shared prefixes included), and each one's prefix group (-1 for
    none; None without shared prefixes)."""
    from infersim.sim.workload import Workload, arrival_times, read_lengths, read_trace

    rng = np.random.default_rng(seed)
    if w.trace is not None:
        workload = read_trace(base / w.trace.path, w.trace.rate_scale, w.num_requests)
        rows = len(workload.prompt_tokens)
        if w.num_requests is not None and rows < w.num_requests:
            raise SpecError("workload.num_requests", f"asks for more requests than the trace's {rows:,} rows; leave "
                            "it out to run the whole trace", w.num_requests)
    else:
        n = w.num_requests or DEFAULT_REQUESTS
        if w.arrival.process in ("burst", "concurrency"):  # all at once, or sent by clients as they finish
            arrivals = np.zeros(n)
        else:
            arrivals = arrival_times(w.arrival.process, w.arrival.rate_per_s, n, rng, w.arrival.cv)
        if w.lengths_file is not None:
            prompts, outputs = read_lengths(base / w.lengths_file)
            rows = rng.integers(0, len(prompts), n)
            prompt, output = prompts[rows], outputs[rows]
        else:
            prompt, output = _lengths(w.prompt_tokens, n, rng), _lengths(w.output_tokens, n, rng)
        workload = Workload(arrivals, prompt, output)
    prefix_id = None
    if w.shared_prefix is not None:
        n = len(workload)
        groups = rng.integers(0, w.shared_prefix.groups, n)
        prefix_id = np.where(rng.random(n) < w.shared_prefix.fraction, groups, -1)
        prompt = np.where(prefix_id >= 0, workload.prompt_tokens + w.shared_prefix.tokens, workload.prompt_tokens)
        workload = Workload(workload.arrival_s, prompt, workload.output_tokens)
    return workload, prefix_id
