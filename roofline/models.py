"""Model specs: the shapes that decide what a forward pass costs.

A `ModelSpec` is loaded from the built-in registry (names users type, e.g. ``llama-2-7b``) or from a
Hugging Face ``config.json`` (Llama, Mistral, Qwen2, Mixtral, GPT-2, OPT).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import SpecError, require_choice, require_positive

FFN_KINDS = ("swiglu", "gelu")
NORM_KINDS = ("rmsnorm", "layernorm")
POSITION_KINDS = ("rope", "learned")


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer. Sizes are counts (layers, heads) or widths (elements)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    max_context_tokens: int
    ffn_kind: str = "swiglu"
    norm_kind: str = "rmsnorm"
    position: str = "rope"
    tied_embeddings: bool = False
    qkv_bias: bool = False
    linear_bias: bool = False
    num_experts: int = 1
    experts_per_token: int = 1

    def __post_init__(self):
        for field in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "ffn_size",
                      "vocab_size", "max_context_tokens", "num_experts", "experts_per_token"):
            require_positive(f"{self.name}.{field}", getattr(self, field))
        require_choice(f"{self.name}.ffn_kind", self.ffn_kind, FFN_KINDS)
        require_choice(f"{self.name}.norm_kind", self.norm_kind, NORM_KINDS)
        require_choice(f"{self.name}.position", self.position, POSITION_KINDS)
        if self.num_heads % self.num_kv_heads:
            raise SpecError(f"{self.name}.num_kv_heads", f"must divide num_heads={self.num_heads}",
                            self.num_kv_heads)
        if self.experts_per_token > self.num_experts:
            raise SpecError(f"{self.name}.experts_per_token",
                            f"must be <= num_experts={self.num_experts}", self.experts_per_token)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def q_width(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def ffn_matrices(self) -> int:
        """Weight matrices per expert: gate, up, down for SwiGLU (Shazeer 2020); fc1, fc2 for GELU."""
        return 3 if self.ffn_kind == "swiglu" else 2

    def layer_params(self) -> int:
        """Parameters of one decoder layer: attention, FFN (all experts), router, norms, biases."""
        d = self.hidden_size
        attn = d * self.q_width + 2 * d * self.kv_width + self.q_width * d
        if self.qkv_bias or self.linear_bias:
            attn += self.q_width + 2 * self.kv_width
        if self.linear_bias:
            attn += d
        expert = self.ffn_matrices * d * self.ffn_size
        if self.linear_bias:
            expert += (self.ffn_matrices - 1) * self.ffn_size + d
        router = d * self.num_experts if self.is_moe else 0
        norms = 2 * d * (2 if self.norm_kind == "layernorm" else 1)
        return attn + self.num_experts * expert + router + norms

    def embedding_params(self) -> int:
        """Token embedding, learned positions (GPT-2/OPT), the LM head unless tied, and the final norm."""
        d = self.hidden_size
        n = self.vocab_size * d * (1 if self.tied_embeddings else 2)
        if self.position == "learned":
            n += self.max_context_tokens * d
        return n + d * (2 if self.norm_kind == "layernorm" else 1)

    def num_params(self) -> int:
        return self.num_layers * self.layer_params() + self.embedding_params()

    def active_params_per_token(self) -> int:
        """Parameters a token touches: for MoE only `experts_per_token` of the experts (Mixtral: ~12.9e9)."""
        d = self.hidden_size
        inactive = (self.num_experts - self.experts_per_token) * self.ffn_matrices * d * self.ffn_size
        return self.num_params() - self.num_layers * inactive

    def kv_heads_per_gpu(self, tensor_parallel: int) -> int:
        """KV heads one tensor-parallel rank holds: kv_heads / tp, and one (replicated) when tp exceeds
        the KV heads, as Megatron-LM and vLLM replicate them."""
        return max(1, self.num_kv_heads // tensor_parallel)


def _llama(name, layers, d, heads, kv, ffn, vocab, ctx, **kw) -> ModelSpec:
    return ModelSpec(name=name, num_layers=layers, hidden_size=d, num_heads=heads, num_kv_heads=kv,
                     head_dim=d // heads, ffn_size=ffn, vocab_size=vocab, max_context_tokens=ctx, **kw)


# Shapes from each model's published config.json on the Hugging Face Hub.
_REGISTRY = {m.name: m for m in (
    _llama("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, 4096),
    _llama("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, 4096),
    _llama("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, 4096),
    _llama("llama-3-8b", 32, 4096, 32, 8, 14336, 128256, 8192),
    _llama("llama-3.1-8b", 32, 4096, 32, 8, 14336, 128256, 131072),
    _llama("llama-3.1-70b", 80, 8192, 64, 8, 28672, 128256, 131072),
    _llama("llama-3.1-405b", 126, 16384, 128, 8, 53248, 128256, 131072),
    _llama("mistral-7b", 32, 4096, 32, 8, 14336, 32000, 32768),
    _llama("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, 32768, num_experts=8, experts_per_token=2),
    _llama("qwen2.5-7b", 28, 3584, 28, 4, 18944, 152064, 32768, qkv_bias=True),
    _llama("qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064, 32768, qkv_bias=True),
    ModelSpec(name="gpt2", num_layers=12, hidden_size=768, num_heads=12, num_kv_heads=12, head_dim=64,
              ffn_size=3072, vocab_size=50257, max_context_tokens=1024, ffn_kind="gelu",
              norm_kind="layernorm", position="learned", tied_embeddings=True, linear_bias=True),
    # Small shapes for tests and quick runs.
    _llama("tiny-llama", 2, 64, 4, 2, 128, 256, 512),
    _llama("tiny-moe", 2, 64, 4, 2, 96, 256, 512, num_experts=4, experts_per_token=2),
)}


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name_or_path: str) -> ModelSpec:
    """A registry name, or a path to a Hugging Face config.json."""
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_file():
        return load_hf_config(path)
    raise SpecError("model", f"unknown model; use a config.json path or one of {', '.join(model_names())}",
                    name_or_path)


def _get(cfg: dict, path: Path, *keys, default=None):
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    if default is not None:
        return default
    raise SpecError(f"{path.name}:{keys[0]}", "missing from the config")


def load_hf_config(path: Path | str) -> ModelSpec:
    """Read a Hugging Face config.json (model_type llama, mistral, qwen2, mixtral, gpt2 or opt)."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError("model", "no such config file", str(path)) from None
    except json.JSONDecodeError as err:
        raise SpecError(str(path), f"not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(cfg, dict):
        raise SpecError(str(path), "must hold a JSON object")
    kind = cfg.get("model_type")
    name = cfg.get("_name_or_path") or path.parent.name or path.stem
    if kind in ("llama", "mistral", "qwen2", "mixtral"):
        d = _get(cfg, path, "hidden_size")
        heads = _get(cfg, path, "num_attention_heads")
        return ModelSpec(
            name=name, num_layers=_get(cfg, path, "num_hidden_layers"), hidden_size=d, num_heads=heads,
            num_kv_heads=_get(cfg, path, "num_key_value_heads", default=heads),
            head_dim=_get(cfg, path, "head_dim", default=d // heads),
            ffn_size=_get(cfg, path, "intermediate_size"), vocab_size=_get(cfg, path, "vocab_size"),
            max_context_tokens=_get(cfg, path, "max_position_embeddings"),
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=kind == "qwen2" or bool(cfg.get("attention_bias", False)),
            num_experts=cfg.get("num_local_experts") or 1,
            experts_per_token=cfg.get("num_experts_per_tok") or 1)
    if kind == "gpt2":
        d = _get(cfg, path, "n_embd", "hidden_size")
        heads = _get(cfg, path, "n_head", "num_attention_heads")
        return ModelSpec(
            name=name, num_layers=_get(cfg, path, "n_layer", "num_hidden_layers"), hidden_size=d,
            num_heads=heads, num_kv_heads=heads, head_dim=d // heads,
            ffn_size=cfg.get("n_inner") or 4 * d, vocab_size=_get(cfg, path, "vocab_size"),
            max_context_tokens=_get(cfg, path, "n_positions", "n_ctx"), ffn_kind="gelu",
            norm_kind="layernorm", position="learned", tied_embeddings=True, linear_bias=True)
    if kind == "opt":
        d = _get(cfg, path, "hidden_size")
        heads = _get(cfg, path, "num_attention_heads")
        return ModelSpec(
            name=name, num_layers=_get(cfg, path, "num_hidden_layers"), hidden_size=d, num_heads=heads,
            num_kv_heads=heads, head_dim=d // heads, ffn_size=_get(cfg, path, "ffn_dim"),
            vocab_size=_get(cfg, path, "vocab_size"),
            max_context_tokens=_get(cfg, path, "max_position_embeddings"), ffn_kind="gelu",
            norm_kind="layernorm", position="learned",
            tied_embeddings=bool(cfg.get("tie_word_embeddings", True)), linear_bias=True)
    raise SpecError(f"{path.name}:model_type", "unsupported; allowed: llama, mistral, qwen2, mixtral, gpt2, opt",
                    kind)
