"""Requests waiting to be admitted, highest priority first, then first come first served (vLLM's FCFS
policy with priorities)."""
from __future__ import annotations

import heapq

from .request import Request


class WaitingQueue:
    def __init__(self):
        self._heap: list = []  # (-priority, arrival_s, id, request)

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, req: Request) -> None:
        heapq.heappush(self._heap, (-req.priority, req.arrival_s, req.id, req))

    def peek(self) -> Request:
        return self._heap[0][3]

    def pop(self) -> Request:
        return heapq.heappop(self._heap)[3]
