"""Where a plan's simulations run: one after another here, over the local cores (a process pool), or on a
Ray cluster. Each executor maps a list of tasks (picklable callables with no arguments) to their results
in the order given; a task's result depends on the task alone, so every executor returns the same numbers.
"""
from __future__ import annotations

import socket
import sys
from typing import Callable, Protocol, Sequence

from infersim.roofline.errors import SpecError

Progress = Callable[[int, int], None]  # (tasks done, tasks in all)


def progress_bar(done: int, total: int) -> None:
    """The `infersim run` progress bar's style on stderr, counting tasks (a candidate's rate search, one
    concurrency point) rather than arrivals."""
    width = 40
    filled = width * done // max(total, 1)
    print(f"\rplanning [{'#' * filled}{'.' * (width - filled)}] {done} of {total} tasks",
          end="\n" if done == total else "", file=sys.stderr, flush=True)


def _call(task):
    return task()


class Executor(Protocol):
    def map(self, tasks: Sequence[Callable], progress: Progress | None = None) -> list: ...


class LocalExecutor:
    """`jobs` worker processes (1: every task in this process, one after another)."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def map(self, tasks: Sequence[Callable], progress: Progress | None = None) -> list:
        report = progress or (lambda done, total: None)
        report(0, len(tasks))
        if self.jobs == 1 or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(task())
                report(len(results), len(tasks))
            return results
        from concurrent.futures import ProcessPoolExecutor, as_completed
        results = [None] * len(tasks)
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(tasks))) as pool:
            futures = {pool.submit(_call, task): i for i, task in enumerate(tasks)}
            try:
                for done, future in enumerate(as_completed(futures), 1):
                    results[futures[future]] = future.result()  # a worker's exception is raised here
                    report(done, len(tasks))
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        return results


class RayExecutor:
    """Tasks as Ray remote functions on the cluster at `address` (None: a local Ray instance, started
    here unless one is already running in this process)."""

    def __init__(self, address: str | None = None):
        if address is not None:
            check_ray_address(address)
        ray = require_ray()
        if not ray.is_initialized():
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        self._ray = ray
        self._remote = ray.remote(_call)

    def map(self, tasks: Sequence[Callable], progress: Progress | None = None) -> list:
        report = progress or (lambda done, total: None)
        report(0, len(tasks))
        refs = [self._remote.remote(task) for task in tasks]
        pending = list(refs)
        while pending:
            finished, pending = self._ray.wait(pending, num_returns=1)
            self._ray.get(finished)  # a task's exception is raised here
            report(len(tasks) - len(pending), len(tasks))
        return self._ray.get(refs)


RAY_CONNECT_TIMEOUT_S = 3.0


def check_ray_address(address: str) -> None:
    """One line when nothing listens at a host:port (or ray://host:port) address, where `ray.init` would retry
    for minutes printing its own logs. Addresses Ray resolves itself ("auto", "local") pass unchecked."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except (OSError, OverflowError):  # refused, timed out, unknown host; OverflowError: a port past 65535
        raise SpecError("--address", "no Ray cluster answers there (start one with `ray start --head`, or leave "
                        "--address out to start a local one)", address) from None


def require_ray():
    """The ray module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SpecError("--executor ray", "needs Ray: pip install 'infersim[ray]' (or use --executor local)",
                        "ray") from None
    return ray


def make_executor(kind: str, jobs: int, address: str | None = None) -> Executor:
    if kind == "ray":
        return RayExecutor(address)
    if address is not None:
        raise SpecError("--address", "applies to --executor ray only", address)
    return LocalExecutor(jobs)
