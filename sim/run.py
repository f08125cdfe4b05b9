"""A simulation run: deploy a cluster from a run configuration, replay requests through it, and summarize."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import simpy

from infersim.roofline.contrastive import ContrastiveSpec
from infersim.roofline.early_exit import EarlyExitSpec
from infersim.roofline.errors import SpecError, require_choice
from infersim.roofline.hardware import HardwareSpec, Link
from infersim.roofline.kernel_set import KernelSet
from infersim.roofline.latency import StepTimer
from infersim.roofline.memory import MemoryPlan, kv_bytes_per_token_per_gpu, plan_memory, weight_bytes_per_gpu
from infersim.roofline.models import ModelSpec
from infersim.roofline.speculative import (DraftTimer, SpeculativeSpec, draft_kv_bytes_per_token_per_gpu,
                                           draft_weight_bytes_per_gpu)
from infersim.roofline.step import StepOptions, check_fabric, check_options, companion_options, utilization_peaks
from infersim.roofline.timing import transfer_time_s

from .cluster import Colocated, Deployment, Disaggregated
from .kv_cache import ALLOCATORS, KVCacheManager
from .metrics import Metrics, Slo, request_table, summarize
from .replica import EngineOverhead, Replica, ReplicaCosts
from .request import Request
from .router import ROUTERS, Router
from .schedulers import PREEMPTION_MODES, SCHEDULERS, Scheduler, SchedulerLimits
from .schedulers.base import MAX_DECODE_STEPS
from .contrastive import Contrastive
from .early_exit import EarlyExit
from .speculation import Speculation
from .workload import Workload


@dataclass(frozen=True)
class KVCacheSpec:
    """How a replica's KV cache is laid out (vLLM's names where it has them)."""

    block_size_tokens: int = 16
    num_blocks: int | None = None  # override the memory plan (vLLM's num_gpu_blocks_override)
    allocator: str | None = None  # default: the scheduler's first choice
    prefix_caching: bool = False
    watermark_fraction: float = 0.01
    memory_utilization: float = 0.9
    # what memory_utilization is a share of: all of it ("total", vLLM's gpu_memory_utilization) or what weights
    # and activations leave ("free", TensorRT-LLM's free_gpu_memory_fraction): roofline.memory.plan_memory
    memory_utilization_of: str = "total"
    swap_space_gib: float = 4.0
    # what the engine's process holds beyond weights, activations and KV (roofline.memory.plan_memory)
    runtime_gib: float = 0.0
    # the startup pass the KV cache is sized after (MEMORY_PROFILES): the largest step, its token budget and
    # every sequence's logits (vLLM's profile_run), or context requests of max_model_len tokens filling the
    # budget, each sampling its last token (TensorRT-LLM's PyTorch backend, _torch/pyexecutor/_util.py
    # KvCacheCreator), or none, the activations living in the share memory_utilization leaves out ("static":
    # SGLang's mem_fraction_static holds weights and KV pool alone, model_runner `profile_max_num_token`), or
    # a TensorRT engine's memory, its largest step's activations and every sequence's logits held at once
    # from load ("engine")
    memory_profile: str = "step"


@dataclass(frozen=True)
class RunConfig:
    model: ModelSpec
    hardware: HardwareSpec
    options: StepOptions = field(default_factory=StepOptions)
    scheduler: str = "vllm"
    limits: SchedulerLimits = field(default_factory=SchedulerLimits)
    kv_cache: KVCacheSpec = field(default_factory=KVCacheSpec)
    overhead: EngineOverhead = field(default_factory=EngineOverhead)
    kernels: KernelSet = field(default_factory=KernelSet)
    cluster: Colocated | Disaggregated = field(default_factory=Colocated)
    kv_link: Link | None = None  # between disaggregated pools; default: the hardware's interconnect
    slo: Slo = field(default_factory=Slo)
    concurrency: int | None = None  # closed loop: this many clients, each sending a request when its last is done
    jumps: bool = True  # advance fixed decode batches in one exact jump (False: one step at a time)
    speculative: SpeculativeSpec | None = None  # speculative decoding: draft k tokens, verify them in one pass
    early_exit: EarlyExitSpec | None = None  # decode steps stop at their deepest token's exit layer
    contrastive: ContrastiveSpec | None = None  # every step also runs an amateur model (contrastive decoding)
    seed: int = 0  # of what speculative steps accept and how deep early exits go (the workload has its own)

    @property
    def scheduler_class(self) -> type[Scheduler]:
        require_choice("scheduler.name", self.scheduler, SCHEDULERS)
        return SCHEDULERS[self.scheduler]

    @property
    def allocator(self) -> str:
        """The KV allocator: the one asked for, if the scheduler runs on it, else the scheduler's default."""
        allowed = self.scheduler_class.allocators
        if self.kv_cache.allocator is None:
            return allowed[0]
        require_choice("kv_cache.allocator", self.kv_cache.allocator, ALLOCATORS)
        if self.kv_cache.allocator not in allowed:
            raise SpecError("kv_cache.allocator", f"the {self.scheduler} scheduler runs on {' or '.join(allowed)} "
                            "KV blocks", self.kv_cache.allocator)
        return self.kv_cache.allocator


