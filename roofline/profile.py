"""Measured per-op profiles (Vidur's CSV format) against the roofline: errors, and fitting the factors.

Vidur (Agrawal et al., MLSys 2024) profiles one decoder layer's ops for `num_tokens` tokens with weights
split over `num_tensor_parallel_workers` GPUs and stores `time_stats.<op>.median` in milliseconds.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ops
from .boundary import number_cell, read_rows, shown
from .errors import SpecError, closest_name
from .hardware import HardwareSpec
from .models import MAX_MODEL_SIZE, ModelSpec
from .step import Batch, Parallelism, StepOptions, layer_ops
from .timing import op_time_s

# Vidur op name -> infersim op name.
VIDUR_OPS = {
    "emb": "embedding", "input_layernorm": "input_norm", "attn_pre_proj": "qkv_proj", "attn_rope": "rope",
    "attn_post_proj": "o_proj", "post_attention_layernorm": "post_attn_norm", "mlp_up_proj": "ffn_up",
    "mlp_act": "ffn_act", "mlp_down_proj": "ffn_down", "add": "residual_add",
}
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
_SHAPE_COLUMNS = {"n_head": "num_heads", "n_kv_head": "num_kv_heads", "n_embd": "hidden_size",
                  "n_expanded_embd": "ffn_size"}
_PROFILE_SHAPE = (*_SHAPE_COLUMNS, "vocab_size", "use_gated_mlp")  # the same in every row of a profile
FITTED_FACTORS = ("compute_efficiency", "memory_efficiency", "launch_overhead_s", "overlap_exponent",
                  "vector_bandwidth_efficiency")


@dataclass(frozen=True)
class OpSamples:
    """One profiled op over all rows: measured times and the roofline op of each row, stacked."""

    measured_s: np.ndarray
    work: ops.OpCost  # `ops.stack` of the rows' ops

    def predict_s(self, hw: HardwareSpec) -> np.ndarray:
        """The roofline's own seconds (`timing.op_time_s`) for every row at once."""
        return op_time_s(hw, self.work)


_MIN_MEDIAN_MS = 1e-6  # a nanosecond: no kernel is faster, so a smaller (or zero) median is a broken row
_MAX_MEDIAN_MS = 1e6


def _rows(path: Path) -> list[tuple[str, dict]]:
    """The profile's rows, each with where it is (`file:line`) for error messages."""
    return list(read_rows(path, "profile"))


def _count(row: dict, column: str, where: str) -> int:
    return int(number_cell(row, column, where, whole=True, minimum=1, maximum=MAX_MODEL_SIZE))


def _shape(row: dict, where: str) -> dict:
    """The profiled model's shape columns that the profile has, as one row gives them."""
    return {column: row[column] if column == "use_gated_mlp" else _count(row, column, where)
            for column in _PROFILE_SHAPE if column in row}


def model_from_profile(path: Path | str) -> ModelSpec:
    """The layer shape a profile was measured on, from its n_head, n_kv_head, n_embd, ... columns."""
    path = Path(path)
    where, row = _rows(path)[0]
    columns = list(_SHAPE_COLUMNS) + ["vocab_size"]
    missing = [c for c in columns if c not in row]
    if missing:
        raise SpecError(missing[0], "missing column; pass --model to name the profiled model", file=path.name)
    heads, d, kv = _count(row, "n_head", where), _count(row, "n_embd", where), _count(row, "n_kv_head", where)
    if d % heads:
        raise SpecError("n_head", f"must divide n_embd={d}", heads, file=where)
    if heads % kv:
        raise SpecError("n_kv_head", f"must divide n_head={heads}", kv, file=where)
    gated = row.get("use_gated_mlp", "True")
    if gated not in ("True", "False"):
        raise SpecError("use_gated_mlp", "must be True or False", gated, file=where)
    return ModelSpec(name=shown(path.stem), num_layers=1, hidden_size=d, num_heads=heads, num_kv_heads=kv, head_dim=d // heads,
                     ffn_size=_count(row, "n_expanded_embd", where), vocab_size=_count(row, "vocab_size", where),
                     max_context_tokens=2**20, ffn_kind="swiglu" if gated == "True" else "gelu")


def _row_ops(model: ModelSpec, row: dict, where: str) -> dict:
    """The roofline's ops of one profiled layer row, by infersim op name."""
    tokens = _count(row, "num_tokens", where)
    tp = _count(row, "num_tensor_parallel_workers", where)
    try:
        by_name = {op.name: op for op in layer_ops(model, Batch((tokens,), (0,)), _NO_SRAM,
                                                   StepOptions(parallel=Parallelism(tensor_parallel=tp)))}
    except SpecError as err:
        raise SpecError("num_tensor_parallel_workers", err.problem, tp, file=where) from None
    by_name["embedding"] = ops.embedding(tokens, model.hidden_size)
    return by_name


def _profiled_ops(header) -> list[str]:
    """The ops whose medians a profile's columns give (time_stats.<op>.median)."""
    return [column[len("time_stats."):-len(".median")] for column in header
            if isinstance(column, str) and column.startswith("time_stats.") and column.endswith(".median")]


def _check_misspelt_ops(header, path: Path) -> None:
    """An op column one slip from one infersim compares, which the profile lacks, is refused: read as another
    op it would drop out of the comparison (and a fit) in silence."""
    absent = [op for op in VIDUR_OPS if f"time_stats.{op}.median" not in header]
    for op in _profiled_ops(header):
        close = closest_name(op, absent) if op not in VIDUR_OPS else None
        if close:
            raise SpecError(f"time_stats.{op}.median", f"is not an op infersim compares: did you mean "
                            f"time_stats.{close}.median?", file=path.name)


