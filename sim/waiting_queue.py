"""Requests waiting to be admitted, highest priority first, then first come first served (vLLM's FCFS
policy with priorities)."""
from __future__ import annotations

import heapq
from typing import NamedTuple

from .request import Request


class _Entry(NamedTuple):
    """Heap order: higher priority, then earlier arrival, then lower id (unique, so requests never compare)."""

    negative_priority: int
    arrival_s: float
    request_id: int
    request: Request


class WaitingQueue(list):
    """A heap of entries; len() and truthiness are the list's."""

    def push(self, req: Request) -> None:
        heapq.heappush(self, _Entry(-req.priority, req.arrival_s, req.id, req))

    def peek(self) -> Request:
        return self[0].request

    def pop(self) -> Request:
        return heapq.heappop(self).request
