"""Requests waiting to be admitted, highest priority first, then first come first served (vLLM's FCFS
policy with priorities)."""
from __future__ import annotations

import heapq

from .request import Request


class WaitingQueue(list):
    """A heap of (-priority, arrival_s, id, request) entries; len() and truthiness are the list's."""

    def push(self, req: Request) -> None:
        heapq.heappush(self, (-req.priority, req.arrival_s, req.id, req))

    def peek(self) -> Request:
        return self[0][3]

    def pop(self) -> Request:
        return heapq.heappop(self)[3]
