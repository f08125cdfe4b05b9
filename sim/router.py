"""Spreads arriving requests over replicas: one policy per class behind `Router`, named in `ROUTERS`."""
from __future__ import annotations

from typing import ClassVar


class Router:
    name: ClassVar[str] = ""

    def __init__(self, replicas: list):
        self.replicas = replicas

    def pick(self):
        """The replica the next arrival goes to."""
        raise NotImplementedError

    def split(self, requests: list) -> list[list] | None:
        """The requests each replica will serve, in order, when the policy fixes them regardless of the
        replicas' state (the replicas are then independent: `sim.shards`); None when only the moment of
        arrival can tell."""
        return None

    def arrival_times(self, requests: list) -> list[list[float]] | None:
        """The arrival times each replica will see, when `split` fixes them."""
        split = self.split(requests)
        return None if split is None else [[r.arrival_s for r in mine] for mine in split]


class RoundRobinRouter(Router):
    """In turn."""

    name = "round_robin"

    def __init__(self, replicas: list):
        super().__init__(replicas)
        self._next = 0

    def pick(self):
        replica = self.replicas[self._next % len(self.replicas)]
        self._next += 1
        return replica

    def split(self, requests: list) -> list[list]:
        n = len(self.replicas)
        return [requests[(i - self._next) % n::n] for i in range(n)]


class LeastOutstandingRouter(Router):
    """The replica with the fewest unfinished requests (ties: the lower index, so runs stay deterministic)."""

    name = "least_outstanding"

    def pick(self):
        return min(self.replicas, key=lambda r: (r.outstanding, r.index))


class LeastKVRouter(Router):
    """The replica with the smallest share of its KV cache in use (ties: fewer outstanding, then the lower
    index)."""

    name = "least_kv"

    def pick(self):
        return min(self.replicas, key=lambda r: (r.kv_usage, r.outstanding, r.index))


class FixedRouter(Router):
    """The k-th arrival to replica `serves[k]`: an order another policy fixed in advance (`sim.shards`
    deploys part of a cluster with it). Not a policy a run can name."""

    name = "fixed"

    def __init__(self, replicas: list, serves: tuple[int, ...]):
        super().__init__(replicas)
        self.serves, self._next = serves, 0

    def pick(self):
        replica = self.replicas[self.serves[self._next]]
        self._next += 1
        return replica

    def split(self, requests: list) -> list[list]:
        mine = [[] for _ in self.replicas]
        for req, replica in zip(requests, self.serves[self._next:]):
            mine[replica].append(req)
        return mine


ROUTERS = {r.name: r for r in (RoundRobinRouter, LeastOutstandingRouter, LeastKVRouter)}


def make_router(name: str, replicas: list) -> Router:
    """The named policy over `replicas`; with one replica every policy sends everything to it, so round
    robin stands in (its arrivals are known in advance)."""
    return (RoundRobinRouter if len(replicas) == 1 else ROUTERS[name])(replicas)
