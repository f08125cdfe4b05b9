import json

import pytest

from infersim.roofline import (Parallelism, QuantSpec, SpecError, get_model, kv_bytes_per_token_per_gpu,
                               load_hf_config)

# Published parameter counts (Hugging Face model cards / safetensors metadata).
PUBLISHED = {
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.1-405b": 405_853_388_800,
    "llama-3.2-1b": 1_235_814_400,  # tied embedding counted once
    "llama-3.2-3b": 3_212_749_824,
    "mistral-7b": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
    "qwen2.5-7b": 7_615_616_512,
    "qwen2.5-72b": 72_706_203_648,
    "gpt2": 124_439_808,
}


@pytest.mark.parametrize("name,params", PUBLISHED.items())
def test_parameter_counts_match_published(name, params):
    assert get_model(name).num_params() == pytest.approx(params, rel=1e-3)


# Pruned models whose papers give rounded sizes: Minitron (Sreenivas et al. 2024, table 1: 4.5B total for both
# 4B-Width and 4B-Depth; the Width checkpoint page says 4.51B); Sheared LLaMA (Xia et al. 2023: 2.7B).
@pytest.mark.parametrize("name,params", [("llama-3.1-minitron-4b-width", 4.51e9),
                                         ("llama-3.1-minitron-4b-depth", 4.5e9),
                                         ("sheared-llama-2.7b", 2.7e9)])
def test_pruned_models_have_their_published_size(name, params):
    assert get_model(name).num_params() == pytest.approx(params, rel=0.02)


def test_minitron_depth_keeps_the_teachers_layers_whole_and_drops_half():
    # Llama-3.1-8B has 32 layers of 218,112,000 parameters (attention 4096 x (4096 + 2 x 1024) + 4096^2 =
    # 41,943,040; SwiGLU 3 x 4096 x 14336 = 176,160,768; two norms 8,192): dropping 16 of them removes
    # 3,489,792,000 and leaves the 1,050,677,248 of embedding, LM head and final norm as they were.
    teacher, student = get_model("llama-3.1-8b"), get_model("llama-3.1-minitron-4b-depth")
    assert teacher.num_params() - student.num_params() == 16 * 218_112_000


def test_llama2_7b_is_6_74e9_params():
    assert round(get_model("llama-2-7b").num_params() / 1e9, 2) == 6.74


def test_mixtral_active_params_are_about_12_9e9():
    # Mistral AI's Mixtral announcement: 46.7B total, 12.9B used per token.
    assert get_model("mixtral-8x7b").active_params_per_token() == pytest.approx(12.9e9, rel=0.01)


def test_kv_cache_per_token_of_llama2_7b_is_512_kib():
    # 2 (K and V) x 32 layers x 4096 x 2 bytes = 524,288 bytes.
    assert kv_bytes_per_token_per_gpu(get_model("llama-2-7b"), QuantSpec(), Parallelism()) == 512 * 1024


def test_gqa_cuts_kv_by_heads_over_kv_heads():
    # Llama-3-8B: 32 query heads share 8 KV heads: 2 x 32 x 1024 x 2 = 128 KiB per token.
    assert kv_bytes_per_token_per_gpu(get_model("llama-3.1-8b"), QuantSpec(), Parallelism()) == 128 * 1024


def test_kv_heads_are_split_over_tensor_parallel_ranks_then_replicated():
    # Llama-3.1-70B has 8 KV heads: 2 per rank at TP4, 1 at TP8, still 1 (a replica) at TP16.
    model = get_model("llama-3.1-70b")
    assert [model.kv_heads_per_gpu(tp) for tp in (1, 4, 8, 16)] == [8, 2, 1, 1]


def _write(tmp_path, cfg):
    """`cfg` as tmp_path/tiny/config.json: errors name the file with its folder."""
    path = _config_path(tmp_path)
    path.write_text(json.dumps(cfg))
    return path


def _config_path(tmp_path):
    (tmp_path / "tiny").mkdir(exist_ok=True)
    return tmp_path / "tiny" / "config.json"


