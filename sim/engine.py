"""Build a cluster of replicas from a run configuration, replay requests through it, and summarize.

A cluster is `replicas` identical replicas behind a router or, with the `disaggregated` scheduler,
`prefill_replicas` that only prefill and `decode_replicas` that only decode, the KV cache of each
request crossing the interconnect in between (Splitwise, Patel et al. ISCA 2024; DistServe, Zhong et al.
OSDI 2024). Every replica is the same model on the same hardware with the same parallelism.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from infersim.roofline.errors import SpecError, require_choice
from infersim.roofline.hardware import HardwareSpec
from infersim.roofline.latency import StepTimer
from infersim.roofline.memory import kv_bytes_per_token_per_gpu, plan_memory
from infersim.roofline.models import ModelSpec
from infersim.roofline.step import StepOptions

from .blocks import ALLOCATORS, BlockPool
from .kv_cache import KVCacheManager
from .metrics import Metrics, request_table, summarize
from .replica import EngineOverhead, Replica
from .request import Request
from .router import ROUTERS, Router
from .schedulers import PREEMPTION_MODES, SCHEDULER_NAMES, SCHEDULERS, SchedulerLimits
from .workload import Workload


@dataclass(frozen=True)
class RunConfig:
    model: ModelSpec
    hardware: HardwareSpec
    options: StepOptions = field(default_factory=StepOptions)
    scheduler: str = "vllm"
    limits: SchedulerLimits = field(default_factory=SchedulerLimits)
    block_size_tokens: int = 16
    num_blocks: int | None = None  # override the memory plan (vLLM's num_gpu_blocks_override)
    allocator: str = "paged"
    prefix_caching: bool = False
    watermark_fraction: float = 0.01
    memory_utilization: float = 0.9
    swap_space_gib: float = 4.0
    overhead: EngineOverhead = field(default_factory=EngineOverhead)
    replicas: int = 1
    prefill_replicas: int = 1  # with the disaggregated scheduler
    decode_replicas: int = 1
    router: str = "round_robin"
    kv_transfer_bandwidth_bytes_per_s: float | None = None  # default: the hardware's interconnect
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None
    jumps: bool = True  # advance fixed decode batches in one exact jump (False: one step at a time)


@dataclass
class RunResult:
    requests: list[Request]
    metrics: Metrics
    summary: dict
    total_blocks: int
    replicas: list
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


def total_kv_blocks(cfg: RunConfig) -> int:
    """Blocks one replica's KV cache holds (vLLM sizes it the same way at startup: see roofline.memory)."""
    batched = cfg.limits.chunk_tokens if cfg.scheduler == "sarathi" else cfg.limits.max_num_batched_tokens
    plan = plan_memory(cfg.model, cfg.hardware, cfg.options.quant, cfg.options.parallel, cfg.memory_utilization,
                       batched, cfg.limits.max_num_seqs)
    blocks = cfg.num_blocks or plan.max_kv_tokens // cfg.block_size_tokens
    if cfg.allocator == "contiguous":
        reserve = math.ceil(cfg.limits.max_model_len / cfg.block_size_tokens)
        if reserve > blocks:
            raise SpecError("scheduler.max_model_len", f"a contiguous reservation of {cfg.limits.max_model_len} tokens "
                            f"exceeds the KV cache ({blocks * cfg.block_size_tokens} tokens); lower it", cfg.limits.max_model_len)
    return blocks


