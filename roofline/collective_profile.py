"""Measured all-reduces against the collectives model: Vidur's network profiles (`all_reduce_*.csv`: one row a
payload size and GPU count, the median time of a PyTorch `all_reduce` over NCCL in ms), the format of
data/profiles/a100/. A row spanning nodes (more GPUs than a node holds) is left out: multi-node collectives are
not modelled."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .boundary import number_cell, read_rows, read_text
from .collectives import all_reduce_s
from .errors import SpecError
from .hardware import HardwareSpec

MEDIAN_COLUMN = "time_stats.all_reduce.median"
_COLUMNS = ("num_workers", "size", "devices_per_node", MEDIAN_COLUMN)
# payload buckets the comparison reports, by where NCCL's choice and the per-call cost matter
SIZE_BUCKETS = (("below 1 MB", 0.0, 1e6), ("1-64 MB", 1e6, 64e6), ("64 MB and up", 64e6, np.inf))


@dataclass(frozen=True)
class AllReduceSamples:
    gpus: np.ndarray
    payload_bytes: np.ndarray
    measured_s: np.ndarray
    multi_node_rows: int  # rows left out

    def predict_s(self, hw: HardwareSpec) -> np.ndarray:
        """The model's time of each sample on `hw`'s fabric, as an eager call (Vidur's harness)."""
        return np.array([all_reduce_s(hw.fabric, size, int(gpus)) for gpus, size in zip(self.gpus, self.payload_bytes)])


def is_all_reduce_profile(path: Path | str) -> bool:
    """Does the file's header name an all-reduce's median time (a network profile, not a per-op one)?"""
    return MEDIAN_COLUMN in read_text(Path(path), "profile").split("\n", 1)[0]


def read_all_reduce_profile(path: Path | str) -> AllReduceSamples:
    path = Path(path)
    gpus, sizes, times, multi_node = [], [], [], 0
    for where, row in read_rows(path, "profile"):
        for column in _COLUMNS:
            if column not in row:
                raise SpecError(column, "missing column; not a Vidur all-reduce profile", file=path.name)
        workers = int(number_cell(row, "num_workers", where, whole=True, minimum=1, maximum=1 << 16))
        per_node = int(number_cell(row, "devices_per_node", where, whole=True, minimum=1, maximum=1 << 16))
        if workers > per_node:
            multi_node += 1
            continue
        gpus.append(workers)
        sizes.append(number_cell(row, "size", where, minimum=1, maximum=1e13))
        times.append(number_cell(row, MEDIAN_COLUMN, where, minimum=1e-6, maximum=1e6) * 1e-3)
    if not gpus:
        raise SpecError("num_workers", "no row is within one node (devices_per_node), and multi-node collectives "
                        "are not modelled", file=path.name)
    return AllReduceSamples(np.array(gpus), np.array(sizes), np.array(times), multi_node)


def _errors(relative: np.ndarray) -> dict:
    magnitude = np.abs(relative)
    return {"n": int(magnitude.size), "median_abs_err": float(np.median(magnitude)),
            "p90_abs_err": float(np.percentile(magnitude, 90)), "median_signed_err": float(np.median(relative))}


def compare_all_reduce(samples: AllReduceSamples, predicted_s: np.ndarray) -> dict:
    """Relative errors of the model's times (`samples.predict_s`) against the measurements: overall, per GPU
    count and per payload bucket (`median_signed_err` > 0: predicted slower than measured)."""
    relative = predicted_s / samples.measured_s - 1
    by_gpus = {int(g): _errors(relative[samples.gpus == g]) for g in np.unique(samples.gpus)}
    in_bucket = {name: (samples.payload_bytes >= lo) & (samples.payload_bytes < hi) for name, lo, hi in SIZE_BUCKETS}
    by_size = {name: _errors(relative[mask]) for name, mask in in_bucket.items() if mask.any()}
    return {"all": _errors(relative), "by_gpus": by_gpus, "by_size": by_size,
            "multi_node_rows_left_out": samples.multi_node_rows}
