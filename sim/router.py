"""Spreads arriving requests over replicas."""
from __future__ import annotations

ROUTERS = ("round_robin", "least_outstanding", "least_kv")


class Router:
    """round_robin: in turn; least_outstanding: the replica with the fewest unfinished requests;
    least_kv: the replica with the smallest share of its KV cache in use (ties: fewer outstanding, then
    the lower index, so runs stay deterministic)."""

    def __init__(self, policy: str, replicas: list):
        self.policy, self.replicas, self._next = policy, replicas, 0

    def pick(self):
        if self.policy == "round_robin" or len(self.replicas) == 1:
            replica = self.replicas[self._next % len(self.replicas)]
            self._next += 1
            return replica
        if self.policy == "least_outstanding":
            return min(self.replicas, key=lambda r: (r.outstanding, r.index))
        return min(self.replicas, key=lambda r: (r.kv_usage, r.outstanding, r.index))

    def arrival_times(self, requests: list) -> list[list[float]] | None:
        """The arrival times each replica will see, when the policy decides them regardless of the replicas'
        state (round robin, or one replica); None when only the moment of arrival can tell."""
        if not (self.policy == "round_robin" or len(self.replicas) == 1):
            return None
        times = [r.arrival_s for r in requests]
        n = len(self.replicas)
        return [times[(i - self._next) % n::n] for i in range(n)]