@dataclass
class RunResult:
    requests: list[Request]
    metrics: Metrics
    summary: dict
    total_blocks: int
    replicas: list  # what each replica left: a Replica (SimPy), CompiledReplica, or ShardedReplica (sim.shards)
    table: dict  # metrics.request_table: one row per request
    timeline: dict  # Metrics.timeline: one row per step


def requests_from(workload: Workload, num_seqs=1, priority=None, prefix_id=None, prefix_tokens=0) -> list[Request]:
    n = len(workload)
    prio = np.zeros(n, dtype=np.int64) if priority is None else priority
    prefix = np.full(n, -1) if prefix_id is None else prefix_id
    seqs = np.broadcast_to(np.asarray(num_seqs), (n,))
    return [Request(i, float(a), int(p), int(o), int(s), int(q), int(x), min(int(prefix_tokens), int(p)) if x >= 0 else 0)
            for i, (a, p, o, s, q, x) in enumerate(zip(workload.arrival_s.tolist(), workload.prompt_tokens.tolist(),
                                                        workload.output_tokens.tolist(), seqs.tolist(),
                                                        prio.tolist(), prefix.tolist()))]


class DraftBytes(NamedTuple):
    weight_bytes: float
    kv_bytes_per_token: float
    field: str = "speculative"  # the scenario key that brought the second model, and that model's name
    name: str = ""


def _draft_bytes(cfg: RunConfig) -> DraftBytes:
    """What a speculative drafter, or a contrastive decoder's amateur, adds on each GPU (the amateur in
    fp16 at the expert's tensor parallelism)."""
    spec, o = cfg.speculative, cfg.options
    if cfg.contrastive is not None:
        amateur, companion = cfg.contrastive.amateur, companion_options(o)
        return DraftBytes(weight_bytes_per_gpu(amateur, companion.quant, companion.parallel),
                          kv_bytes_per_token_per_gpu(amateur, companion.quant, companion.parallel),
                          "contrastive.amateur_model", amateur.name)
    if spec is None:
        return DraftBytes(0.0, 0.0)
    drafter = ("speculative.draft_model", spec.draft_model.name) if spec.draft_model else ("speculative", spec.method)
    return DraftBytes(draft_weight_bytes_per_gpu(spec, cfg.model, o.quant, o.parallel),
                      draft_kv_bytes_per_token_per_gpu(spec, cfg.model, o.quant, o.parallel), *drafter)


def kv_bytes_per_token(cfg: RunConfig) -> float:
    """K and V one token of context takes on each GPU: the model's, and its drafter's when speculating."""
    own = kv_bytes_per_token_per_gpu(cfg.model, cfg.options.quant, cfg.options.parallel)
    return own + _draft_bytes(cfg).kv_bytes_per_token


MEMORY_PROFILES = ("step", "context", "static", "engine")  # KVCacheSpec.memory_profile