def simulate(cfg: RunConfig, requests: list[Request], progress=None) -> RunResult:
    """Run every request through the cluster; `progress(fraction of the arrival span, simulated seconds)`
    is called as simulated time passes."""
    for field_name, value, allowed in (("scheduler.name", cfg.scheduler, SCHEDULER_NAMES),
                                       ("scheduler.preemption", cfg.limits.preemption, PREEMPTION_MODES),
                                       ("kv_cache.allocator", cfg.allocator, ALLOCATORS),
                                       ("cluster.router", cfg.router, ROUTERS)):
        require_choice(field_name, value, allowed)
    if cfg.allocator == "contiguous" and cfg.prefix_caching:
        raise SpecError("kv_cache.prefix_caching", "needs the paged allocator", "contiguous")
    if cfg.scheduler == "static" and cfg.allocator != "contiguous":
        raise SpecError("kv_cache.allocator", "the static scheduler pads finished sequences to the longest and "
                        "reserves their memory up front: use contiguous", cfg.allocator)
    env = simpy.Environment()
    metrics = Metrics()
    timer = StepTimer(cfg.model, cfg.hardware, cfg.options)
    blocks = total_kv_blocks(cfg)
    kv_bytes_per_token = kv_bytes_per_token_per_gpu(cfg.model, cfg.options.quant, cfg.options.parallel)
    swap_blocks = int(cfg.swap_space_gib * 2 ** 30 // (kv_bytes_per_token * cfg.block_size_tokens))
    disaggregated = cfg.scheduler == "disaggregated"
    scheduler = SCHEDULERS["vllm" if disaggregated else cfg.scheduler](cfg.limits)

    def replica(index: int, role: str, on_prefilled=None) -> Replica:
        kv = KVCacheManager(BlockPool(blocks), cfg.block_size_tokens, cfg.allocator, cfg.prefix_caching,
                            int(cfg.watermark_fraction * blocks), cfg.limits.max_model_len)
        return Replica(env, index, timer, kv, scheduler, metrics, cfg.overhead, role, kv_bytes_per_token,
                       cfg.hardware.host_link_bandwidth_bytes_per_s, swap_blocks, cfg.jumps,
                       on_prefilled=on_prefilled, requests=requests)

    if disaggregated:
        link_bw = (cfg.kv_transfer_bandwidth_bytes_per_s
                   or cfg.hardware.interconnect_bandwidth_bytes_per_s * cfg.hardware.interconnect_efficiency)
        decoders = [replica(cfg.prefill_replicas + i, "decode") for i in range(cfg.decode_replicas)]
        decode_router = Router(cfg.router, decoders)

        def transfer(req: Request):
            """Each GPU sends its shard of the request's KV cache to its peer in the decode replica."""
            yield env.timeout(cfg.hardware.interconnect_latency_s + req.prompt_tokens * kv_bytes_per_token / link_bw)
            decode_router.pick().submit(req)

        prefillers = [replica(i, "prefill", lambda req: env.process(transfer(req))) for i in range(cfg.prefill_replicas)]
        replicas = prefillers + decoders
        router = Router(cfg.router, prefillers)
    else:
        replicas = [replica(i, "both") for i in range(cfg.replicas)]
        router = Router(cfg.router, replicas)
        known = router.arrival_times(requests)  # when known in advance, runs end at arrivals without interrupts
        for rep, times in zip(replicas, known or []):
            rep.arrival_times = times

    def arrivals():
        for req in requests:
            if req.arrival_s > env.now:
                yield env.timeout(req.arrival_s - env.now)
            router.pick().submit(req)

    env.process(arrivals())
    horizon = requests[-1].arrival_s if requests else 0.0
    if progress is not None and horizon > 0:
        for i in range(1, 101):
            env.run(until=horizon * i / 100)
            progress(i / 100, env.now)
    env.run()
    gpus = cfg.options.parallel.gpus
    table, timeline = request_table(requests), metrics.timeline()
    summary = summarize(table, timeline, metrics, blocks, cfg.block_size_tokens, len(replicas), cfg.ttft_slo_s, cfg.tpot_slo_s,
                        cfg.hardware.peak(cfg.options.quant.gemm_dtype()) * cfg.options.parallel.pipeline_parallel,
                        cfg.hardware.memory_bandwidth_bytes_per_s * cfg.options.parallel.pipeline_parallel)
    summary["gpus"] = gpus * len(replicas)
    summary["kv_blocks_per_replica"] = blocks
    return RunResult(requests, metrics, summary, blocks, replicas, table, timeline)
