"""How a cluster's replicas are put together and reached: the topologies a run can deploy.

- `Colocated`: `replicas` identical replicas, each prefilling and decoding, behind a router.
- `Disaggregated`: `prefill_replicas` that hand each prompt's KV cache over a link to `decode_replicas`
  (Splitwise, Patel et al. ISCA 2024; DistServe, Zhong et al. OSDI 2024). Both pools run the run's
  scheduler; a request leaves its prefill replica once its first token is out (its scheduler hands off
  prefilled requests), and joins a decode replica's batch when its KV cache has arrived.
Every replica is the same model on the same hardware with the same parallelism.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import simpy

from .replica import Replica
from .request import Request
from .router import FixedRouter, Router, make_router

# make_replica(index, hand_off) -> Replica; transfer_s(request) -> seconds its KV cache takes to cross;
# requests: the run's, when their arrival times are known in advance (None in a closed loop)
MakeReplica = Callable[..., Replica]


class Deployment(NamedTuple):
    entry: Router  # where arrivals go
    replicas: list[Replica]


@dataclass(frozen=True)
class Colocated:
    replicas: int = 1
    router: str = "round_robin"

    def build(self, env: simpy.Environment, make_replica: MakeReplica, requests: list[Request] | None,
              transfer_s: Callable[[Request], float]) -> Deployment:
        replicas = [make_replica(i) for i in range(self.replicas)]
        router = make_router(self.router, replicas)
        # when known in advance, runs end at arrivals without interrupts
        known = router.arrival_times(requests) if requests is not None else None
        for replica, times in zip(replicas, known or []):
            replica.arrival_times_s = times
        return Deployment(router, replicas)

    def split(self, requests: list[Request]) -> list[list[Request]] | None:
        """The requests each replica serves, when the router fixes them in advance (else None)."""
        return make_router(self.router, list(range(self.replicas))).split(requests)


@dataclass(frozen=True)
class Shard:
    """Replicas `indices` of a colocated cluster whose `router` fixes each replica's requests in advance,
    deployed apart from the others (`sim.shards`): the k-th request reaching the shard goes to replica
    `indices[serves[k]]`. The replicas keep their indices in the whole cluster, and so their records and
    random draws."""

    indices: tuple[int, ...]
    serves: tuple[int, ...]
    router: str = "round_robin"  # the whole cluster's (a run's configuration names one)

    def build(self, env: simpy.Environment, make_replica: MakeReplica, requests: list[Request] | None,
              transfer_s: Callable[[Request], float]) -> Deployment:
        replicas = [make_replica(i) for i in self.indices]
        router = FixedRouter(replicas, self.serves)
        for replica, times in zip(replicas, router.arrival_times(requests) if requests is not None else []):
            replica.arrival_times_s = times
        return Deployment(router, replicas)


@dataclass(frozen=True)
class Disaggregated:
    prefill_replicas: int = 1
    decode_replicas: int = 1
    router: str = "round_robin"

    def build(self, env: simpy.Environment, make_replica: MakeReplica, requests: list[Request] | None,
              transfer_s: Callable[[Request], float]) -> Deployment:
        decoders = [make_replica(self.prefill_replicas + i) for i in range(self.decode_replicas)]
        decode_router = make_router(self.router, decoders)

        def transfer(req: Request):
            yield env.timeout(transfer_s(req))
            req.kv_arrived = True
            decode_router.pick().submit(req)

        prefillers = [make_replica(i, hand_off=lambda req: env.process(transfer(req)))
                      for i in range(self.prefill_replicas)]
        return Deployment(make_router(self.router, prefillers), prefillers + decoders)

