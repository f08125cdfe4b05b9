"""Replicas simulated apart, on several CPUs. When a colocated cluster's router fixes in advance which
requests each replica serves (round robin), its replicas never act on one another: each block of them
can run in a SimPy environment of its own (`cluster.Shard`: the replicas keep their indices, hence their
random draws) and what they measured be merged (`Metrics.absorb`). A large open-loop run is split so into
`SHARDS` contiguous blocks of replicas, simulated in forked workers as far as there are CPUs for them.

Each replica sees the same arrivals at the same times, and steps of the same cost, as in one environment,
so the request table and the timeline are the same; of the summary, the three figures summed in the order
events happened across replicas (the ITL mean, model FLOPs and bandwidth utilization) may differ in their
last bits. A worker sends back what its requests' service changed in them (`request.outcomes`), which is
written into the originals. Each block runs its replicas in compiled loops where those tell the run exactly
(`sim.compiled_replica`), else as SimPy processes."""
from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import simpy

from .cluster import Colocated, Deployment, Shard
from .metrics import Metrics
from .request import Request, outcomes, set_outcomes
from . import compiled_replica
from .run import Pool, RunConfig, RunResult, deploy, pool_result, refusal, replay_arrivals, total_kv_blocks

SHARD_MIN_REQUESTS = 50_000  # smaller runs take a few seconds: not worth forking
SHARDS = 2  # blocks of replicas: as many as the CI machine's CPUs, fixed so that a run's figures never
# depend on the machine (the order of the sums across replicas follows the blocks)


class ShardedReplica(NamedTuple):
    """What a run simulated apart keeps of a replica: its index."""

    index: int


def worth_sharding(cfg: RunConfig, requests: list[Request], progress) -> bool:
    """A large open-loop run on a colocated cluster whose router fixes each replica's requests."""
    return (progress is None and cfg.concurrency is None and isinstance(cfg.cluster, Colocated)
            and cfg.cluster.replicas > 1 and len(requests) >= SHARD_MIN_REQUESTS
            and cfg.cluster.split(requests[:0]) is not None)


def simulate_sharded(cfg: RunConfig, requests: list[Request], workers: int | None = None) -> RunResult:
    """`run.simulate` of a run that `worth_sharding`: `SHARDS` blocks of replicas, each but the first in a
    forked worker while `workers` processes allow (default: one a CPU), the others in this one."""
    replicas = cfg.cluster.replicas
    serves = np.empty(len(requests), dtype=np.int64)  # the replica of each request
    for index, mine in enumerate(cfg.cluster.split(list(range(len(requests))))):
        serves[mine] = index
    blocks = [tuple(range(s * replicas // SHARDS, (s + 1) * replicas // SHARDS)) for s in range(SHARDS)]
    shards = [_shard(block, serves, cfg.cluster.router) for block in blocks if block]
    workers = min(workers or _cpus(), len(shards))
    forked = [_fork(cfg, shard, requests) for shard in shards[len(shards) - workers + 1:]]
    metrics, kv_blocks = Metrics(cfg.kv_cache.block_size_tokens), 0
    for shard in shards[:len(shards) - workers + 1]:
        measured, kv_blocks = _serve(cfg, shard, requests)
        metrics.absorb(measured)
    for shard, (receive, child) in zip(shards[len(shards) - workers + 1:], forked):
        measured, served = receive.recv()
        child.join()
        metrics.absorb(measured)
        set_outcomes([requests[i] for i in shard.positions], served)
    pool = Pool(Deployment(None, [ShardedReplica(i) for i in range(replicas)]), kv_blocks)
    return pool_result(cfg, requests, metrics, pool)


def _cpus() -> int:
    """CPUs to fork workers onto: one where fork is missing or this process may have no children (a
    multiprocessing pool's worker is a daemon)."""
    if "fork" not in mp.get_all_start_methods() or mp.current_process().daemon:
        return 1
    return len(os.sched_getaffinity(0))


def _fork(cfg: RunConfig, shard: "_ShardPlan", requests: list[Request]):
    """A worker serving the shard (it shares the requests with this process until it writes them): the
    end of a pipe its results will come through, and the worker."""
    receive, send = mp.get_context("fork").Pipe(duplex=False)
    child = mp.get_context("fork").Process(target=_serve_in_worker, args=(cfg, shard, requests, send), daemon=True)
    child.start()
    send.close()
    return receive, child


class _ShardPlan(NamedTuple):
    cluster: Shard
    positions: list[int]  # of its requests in the run's list, in arrival order


def _shard(indices: tuple[int, ...], serves: np.ndarray, router: str) -> _ShardPlan:
    """The replicas `indices` (contiguous) with the requests they serve."""
    positions = np.flatnonzero((serves >= indices[0]) & (serves <= indices[-1]))
    return _ShardPlan(Shard(indices, tuple((serves[positions] - indices[0]).tolist()), router), positions.tolist())


def _serve(cfg: RunConfig, shard: _ShardPlan, requests: list[Request]) -> tuple[Metrics, int]:
    """The shard's replicas in an environment of their own, with their requests: what they measured, and
    the KV blocks a replica holds."""
    mine = [requests[i] for i in shard.positions]
    metrics, cfg = Metrics(cfg.kv_cache.block_size_tokens), replace(cfg, cluster=shard.cluster)
    if compiled_replica.applies(cfg, mine):
        blocks = total_kv_blocks(cfg)
        compiled_replica.serve(cfg, mine, metrics, blocks, refusal(cfg, blocks))
        return metrics, blocks
    env = simpy.Environment()
    pool = deploy(cfg, env, metrics, mine)
    replay_arrivals(env, mine, pool.deployment.entry)
    return metrics, pool.kv_blocks_per_replica


def _serve_in_worker(cfg: RunConfig, shard: _ShardPlan, requests: list[Request], send) -> None:
    """A forked worker's `_serve`: sends back what its replicas measured and their requests' outcomes."""
    metrics, _ = _serve(cfg, shard, requests)
    send.send((metrics, outcomes([requests[i] for i in shard.positions])))
    send.close()
