"""infersim.roofline: what every op of an LLM forward step costs (FLOPs, bytes, seconds) on a hardware spec.

Typical use::

    from infersim.roofline import get_model, get_hardware, decode_batch, step_cost
    cost = step_cost(get_model("llama-2-7b"), get_hardware("a100-sxm-80gb"), decode_batch([1024] * 8))
    cost.time_s, cost.totals(), [(r.name, r.time_s, r.timed.bound) for r in cost.rows]
"""
from .errors import SpecError
from .hardware import HardwareSpec, get_hardware, hardware_from_dict, hardware_names, load_hardware_yaml
from .memory import MemoryPlan, kv_bytes_per_token_per_gpu, plan_memory, weight_bytes_per_gpu
from .models import ModelSpec, get_model, load_hf_config, model_names
from .ops import GemmShape, OpCost
from .quant import PRESETS as QUANT_PRESETS
from .quant import QuantSpec, get_quant
from .step import (Batch, Parallelism, StepCost, StepOptions, chunked_prefill_batch, decode_batch, layer_ops,
                   prefill_batch, step_cost)
from .timing import OpTime, time_op

__all__ = [
    "SpecError", "HardwareSpec", "get_hardware", "hardware_from_dict", "hardware_names", "load_hardware_yaml",
    "MemoryPlan", "kv_bytes_per_token_per_gpu", "plan_memory", "weight_bytes_per_gpu", "ModelSpec",
    "get_model", "load_hf_config", "model_names", "GemmShape", "OpCost", "QUANT_PRESETS", "QuantSpec",
    "get_quant", "Batch", "Parallelism", "StepCost", "StepOptions", "chunked_prefill_batch", "decode_batch",
    "layer_ops", "prefill_batch", "step_cost", "OpTime", "time_op",
]