def replica_memory_plan(cfg: RunConfig) -> MemoryPlan:
    """One replica's GPU memory as its engine sizes it at startup (see roofline.memory): weights, a drafter's,
    the workspace of its startup pass (`KVCacheSpec.memory_profile`), the engine's runtime, and the KV cache."""
    draft, kv = _draft_bytes(cfg), cfg.kv_cache
    require_choice("kv_cache.memory_profile", kv.memory_profile, MEMORY_PROFILES)
    budget = cfg.scheduler_class.step_token_budget(cfg.limits)
    sampled = (max(1, -(-budget // cfg.limits.max_model_len)) if kv.memory_profile == "context"
               else cfg.limits.max_num_seqs)
    if kv.memory_profile == "static":  # no pass: no workspace comes off the share
        budget = sampled = 0
    return plan_memory(cfg.model, cfg.hardware, cfg.options.quant, cfg.options.parallel, kv.memory_utilization,
                       budget, sampled, draft.weight_bytes, draft.kv_bytes_per_token, kv.memory_utilization_of,
                       draft_field=draft.field, draft_name=draft.name, runtime_bytes=kv.runtime_gib * 2 ** 30,
                       logits_held=kv.memory_profile == "engine")


def total_kv_blocks(cfg: RunConfig) -> int:
    """Blocks one replica's KV cache holds."""
    return cfg.kv_cache.num_blocks or replica_memory_plan(cfg).max_kv_tokens // cfg.kv_cache.block_size_tokens


def check_deployable(cfg: RunConfig) -> None:
    """What deploying `cfg` finds, found ahead of it: its layers split over its GPUs, which one fabric joins,
    and a replica's memory holds its weights and activations."""
    check_options(cfg.model, cfg.options)
    check_fabric(cfg.hardware, cfg.options)
    replica_memory_plan(cfg)


def check_config(cfg: RunConfig) -> None:
    """Every name in the configuration is known and its parts fit together (a SpecError names the field)."""
    require_choice("scheduler.preemption", cfg.limits.preemption, PREEMPTION_MODES)
    if cfg.limits.preemption not in cfg.scheduler_class.preemption_modes:
        raise SpecError("scheduler.preemption", f"the {cfg.scheduler} scheduler preempts by "
                        f"{' or '.join(cfg.scheduler_class.preemption_modes)}", cfg.limits.preemption)
    scheduler, limits = cfg.scheduler_class, cfg.limits
    if not (scheduler.chunked_prompts or scheduler.never_evicts) and limits.max_num_batched_tokens < limits.max_model_len:
        # vLLM V0's SchedulerConfig._verify_args refuses the same: a preempted request is prefilled again
        # whole, prompt and output so far, and one longer than the budget could never be
        raise SpecError("scheduler.max_num_batched_tokens", f"must be >= scheduler.max_model_len="
                        f"{limits.max_model_len} for the {cfg.scheduler} scheduler, which prefills whole prompts "
                        "(a preempted request is prefilled again, output and all); raise it, lower max_model_len "
                        "or use a chunked-prefill scheduler", limits.max_num_batched_tokens)
    require_choice("cluster.router", cfg.cluster.router, ROUTERS)
    techniques = [t for t in ("speculative", "early_exit", "contrastive") if getattr(cfg, t) is not None]
    if len(techniques) > 1:
        layer_skip = (" (LayerSkip's self-speculation is a draft of the model's first layers: use speculative)"
                      if techniques[:2] == ["speculative", "early_exit"] else "; keep one of them")
        raise SpecError(techniques[1], f"is modelled on its own, not together with {techniques[0]}{layer_skip}",
                        "both set")
    for technique in techniques:
        if getattr(cfg, technique) is not None and cfg.options.parallel.pipeline_parallel > 1:  # vLLM refuses it
            raise SpecError(technique, "does not run with pipeline parallelism; set pipeline_parallel: 1",
                            cfg.options.parallel.pipeline_parallel)
    if cfg.speculative is not None:
        cfg.speculative.check_target(cfg.model)
    if cfg.contrastive is not None:
        cfg.contrastive.check_expert(cfg.model)
    allocator = cfg.allocator
    if cfg.kv_cache.prefix_caching and not ALLOCATORS[allocator].shares_prefixes:
        paged = " or kv_cache.allocator: paged" if "paged" in scheduler.allocators else ""
        raise SpecError("kv_cache.prefix_caching", f"needs paged KV blocks, and the {cfg.scheduler} scheduler here "
                        f"runs on {allocator} ones; set prefix_caching: false{paged}", True)


def _decode_technique(cfg: RunConfig) -> Speculation | EarlyExit | Contrastive | None:
    """What steps do beyond one plain token: exit early, run an amateur model beside, or draft and verify
    (the drafter's or amateur's costs on the kernels the engine's decode steps use: a CUDA graph where it
    captures them, as vLLM V1 and SGLang capture their drafters')."""
    if cfg.early_exit is not None:
        return EarlyExit(cfg.early_exit, cfg.model)
    hw = cfg.kernels.decode_hardware(cfg.hardware)
    if cfg.contrastive is not None:
        return Contrastive(cfg.contrastive, StepTimer(cfg.contrastive.amateur, hw, companion_options(cfg.options)))
    if cfg.speculative is None:
        return None
    return Speculation(cfg.speculative, DraftTimer(cfg.speculative, cfg.model, hw, cfg.options))


class Pool(NamedTuple):
    """A run configuration's cluster deployed in a simulation: its replicas behind their router, and the KV
    blocks each replica holds."""

    deployment: Deployment
    kv_blocks_per_replica: int


def _kv_manager(cfg: RunConfig, blocks: int, host_blocks: int = 0) -> KVCacheManager:
    """One replica's KV cache of `blocks` blocks (and `host_blocks` of swap space)."""
    kv_spec = cfg.kv_cache
    allocator = ALLOCATORS[cfg.allocator].for_cache(kv_spec.block_size_tokens, cfg.limits.max_model_len, blocks)
    return KVCacheManager(allocator, blocks, int(kv_spec.watermark_fraction * blocks), kv_spec.prefix_caching,
                          host_blocks)


def refusal(cfg: RunConfig, blocks: int | None = None) -> Callable[[Request], str]:
    """Why a replica of `cfg` refuses a request on arrival, whatever the load ("" if it takes it): its
    scheduler's limits and its KV cache as deployed (`blocks` of it, `total_kv_blocks` unless given), built
    once for every request asked about."""
    return cfg.scheduler_class(cfg.limits, _kv_manager(cfg, total_kv_blocks(cfg) if blocks is None else blocks)
                               ).reject_reason


def deploy(cfg: RunConfig, env: simpy.Environment, metrics: Metrics, requests: list[Request] | None,
           on_done: Callable[[Request], None] | None = None) -> Pool:
    """`cfg.cluster`'s replicas of `cfg`'s model, recording into `metrics`; `requests` are those that will
    reach it, when their arrival times are known in advance (None when only their arrival tells: a closed
    loop, a pool behind another); `on_done` takes each request that completes or is refused."""
    kv_spec, block_size = cfg.kv_cache, cfg.kv_cache.block_size_tokens
    blocks = total_kv_blocks(cfg)
    token_kv_bytes = kv_bytes_per_token(cfg)
    host_blocks = int(kv_spec.swap_space_gib * 2 ** 30 // (token_kv_bytes * block_size))
    graph_hw = cfg.kernels.graph_hardware(cfg.hardware)
    graph_timer = StepTimer(cfg.model, graph_hw, cfg.options) if graph_hw else None
    costs = ReplicaCosts(StepTimer(cfg.model, cfg.kernels.eager(cfg.hardware), cfg.options), cfg.overhead,
                         cfg.hardware.host_link,
                         token_kv_bytes * block_size, cfg.kernels, graph_timer, _decode_technique(cfg),
                         cfg.kernels.eager_attention_s(cfg.hardware, cfg.model.num_layers))

    def make_replica(index: int, hand_off=None) -> Replica:
        kv = _kv_manager(cfg, blocks, host_blocks)
        technique = costs.decoding  # each step draws what it emits or how deep it goes: no runs of identical steps
        scheduler = cfg.scheduler_class(cfg.limits, kv,
                                        max_decode_steps=MAX_DECODE_STEPS if cfg.jumps and technique is None else 1,
                                        hands_off_prefilled=hand_off is not None,
                                        decode_tokens=technique.tokens_per_seq if technique is not None else 1)
        return Replica(env, index, scheduler, costs, metrics, hand_off, on_done, cfg.seed)

    kv_link = cfg.kv_link or cfg.hardware.interconnect

    def kv_transfer_s(req: Request) -> float:
        """Each GPU sends its shard of the request's prompt KV cache to its peer in the decode replica."""
        return float(transfer_time_s(kv_link, req.prompt_tokens * token_kv_bytes))

    return Pool(cfg.cluster.build(env, make_replica, requests, kv_transfer_s), blocks)


def replay_arrivals(env: simpy.Environment, requests: list[Request], entry: Router, progress=None) -> None:
    """Open loop: each request reaches `entry` at its `arrival_s`; run until every one is done, calling
    `progress(fraction of the arrivals' span, simulated seconds)` as simulated time passes."""
    def arrivals():
        for req in requests:
            if req.arrival_s > env.now:
                yield env.timeout(req.arrival_s - env.now)
            entry.pick().submit(req)

    env.process(arrivals())
    horizon = requests[-1].arrival_s if requests else 0.0
    if progress is not None and horizon > 0:
        for i in range(1, 101):
            env.run(until=horizon * i / 100)
            progress(i / 100, env.now)
    env.run()


def pool_result(cfg: RunConfig, requests: list[Request], metrics: Metrics, pool: Pool) -> RunResult:
    """What a pool measured serving `requests`: their table, its timeline and their summary."""
    blocks, block_size = pool.kv_blocks_per_replica, cfg.kv_cache.block_size_tokens
    replicas = pool.deployment.replicas
    table, timeline = request_table(requests, cfg.overhead.frontend_s), metrics.timeline()
    summary = summarize(table, timeline, metrics, kv_blocks_per_replica=blocks, block_size_tokens=block_size,
                        replicas=len(replicas), slo=cfg.slo, peaks=utilization_peaks(cfg.hardware, cfg.options))
    summary["gpus"] = cfg.options.parallel.gpus * len(replicas)
    summary["kv_blocks_per_replica"] = blocks
    return RunResult(requests, metrics, summary, blocks, replicas, table, timeline)


class _Stopped(Exception):
    """Raised out of the event loop when `simulate`'s stop_when says the run has shown what it had to."""


def _raise_stopped(event: simpy.Event) -> None:
    raise _Stopped


def simulate(cfg: RunConfig, requests: list[Request], progress=None,
             stop_when: Callable[[Request], bool] | None = None) -> RunResult:
    """Run every request through the cluster; `progress(fraction done, simulated seconds)` is called as
    simulated time passes. Requests arrive at their `arrival_s` (open loop) or, with `cfg.concurrency`, from
    that many clients that each send their next request when their last one completes or is refused
    (closed loop, as `vllm bench serve --max-concurrency` and NVIDIA's GenAI-Perf drive a server): their
    arrival times are set as they are sent, each the front end's time (`cfg.overhead.frontend_s`) after the
    engine gave back the client's last. `stop_when`, when given, sees each request as it completes or is
    refused; once it returns True the run ends at that moment, its result holding the requests as they
    stand (some unfinished). A run told by compiled replica loops (`sim.compiled_replica`) is told whole,
    which costs less than SimPy replicas' part before a stop, and never calls it. A large open-loop run whose router fixes each replica's requests is simulated
    in blocks of replicas over the CPUs (`sim.shards`)."""
    check_config(cfg)
    from . import compiled_replica
    from .shards import simulate_sharded, worth_sharding  # shards deploy replicas with this module's `deploy`
    if stop_when is None and worth_sharding(cfg, requests, progress):
        return simulate_sharded(cfg, requests)
    if compiled_replica.applies(cfg, requests):  # told whole: faster than SimPy's part before a stop
        metrics, blocks = Metrics(cfg.kv_cache.block_size_tokens), total_kv_blocks(cfg)
        replicas = compiled_replica.serve(cfg, requests, metrics, blocks, refusal(cfg, blocks), progress)
        return pool_result(cfg, requests, metrics, Pool(Deployment(None, replicas), blocks))
    concurrency, frontend_s = cfg.concurrency, cfg.overhead.frontend_s
    env = simpy.Environment()
    metrics = Metrics(cfg.kv_cache.block_size_tokens)
    unsent = iter(requests)
    sent = 0
    owed = 0  # requests clients are owed; a refusal inside submit() adds one rather than recursing

    def send_next(now_s: float) -> None:
        nonlocal sent, owed
        owed += 1
        if owed > 1:
            return  # an outer call is sending: it will send this one too
        while owed:
            req = next(unsent, None)
            if req is None:
                owed = 0
                return
            req.arrival_s = now_s
            sent += 1
            if progress is not None and sent * 100 // len(requests) != (sent - 1) * 100 // len(requests):
                progress(sent / len(requests), now_s)
            pool.deployment.entry.pick().submit(req)
            owed -= 1

    stop = env.event()  # succeeds when stop_when says so; processing it leaves the event loop
    stop.callbacks.append(_raise_stopped)

    def client_answered() -> None:
        """A closed-loop client's next request reaches the engine `frontend_s` after the engine gave its last
        back, completed or refused: the front end's time after the engine (streaming the answer, or the
        refusal, back) plus its time before it (tokenizing and routing the next request), however
        `frontend_s` splits between the two."""
        if frontend_s:
            env.timeout(frontend_s).callbacks.append(lambda _: send_next(env.now))
        else:
            send_next(env.now)  # in this instant, before the engine plans its next step

    def on_done(req: Request) -> None:
        if concurrency:
            client_answered()
        if stop_when is not None and not stop.triggered and stop_when(req):
            stop.succeed()

    pool = deploy(cfg, env, metrics, None if concurrency else requests,
                  on_done if concurrency or stop_when is not None else None)
    try:
        if concurrency:
            for _ in range(min(concurrency, len(requests))):
                send_next(0.0)
            env.run()
        else:
            replay_arrivals(env, requests, pool.deployment.entry, progress)
    except _Stopped:
        pass
    return pool_result(cfg, requests, metrics, pool)