def test_llama_config_json_loads_like_registry(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
           "max_position_embeddings": 4096, "tie_word_embeddings": False}
    assert load_hf_config(_write(tmp_path, cfg)).num_params() == 6_738_415_616


def test_mixtral_config_json_reads_experts(tmp_path):
    cfg = {"model_type": "mixtral", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000,
           "max_position_embeddings": 32768, "num_local_experts": 8, "num_experts_per_tok": 2}
    spec = load_hf_config(_write(tmp_path, cfg))
    assert (spec.num_experts, spec.experts_per_token) == (8, 2)
    assert spec.num_params() == pytest.approx(46_702_792_704, rel=1e-3)


def test_gpt2_config_json(tmp_path):
    cfg = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
           "n_positions": 1024}
    assert load_hf_config(_write(tmp_path, cfg)).num_params() == 124_439_808


def test_opt_125m_config_json(tmp_path):
    # OPT-125m: 125.2M parameters (Zhang et al. 2022, Table 1 rounds to 125M); positions table 2048 (+2 offset ignored).
    cfg = {"model_type": "opt", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
           "ffn_dim": 3072, "vocab_size": 50272, "max_position_embeddings": 2048}
    assert load_hf_config(_write(tmp_path, cfg)).num_params() == pytest.approx(125.2e6, rel=0.01)


def test_unknown_model_names_the_choices():
    with pytest.raises(SpecError, match="model: unknown model.*llama-2-7b"):
        get_model("llama-9")


def test_malformed_config_gives_one_line(tmp_path):
    path = _config_path(tmp_path)
    path.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_hf_config(path)
    with pytest.raises(SpecError, match="^tiny/config.json: hidden_size: is missing from the config$"):
        load_hf_config(_write(tmp_path, {"model_type": "llama"}))
    with pytest.raises(SpecError, match="model_type: unsupported"):
        load_hf_config(_write(tmp_path, {"model_type": "bert"}))


def test_qwen1_72b_config_json_has_its_published_72_3e9_params(tmp_path):
    # Qwen/Qwen-72B's config.json (model_type "qwen"). Per layer: attention 4 x 8192^2 = 268,435,456 plus
    # the c_attn bias 3 x 8192 = 24,576; SwiGLU at 49152 / 2 = 24576 wide: 3 x 8192 x 24576 = 603,979,776;
    # two RMSNorms 16,384: 872,456,192 x 80 layers = 69,796,495,360. Embedding and untied lm_head
    # 2 x 152064 x 8192 = 2,491,416,576, final norm 8192: 72,287,920,128 in all, the bf16 checkpoint's
    # 144,575,840,256 bytes (model.safetensors.index.json) / 2.
    cfg = {"model_type": "qwen", "hidden_size": 8192, "intermediate_size": 49152, "kv_channels": 128,
           "num_attention_heads": 64, "num_hidden_layers": 80, "vocab_size": 152064, "max_position_embeddings": 8192,
           "seq_length": 8192, "no_bias": True, "tie_word_embeddings": False}
    spec = load_hf_config(_write(tmp_path, cfg))
    assert (spec.ffn_size, spec.head_dim, spec.num_kv_heads, spec.qkv_bias) == (24576, 128, 64, True)
    assert spec.num_params() == 72_287_920_128


LLAMA = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
         "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 8192}
WHOLE = "must be a finite whole number from 1 to 16,777,216"


