"""Replicas simulated apart, on several CPUs. When a colocated cluster's router fixes in advance which
requests each replica serves (round robin), its replicas never act on one another: each can run in a SimPy
environment of its own (`cluster.SoleReplica`, keeping its index, hence its random draws) and what they
measured be merged (`Metrics.absorb`). A large open-loop run is split so: the replicas are dealt out in
contiguous blocks, the first block simulated in this process and each other one in a forked worker.

Each replica sees the same arrivals at the same times, and steps of the same cost, as in one environment,
so the request table and the timeline are the same; of the summary, the three figures summed in the order
events happened across replicas (the ITL mean, model FLOPs and bandwidth utilization) may differ in their
last bits. The requests of the workers' replicas come back as copies: the list passed in holds them
afterwards, in place of the originals."""
from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import replace
from typing import NamedTuple

import simpy

from .cluster import Colocated, Deployment, SoleReplica
from .metrics import Metrics
from .request import Request
from .run import Pool, RunConfig, RunResult, deploy, pool_result, replay_arrivals

SHARD_MIN_REQUESTS = 50_000  # smaller runs take a few seconds: not worth forking


class ShardedReplica(NamedTuple):
    """What a run simulated apart keeps of a replica: its index."""

    index: int


def worth_sharding(cfg: RunConfig, requests: list[Request], progress) -> bool:
    """A large open-loop run on a colocated cluster whose router fixes each replica's requests, on a
    machine with more than one CPU (and fork, to share the requests with the workers)."""
    return (progress is None and cfg.concurrency is None and isinstance(cfg.cluster, Colocated)
            and cfg.cluster.replicas > 1 and len(requests) >= SHARD_MIN_REQUESTS and _workers(cfg) > 1
            and "fork" in mp.get_all_start_methods() and cfg.cluster.split(requests[:0]) is not None)


def _workers(cfg: RunConfig) -> int:
    return min(len(os.sched_getaffinity(0)), cfg.cluster.replicas)


def simulate_sharded(cfg: RunConfig, requests: list[Request], workers: int | None = None) -> RunResult:
    """`run.simulate` of a run that `worth_sharding`, over `workers` processes (default: one a CPU)."""
    workers = workers or _workers(cfg)
    positions = cfg.cluster.split(list(range(len(requests))))
    shares = [[requests[i] for i in mine] for mine in positions]
    indices = list(range(cfg.cluster.replicas))
    blocks = [indices[w * len(indices) // workers:(w + 1) * len(indices) // workers] for w in range(workers)]
    context = mp.get_context("fork")
    pipes, children = [], []
    for block in blocks[1:]:
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_serve_in_worker, args=(cfg, block, shares, send), daemon=True)
        child.start()
        send.close()
        pipes.append(receive)
        children.append(child)
    metrics, kv_blocks = _serve(cfg, blocks[0], shares)
    for block, receive, child in zip(blocks[1:], pipes, children):
        theirs, served = receive.recv()
        child.join()
        metrics.absorb(theirs)
        for index, done in zip(block, served):
            for i, req in zip(positions[index], done):
                requests[i] = req
    pool = Pool(Deployment(None, [ShardedReplica(i) for i in indices]), kv_blocks)
    return pool_result(cfg, requests, metrics, pool)


def _serve(cfg: RunConfig, indices: list[int], shares: list[list[Request]]) -> tuple[Metrics, int]:
    """Each of the replicas `indices`, alone in an environment with its share of the requests, one after
    the other; what they measured, merged, and the KV blocks a replica holds."""
    metrics, kv_blocks = Metrics(cfg.kv_cache.block_size_tokens), 0
    for index in indices:
        env, measured = simpy.Environment(), Metrics(cfg.kv_cache.block_size_tokens)
        pool = deploy(replace(cfg, cluster=SoleReplica(index, cfg.cluster.router)), env, measured, shares[index])
        replay_arrivals(env, shares[index], pool.deployment.entry)
        metrics.absorb(measured)
        kv_blocks = pool.kv_blocks_per_replica
    return metrics, kv_blocks


def _serve_in_worker(cfg: RunConfig, indices: list[int], shares: list[list[Request]], send) -> None:
    """A forked worker's `_serve`: sends back what its replicas measured and their requests as they ended."""
    metrics, _ = _serve(cfg, indices, shares)
    send.send((metrics, [shares[index] for index in indices]))
    send.close()