def ops_not_compared(path: Path | str) -> list[str]:
    """The ops a profile measures that have no roofline op here (Vidur's linear-ops profiles hold none)."""
    _, first = next(iter(read_rows(Path(path), "profile")))  # the header is all it needs
    return [op for op in _profiled_ops(first) if op not in VIDUR_OPS]


def read_profile(path: Path | str, model: ModelSpec) -> dict[str, OpSamples]:
    """Read a Vidur `*_linear_ops.csv` and build, for each op it holds, the samples to compare."""
    path = Path(path)
    rows = _rows(path)
    first_where, first = rows[0]
    needed = ["num_tokens", "num_tensor_parallel_workers"]
    missing = [c for c in needed if c not in first]
    if missing:
        raise SpecError(missing[0], "missing column; not a Vidur linear-ops profile", file=path.name)
    shape = _shape(first, first_where)
    for column, attr in _SHAPE_COLUMNS.items():
        if column in shape and shape[column] != getattr(model, attr):
            raise SpecError("model", f"{path.name} profiles {column}={first[column]} but {model.name} has "
                            f"{attr}={getattr(model, attr)}; pass the profiled model", model.name)
    present = [op for op in VIDUR_OPS if f"time_stats.{op}.median" in first]
    _check_misspelt_ops(first, path)
    if not present:
        raise SpecError("", f"has no time_stats.<op>.median column for any of {', '.join(VIDUR_OPS)}",
                        file=path.name)
    table: dict[str, list] = {op: [] for op in present}
    for where, row in rows:
        for column, value in _shape(row, where).items():
            if value != shape[column]:
                raise SpecError(column, f"must be the first row's {first[column]} ({first_where}): a profile "
                                "measures one model's layers", row[column], file=where)
        by_name = _row_ops(model, row, where)
        for op in present:
            median_ms = number_cell(row, f"time_stats.{op}.median", where, minimum=_MIN_MEDIAN_MS,
                                    maximum=_MAX_MEDIAN_MS)
            table[op].append((median_ms * 1e-3, by_name[VIDUR_OPS[op]]))
    return {op: OpSamples(measured_s=np.array([m for m, _ in rows_of_op]), work=ops.stack([w for _, w in rows_of_op]))
            for op, rows_of_op in table.items()}


# Profiles hold no attention op, so the attention tiling parameters never matter here.
class _NoSram:
    attention_q_tile_tokens = 128
    sram_per_sm_bytes = 0


_NO_SRAM = _NoSram()


def relative_errors(samples: OpSamples, hw: HardwareSpec) -> np.ndarray:
    """|predicted - measured| / measured for every row."""
    return np.abs(samples.predict_s(hw) - samples.measured_s) / samples.measured_s


def compare(samples: dict[str, OpSamples], hw: HardwareSpec) -> dict:
    """Median absolute relative error per op, for the GEMMs (median and p90) and for all ops."""
    errors = {op: relative_errors(s, hw) for op, s in samples.items()}
    gemm = np.concatenate([errors[op] for op in GEMM_OPS if op in errors] or [np.array([np.nan])])
    every = np.concatenate(list(errors.values()))
    return {
        "ops": {op: {"median_abs_err": float(np.median(e)), "n": int(e.size)} for op, e in errors.items()},
        "gemm_median_abs_err": float(np.median(gemm)),
        "gemm_p90_abs_err": float(np.percentile(gemm, 90)),
        "all_median_abs_err": float(np.median(every)),
    }


_BOUNDS = {"compute_efficiency": (0.05, 1.0), "memory_efficiency": (0.05, 1.0),
           "launch_overhead_s": (0.0, 50e-6), "overlap_exponent": (1.0, 20.0),
           "vector_bandwidth_efficiency": (0.02, 1.0)}


def _coordinate_search(loss, hw: HardwareSpec, names: tuple, rounds: int = 60) -> HardwareSpec:
    """Minimise loss(hw) over the named factors by deterministic multiplicative coordinate steps."""
    best, best_loss, step = hw, loss(hw), 0.25
    for _ in range(rounds):
        improved = False
        for name in names:
            for direction in (1 + step, 1 / (1 + step)):
                lo, hi = _BOUNDS[name]
                value = getattr(best, name) * direction if getattr(best, name) else 1e-6
                trial = dataclasses.replace(best, **{name: float(min(hi, max(lo, value)))})
                trial_loss = loss(trial)
                if trial_loss < best_loss - 1e-12:
                    best, best_loss, improved = trial, trial_loss, True
        if not improved:
            step /= 2
            if step < 1e-3:
                break
    return best


def fit_factors(samples: dict[str, OpSamples], hw: HardwareSpec) -> HardwareSpec:
    """Fit the efficiency factors of `hw` to a profile: first the GEMM factors (minimising the median
    plus the 90th percentile of the GEMM errors), then the vector-kernel bandwidth efficiency."""
    gemms = [samples[op] for op in GEMM_OPS if op in samples]
    vectors = [s for op, s in samples.items() if op not in GEMM_OPS]
    if not gemms:
        raise SpecError("profile", f"needs at least one GEMM op ({', '.join(GEMM_OPS)}) to fit")

    def gemm_loss(trial):
        e = np.concatenate([relative_errors(s, trial) for s in gemms])
        return float(np.median(e) + np.percentile(e, 90))

    fitted = _coordinate_search(gemm_loss, hw, ("compute_efficiency", "memory_efficiency",
                                                "launch_overhead_s", "overlap_exponent"))
    if vectors:
        def vector_loss(trial):
            return float(np.median(np.concatenate([relative_errors(s, trial) for s in vectors])))
        fitted = _coordinate_search(vector_loss, fitted, ("vector_bandwidth_efficiency",))
    return fitted
