"""Measured per-op profiles (Vidur's CSV format) against the roofline: errors, and fitting the factors.

Vidur (Agrawal et al., MLSys 2024) profiles one decoder layer's ops for `num_tokens` tokens with weights
split over `num_tensor_parallel_workers` GPUs and stores `time_stats.<op>.median` in milliseconds.
"""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ops
from .errors import SpecError
from .hardware import HardwareSpec
from .models import ModelSpec
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


def _read_rows(path: Path) -> list[dict]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise SpecError("profile", "no such file", str(path)) from None
    if not rows:
        raise SpecError(str(path), "holds no rows")
    return rows


def model_from_profile(path: Path | str) -> ModelSpec:
    """The layer shape a profile was measured on, from its n_head, n_kv_head, n_embd, ... columns."""
    path = Path(path)
    row = _read_rows(path)[0]
    columns = list(_SHAPE_COLUMNS) + ["vocab_size"]
    missing = [c for c in columns if c not in row]
    if missing:
        raise SpecError(f"{path.name}:{missing[0]}", "missing column; pass --model to name the profiled model")
    heads, d = int(row["n_head"]), int(row["n_embd"])
    return ModelSpec(name=path.stem, num_layers=1, hidden_size=d, num_heads=heads,
                     num_kv_heads=int(row["n_kv_head"]), head_dim=d // heads, ffn_size=int(row["n_expanded_embd"]),
                     vocab_size=int(row["vocab_size"]), max_context_tokens=2**20,
                     ffn_kind="swiglu" if row.get("use_gated_mlp", "True") == "True" else "gelu")


def read_profile(path: Path | str, model: ModelSpec) -> dict[str, OpSamples]:
    """Read a Vidur `*_linear_ops.csv` and build, for each op it holds, the samples to compare."""
    path = Path(path)
    rows = _read_rows(path)
    needed = ["num_tokens", "num_tensor_parallel_workers"]
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise SpecError(f"{path.name}:{missing[0]}", "missing column; not a Vidur linear-ops profile")
    for column, attr in _SHAPE_COLUMNS.items():
        if column in rows[0] and int(rows[0][column]) != getattr(model, attr):
            raise SpecError("model", f"{path.name} profiles {column}={rows[0][column]} but {model.name} has "
                            f"{attr}={getattr(model, attr)}; pass the profiled model", model.name)
    present = [op for op in VIDUR_OPS if f"time_stats.{op}.median" in rows[0]]
    if not present:
        raise SpecError(path.name, f"has no time_stats.<op>.median column for any of {', '.join(VIDUR_OPS)}")
    table: dict[str, list] = {op: [] for op in present}
    for line, row in enumerate(rows, start=2):
        try:
            tokens, tp = int(row["num_tokens"]), int(row["num_tensor_parallel_workers"])
        except ValueError:
            raise SpecError(f"{path.name}:{line}", "num_tokens and num_tensor_parallel_workers must be integers") from None
        options = StepOptions(parallel=Parallelism(tensor_parallel=tp))
        by_name = {op.name: op for op in layer_ops(model, Batch((tokens,), (0,)), _NO_SRAM, options)}
        by_name["embedding"] = ops.embedding(tokens, model.hidden_size)
        for op in present:
            table[op].append((float(row[f"time_stats.{op}.median"]) * 1e-3, by_name[VIDUR_OPS[op]]))
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
