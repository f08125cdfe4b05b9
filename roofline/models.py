"""Model specs: the shapes that decide what a forward pass costs.

A `ModelSpec` is loaded from the built-in registry (names users type, e.g. ``llama-2-7b``) or from a
Hugging Face ``config.json`` (Llama, Mistral, Qwen-1, Qwen2, Mixtral, GPT-2, OPT).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .boundary import UNPRINTABLE_NAME, load_json, number_cell, registry_or_file, shown, unprintable
from .errors import SpecError, closest_name, require_choice, require_count

FFN_KINDS = ("swiglu", "gelu")
NORM_KINDS = ("rmsnorm", "layernorm")
POSITION_KINDS = ("rope", "learned")
MAX_CONTEXT_TOKENS = 1 << 24  # above any model's context; bounds every token count a file may give
MAX_MODEL_SIZE = 1 << 24  # above any width or count in a real config.json


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
            require_count(f"{self.name}.{field}", getattr(self, field))
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


def _llama(name, layers, d, heads, kv, ffn, vocab, ctx, head_dim=None, **kw) -> ModelSpec:
    """A Llama-shaped spec; head_dim defaults to d / heads, as config.json leaves it unless pruning changed d."""
    return ModelSpec(name=name, num_layers=layers, hidden_size=d, num_heads=heads, num_kv_heads=kv,
                     head_dim=head_dim or d // heads, ffn_size=ffn, vocab_size=vocab, max_context_tokens=ctx, **kw)


# Shapes from each model's published config.json on the Hugging Face Hub.
_REGISTRY = {m.name: m for m in (
    _llama("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, 4096),
    _llama("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, 4096),
    _llama("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, 4096),
    # Llama-2-7B pruned to a target shape and trained on (Xia et al. 2023, "Sheared LLaMA"):
    # princeton-nlp/Sheared-LLaMA-2.7B.
    _llama("sheared-llama-2.7b", 32, 2560, 20, 20, 6912, 32000, 4096),
    _llama("llama-3-8b", 32, 4096, 32, 8, 14336, 128256, 8192),
    _llama("llama-3.1-8b", 32, 4096, 32, 8, 14336, 128256, 131072),
    _llama("llama-3.1-70b", 80, 8192, 64, 8, 28672, 128256, 131072),
    _llama("llama-3.1-405b", 126, 16384, 128, 8, 53248, 128256, 131072),
    # Draft-sized Llamas, embedding tied to the LM head: meta-llama/Llama-3.2-1B, meta-llama/Llama-3.2-3B.
    _llama("llama-3.2-1b", 16, 2048, 32, 8, 8192, 128256, 131072, tied_embeddings=True),
    _llama("llama-3.2-3b", 28, 3072, 24, 8, 8192, 128256, 131072, tied_embeddings=True),
    # Llama-3.1-8B structured-pruned and distilled (Sreenivas et al. 2024, "LLM Pruning and Distillation in
    # Practice: The Minitron Approach"). nvidia/Llama-3.1-Minitron-4B-Width-Base: hidden 4096 -> 3072, MLP
    # 14336 -> 9216, all 32 heads kept at head_dim 128 (config.json gives head_dim; 3072 / 32 would be 96).
    # nvidia/Llama-3.1-Minitron-4B-Depth-Base: 16 of the 32 layers dropped, widths kept (its model card's "32
    # layers" is the teacher's; the checkpoint's 9.08 GB of bf16 is 4.54e9 parameters, which 16 layers give).
    # Both were distilled at 8192 tokens of context ("works well within 8k").
    _llama("llama-3.1-minitron-4b-width", 32, 3072, 32, 8, 9216, 128256, 8192, head_dim=128),
    _llama("llama-3.1-minitron-4b-depth", 16, 4096, 32, 8, 14336, 128256, 8192),
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


def check_smaller(field: str, helper: ModelSpec, served: ModelSpec, role: str) -> None:
    """A model run beside the served one to save it work (a drafter; a contrastive amateur) must touch fewer
    parameters per token than it: one as large costs each step as much as the model itself."""
    size, served_size = helper.active_params_per_token(), served.active_params_per_token()
    if size >= served_size:
        raise SpecError(field, f"runs {size:,} parameters per token, no fewer than {served.name}'s {served_size:,}; "
                        f"{role} must be a smaller model than the one it serves", helper.name)


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name_or_path: str, base: Path | None = None, field: str = "model") -> ModelSpec:
    """A registry name, or a path to a Hugging Face config.json (relative ones from `base` if given)."""
    found = registry_or_file(field, name_or_path, _REGISTRY, "model", "config.json", (".json",), base)
    return found if isinstance(found, ModelSpec) else load_hf_config(found)


def _size(cfg: dict, path: Path, *keys: str, default: int | None = None) -> int:
    """The first of `keys` that config.json sets: a whole number from 1 to MAX_MODEL_SIZE."""
    key = next((k for k in keys if cfg.get(k) is not None), None)
    if key is None:
        if default is None:
            raise SpecError(keys[0], "is missing from the config", file=path.name)
        return default
    return int(number_cell(cfg, key, path.name, whole=True, minimum=1, maximum=MAX_MODEL_SIZE, text=False))


def _flag(cfg: dict, path: Path, key: str, default: bool) -> bool:
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(key, "must be true or false", value, file=path.name)
    return value


def _head_dim(cfg: dict, path: Path, width: int, heads: int, heads_key: str, key: str = "head_dim") -> int:
    """The head width where config.json gives it (as `key`), else hidden size / heads (which must then
    divide it)."""
    if cfg.get(key) is not None:
        return _size(cfg, path, key)
    if width % heads:
        raise SpecError(heads_key, f"must divide the hidden size {width} (or config.json must give head_dim)",
                        heads, file=path.name)
    return width // heads


def _heads(cfg: dict, path: Path, heads_key: str, width: int) -> tuple[int, int, int]:
    """(query heads, KV heads, head_dim); KV heads default to the query heads (no GQA) and divide them."""
    heads = _size(cfg, path, heads_key)
    kv = _size(cfg, path, "num_key_value_heads", default=heads)
    if heads % kv:
        raise SpecError("num_key_value_heads", f"must divide {heads_key}={heads}", kv, file=path.name)
    return heads, kv, _head_dim(cfg, path, width, heads, heads_key)


def _read_llama(cfg: dict, path: Path, kind: str) -> dict:
    """Llama, Mistral, Qwen2 and Mixtral share their config keys."""
    d = _size(cfg, path, "hidden_size")
    heads, kv, head_dim = _heads(cfg, path, "num_attention_heads", d)
    experts = _size(cfg, path, "num_local_experts", default=1)
    per_token = _size(cfg, path, "num_experts_per_tok", default=1)
    if per_token > experts:
        raise SpecError("num_experts_per_tok", f"must be <= num_local_experts={experts}", per_token, file=path.name)
    return dict(num_layers=_size(cfg, path, "num_hidden_layers"), hidden_size=d, num_heads=heads, num_kv_heads=kv,
                head_dim=head_dim, ffn_size=_size(cfg, path, "intermediate_size"),
                vocab_size=_size(cfg, path, "vocab_size"),
                max_context_tokens=_context(cfg, path, "max_position_embeddings"),
                tied_embeddings=_flag(cfg, path, "tie_word_embeddings", False),
                qkv_bias=kind == "qwen2" or _flag(cfg, path, "attention_bias", False),
                num_experts=experts, experts_per_token=per_token)


def _read_qwen(cfg: dict, path: Path, kind: str) -> dict:
    """Qwen-1 (QWenLMHeadModel), as modeling_qwen.py in its Hugging Face repos builds it
    (https://huggingface.co/Qwen/Qwen-72B/blob/main/modeling_qwen.py): head_dim is `kv_channels`; the QKV projection `c_attn` always has a bias, the other linears only
    without `no_bias`; QWenMLP builds w1 and w2 at `intermediate_size // 2`, so its config's
    intermediate_size is twice the width of each SwiGLU branch; lm_head is not tied to the embedding."""
    d = _size(cfg, path, "hidden_size")
    heads = _size(cfg, path, "num_attention_heads")
    return dict(num_layers=_size(cfg, path, "num_hidden_layers"), hidden_size=d, num_heads=heads, num_kv_heads=heads,
                head_dim=_head_dim(cfg, path, d, heads, "num_attention_heads", key="kv_channels"),
                ffn_size=_ffn_half(cfg, path), vocab_size=_size(cfg, path, "vocab_size", "padded_vocab_size"),
                max_context_tokens=_context(cfg, path, "max_position_embeddings", "seq_length"),
                tied_embeddings=_flag(cfg, path, "tie_word_embeddings", False), qkv_bias=True,
                linear_bias=not _flag(cfg, path, "no_bias", True))


def _ffn_half(cfg: dict, path: Path) -> int:
    both = _size(cfg, path, "intermediate_size")
    if both % 2:
        raise SpecError("intermediate_size", "must be even (Qwen-1 counts both SwiGLU branches in it)", both,
                        file=path.name)
    return both // 2


def _read_gpt2(cfg: dict, path: Path, kind: str) -> dict:
    d = _size(cfg, path, "n_embd", "hidden_size")
    heads_key = "n_head" if cfg.get("n_head") is not None else "num_attention_heads"
    heads = _size(cfg, path, heads_key)
    return dict(num_layers=_size(cfg, path, "n_layer", "num_hidden_layers"), hidden_size=d, num_heads=heads,
                num_kv_heads=heads, head_dim=_head_dim(cfg, path, d, heads, heads_key),
                ffn_size=_size(cfg, path, "n_inner", default=4 * d), vocab_size=_size(cfg, path, "vocab_size"),
                max_context_tokens=_context(cfg, path, "n_positions", "n_ctx"), ffn_kind="gelu",
                norm_kind="layernorm", position="learned", tied_embeddings=True, linear_bias=True)


def _read_opt(cfg: dict, path: Path, kind: str) -> dict:
    d = _size(cfg, path, "hidden_size")
    heads = _size(cfg, path, "num_attention_heads")
    return dict(num_layers=_size(cfg, path, "num_hidden_layers"), hidden_size=d, num_heads=heads, num_kv_heads=heads,
                head_dim=_head_dim(cfg, path, d, heads, "num_attention_heads"), ffn_size=_size(cfg, path, "ffn_dim"),
                vocab_size=_size(cfg, path, "vocab_size"),
                max_context_tokens=_context(cfg, path, "max_position_embeddings"), ffn_kind="gelu",
                norm_kind="layernorm", position="learned",
                tied_embeddings=_flag(cfg, path, "tie_word_embeddings", True), linear_bias=True)


def _context(cfg: dict, path: Path, *keys: str) -> int:
    tokens = _size(cfg, path, *keys)
    if tokens > MAX_CONTEXT_TOKENS:
        raise SpecError(keys[0], f"must be <= {MAX_CONTEXT_TOKENS:,} tokens", tokens, file=path.name)
    if tokens < 2:  # a prompt token and the one generated after it
        raise SpecError(keys[0], "must be >= 2 tokens (a prompt token and one generated)", tokens, file=path.name)
    return tokens


# model_type -> the reader of its config.json keys
_CONFIG_READERS = {"llama": _read_llama, "mistral": _read_llama, "qwen2": _read_llama, "mixtral": _read_llama,
                   "qwen": _read_qwen, "gpt2": _read_gpt2, "opt": _read_opt}


# The keys the readers above take from a config.json (any model_type's)
_READ_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
              "head_dim", "num_hidden_layers", "vocab_size", "max_position_embeddings", "tie_word_embeddings",
              "attention_bias", "num_local_experts", "num_experts_per_tok", "ffn_dim", "kv_channels", "seq_length",
              "padded_vocab_size", "no_bias", "n_embd", "n_head", "n_layer", "n_inner", "n_ctx", "n_positions")


def _check_misspelt_keys(cfg: dict, path: Path) -> None:
    """A key one slip from one the readers take, which the file lacks (num_key_value_head for
    num_key_value_heads), is refused: read as nothing it would leave that key's default (no GQA: a KV cache
    four times too large) in silence. config.json's many other keys are the model's own."""
    absent = [key for key in _READ_KEYS if key not in cfg]
    for key in cfg:
        close = closest_name(key, absent, cutoff=0.9) if isinstance(key, str) and key not in _READ_KEYS else None
        if close:
            raise SpecError(key, f"is not a key infersim reads: did you mean {close}?", file=path.name)


def load_hf_config(path: Path | str) -> ModelSpec:
    """Read a Hugging Face config.json (model_type llama, mistral, qwen, qwen2, mixtral, gpt2 or opt). Its
    errors name the file with its folder (`llama-3-8b/config.json`): every model's file has that name, and a
    scenario may name two (a drafter's, a contrastive amateur's)."""
    path = Path(path)
    try:
        return _read_config(path)
    except SpecError as err:
        if not (path.parent.name and err.file and err.file.startswith(path.name)):
            raise
        raise type(err)(err.field, err.problem, err.got, f"{path.parent.name}/{err.file}") from None


def _read_config(path: Path) -> ModelSpec:
    cfg = load_json(path, "model", "a config")
    if not isinstance(cfg, dict):
        raise SpecError("", "must hold a JSON object", file=path.name)
    kind = cfg.get("model_type")
    if kind is None:
        raise SpecError("model_type", f"is required (one of {', '.join(_CONFIG_READERS)}), as every Hugging Face "
                        "config.json gives it", file=path.name)
    if not isinstance(kind, str) or kind not in _CONFIG_READERS:
        raise SpecError("model_type", f"unsupported; allowed: {', '.join(_CONFIG_READERS)}", kind, file=path.name)
    _check_misspelt_keys(cfg, path)
    named = cfg.get("_name_or_path")
    if isinstance(named, str) and unprintable(named):
        raise SpecError("_name_or_path", UNPRINTABLE_NAME, named, file=path.name)
    name = named if isinstance(named, str) and named else shown(path.parent.name or path.stem)
    try:
        return ModelSpec(name=name, **_CONFIG_READERS[kind](cfg, path, kind))
    except SpecError as err:
        raise err.in_file(path.name) from None
