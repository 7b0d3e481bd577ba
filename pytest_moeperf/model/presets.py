"""The model registry: tiny CPU presets and the paper's three models, by real architecture.

No machine here reaches a model hub, so a preset is a transformers config of the real
architecture (same shapes, kernels and bytes) with seeded random weights; a user with a
checkpoint passes its path or hub id and gets the real weights, tokenizer and template.
Parameter counts come from the config on the meta device: no memory, no weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


class UnknownModelError(ValueError):
    pass


@dataclass(frozen=True)
class Preset:
    name: str
    family: str  # tokenizer / chat-template family: gpt-oss | qwen3 | yi
    architecture: str  # moe | dense
    config_class: str  # transformers config class name
    config_kwargs: tuple  # sorted (key, value) pairs, hashable
    note: str = ""

    def make_config(self):
        import transformers

        cls = getattr(transformers, self.config_class)
        return cls(**dict(self.config_kwargs))

    @property
    def max_positions(self) -> int:
        return int(dict(self.config_kwargs)["max_position_embeddings"])

    @property
    def vocab_size(self) -> int:
        return int(dict(self.config_kwargs)["vocab_size"])


def _preset(name, family, architecture, config_class, note="", **kwargs) -> Preset:
    return Preset(name, family, architecture, config_class, tuple(sorted(kwargs.items())), note)


# GPT-OSS-20B: openai/gpt-oss-20b config.json (24 layers, 32 experts, top-4, hidden 2880,
# alternating 128-token sliding-window and full attention, YaRN rope to 131072).
_GPT_OSS_ROPE = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                 "original_max_position_embeddings": 4096, "truncate": False, "rope_theta": 150000.0}
# what gpt-oss-20b and gpt-oss-120b share (their config.json files differ in layers and experts)
_GPT_OSS_SHARED = dict(num_experts_per_tok=4, vocab_size=201088, hidden_size=2880, intermediate_size=2880,
                       head_dim=64, num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
                       max_position_embeddings=131072, tie_word_embeddings=False,
                       rope_parameters=_GPT_OSS_ROPE, swiglu_limit=7.0)

PRESETS: dict[str, Preset] = {p.name: p for p in (
    _preset("tiny-moe", "gpt-oss", "moe", "GptOssConfig",
            note="GPT-OSS class, tiny config for the CPU",
            num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2, vocab_size=512,
            hidden_size=64, intermediate_size=64, head_dim=16, num_attention_heads=4,
            num_key_value_heads=2, sliding_window=32, max_position_embeddings=4096,
            tie_word_embeddings=False, rope_parameters=dict(_GPT_OSS_ROPE, original_max_position_embeddings=128)),
    _preset("tiny-dense", "qwen3", "dense", "Qwen3Config",
            note="Qwen3 class, tiny config for the CPU",
            num_hidden_layers=2, vocab_size=512, hidden_size=64, intermediate_size=192, head_dim=16,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            tie_word_embeddings=False),
    _preset("gpt-oss-20b", "gpt-oss", "moe", "GptOssConfig",
            note="openai/gpt-oss-20b architecture",
            num_hidden_layers=24, num_local_experts=32, **_GPT_OSS_SHARED),
    # openai/gpt-oss-120b config.json: as 20b with 36 layers and 128 experts (top-4); > 1 GPU in bf16:
    # its experts are split over the GPUs by parallel/tensor_parallel.py (docs/multigpu.md)
    _preset("gpt-oss-120b", "gpt-oss", "moe", "GptOssConfig",
            note="openai/gpt-oss-120b architecture (expert parallel over GPUs: pytest_moeperf.parallel.tensor_parallel)",
            num_hidden_layers=36, num_local_experts=128, **_GPT_OSS_SHARED),
    _preset("qwen3-32b", "qwen3", "dense", "Qwen3Config",
            note="Qwen/Qwen3-32B architecture",
            num_hidden_layers=64, vocab_size=151936, hidden_size=5120, intermediate_size=25600,
            head_dim=128, num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=40960,
            rms_norm_eps=1e-6, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    _preset("yi-34b", "yi", "dense", "LlamaConfig",
            note="01-ai/Yi-34B architecture (Llama)",
            num_hidden_layers=60, vocab_size=64000, hidden_size=7168, intermediate_size=20480,
            num_attention_heads=56, num_key_value_heads=8, max_position_embeddings=4096,
            rms_norm_eps=1e-5, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0}),
)}

CPU_DEFAULT_MODELS = ("tiny-moe", "tiny-dense")
GPU_DEFAULT_MODELS = ("gpt-oss-20b", "qwen3-32b", "yi-34b")


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}"
            " (or give a checkpoint with --moeperf-weights NAME=PATH)") from None


@dataclass(frozen=True)
class ParamCounts:
    total: int
    active: int
    input_embedding: int
    inactive_experts: int


@lru_cache(maxsize=None)
def count_params(name: str) -> ParamCounts:
    """Total and active parameters, from the config on the meta device.

    active = total - sum over MoE layers of (E - k) * params_per_expert - input embedding.
    The input embedding is a lookup (one row per token is read), so, as in the GPT-OSS model
    card (20.91 B total, 3.61 B active), it does not count as active.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = get_preset(name).make_config()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return count_model_params(model)


def count_model_params(model) -> ParamCounts:
    total = sum(p.numel() for p in model.parameters())
    config = model.config
    inactive = 0
    n_experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    top_k = getattr(config, "num_experts_per_tok", None)
    if n_experts and top_k:
        for module in model.modules():
            if type(module).__name__.endswith("Experts"):
                expert_params = sum(p.numel() for p in module.parameters(recurse=True))
                inactive += (n_experts - top_k) * (expert_params // n_experts)
    embedding = model.get_input_embeddings().weight.numel()
    return ParamCounts(total=total, active=total - inactive - embedding, input_embedding=embedding,
                       inactive_experts=inactive)