@pytest.mark.parametrize("key,value,message", [
    ("hidden_size", "4096", f"hidden_size: {WHOLE} (a JSON number, not text), got '4096'"),
    ("hidden_size", [4096], f"hidden_size: {WHOLE}, got [4096]"),
    ("hidden_size", 32.5, f"hidden_size: {WHOLE}, got 32.5"),
    ("hidden_size", True, f"hidden_size: {WHOLE}, got True"),
    ("num_attention_heads", 0, f"num_attention_heads: {WHOLE}, got 0"),
    ("num_key_value_heads", -8, f"num_key_value_heads: {WHOLE}, got -8"),
    ("num_hidden_layers", 2**40, f"num_hidden_layers: {WHOLE}, got 1099511627776"),
    ("hidden_size", 4097, "num_attention_heads: must divide the hidden size 4097 (or config.json must give "
                          "head_dim), got 32"),
    ("num_key_value_heads", 3, "num_key_value_heads: must divide num_attention_heads=32, got 3"),
    ("vocab_size", None, "vocab_size: is missing from the config"),
    ("max_position_embeddings", 1, "max_position_embeddings: must be >= 2 tokens (a prompt token and one "
                                   "generated), got 1"),
    ("tie_word_embeddings", "yes", "tie_word_embeddings: must be true or false, got 'yes'"),
    ("num_experts_per_tok", 2, "num_experts_per_tok: must be <= num_local_experts=1, got 2"),
    ("model_type", "bert", "model_type: unsupported; allowed: llama, mistral, qwen2, mixtral, qwen, gpt2, opt, "
                           "got 'bert'"),
])
def test_config_json_mistakes_name_the_file_the_key_and_the_value(tmp_path, key, value, message):
    with pytest.raises(SpecError) as info:
        load_hf_config(_write(tmp_path, {**LLAMA, key: value}))
    assert str(info.value) == f"tiny/config.json: {message}"


def test_a_config_key_one_slip_from_one_infersim_reads_is_refused(tmp_path):
    # read as nothing, num_key_value_head would leave the default of as many KV heads as query heads: the
    # 8B's KV cache four times too large (32 heads for 8)
    cfg = {k: v for k, v in LLAMA.items() if k != "num_key_value_heads"} | {"num_key_value_head": 8}
    with pytest.raises(SpecError) as info:
        load_hf_config(_write(tmp_path, cfg))
    assert str(info.value) == ("tiny/config.json: num_key_value_head: is not a key infersim reads: did you mean "
                               "num_key_value_heads?")
    # a model's other keys are its own
    spec = load_hf_config(_write(tmp_path, LLAMA | {"rope_theta": 5e5, "attention_dropout": 0.0, "mlp_bias": False}))
    assert spec.num_kv_heads == 8


def test_the_keys_checked_for_slips_are_every_key_the_readers_read(tmp_path):
    # a key a reader takes but _READ_KEYS lacks would go unchecked: its slip read as nothing, in silence
    from infersim.roofline.models import _CONFIG_READERS, _READ_KEYS

    class Recording(dict):
        def __init__(self, data):
            super().__init__(data)
            self.asked = set()

        def get(self, key, default=None):
            self.asked.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            self.asked.add(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            self.asked.add(key)
            return super().__contains__(key)

    configs = {"llama": LLAMA,
               "mixtral": LLAMA | {"model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2},
               "qwen": {"model_type": "qwen", "hidden_size": 4096, "intermediate_size": 22016, "kv_channels": 128,
                        "num_attention_heads": 32, "num_hidden_layers": 32, "vocab_size": 151936, "seq_length": 8192},
               "gpt2": {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
                        "n_positions": 1024},
               "opt": {"model_type": "opt", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                       "ffn_dim": 3072, "vocab_size": 50272, "max_position_embeddings": 2048}}
    for kind, cfg in configs.items():
        recording = Recording(cfg)
        _CONFIG_READERS[kind](recording, tmp_path / "config.json", kind)
        assert recording.asked and recording.asked <= set(_READ_KEYS), (kind, recording.asked - set(_READ_KEYS))


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    path = _config_path(tmp_path)
    path.write_bytes(b'{"model_type": "llama", "name": "\xff"}')  # 0xff is the 34th byte
    with pytest.raises(SpecError, match=r"^tiny/config.json: is not UTF-8 text \(byte 0xff at offset 33\)"):
        get_model(str(path))


@pytest.mark.parametrize("text,message", [
    ("nowhere/config.json", "model: no such file, got 'nowhere/config.json'"),
    ("missing.json", "model: no such file, got 'missing.json'"),
    ("llama-9", "model: unknown model; use a config.json path or one of gpt2, llama-2-13b"),
    (".", "model: is a folder, not a file, got '.'"),
])
def test_one_rule_tells_a_registry_name_from_a_config_path(text, message):
    with pytest.raises(SpecError) as info:
        get_model(text)
    assert str(info.value).startswith(message)
