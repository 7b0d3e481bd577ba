"""Load a model once: a preset with seeded random weights, or a checkpoint by path or hub id.

Random init happens directly on the target device in the target dtype (bf16 init of
GPT-OSS-20B on an H200 takes under a second), so the weights have the real shapes and
bytes without a hub.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pytest_moeperf.model.presets import ParamCounts, Preset, count_model_params, get_preset

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class LoadError(RuntimeError):
    pass


def torch_dtype(name: str):
    import torch

    try:
        return getattr(torch, DTYPES[name])
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}") from None


@dataclass
class LoadedModel:
    preset: Preset
    model: object
    tokenizer: object
    device: str
    dtype: str
    weights: str  # random | checkpoint
    checkpoint: str | None
    params: ParamCounts
    weights_bytes: int
    load_s: float
    experts: str | None

    @property
    def name(self) -> str:
        return self.preset.name

    @property
    def architecture(self) -> str:
        """moe or dense, from the loaded model's own config: a checkpoint given for a preset's name
        (--moeperf-weights tiny-dense=<a MoE checkpoint>) is labelled by what it is."""
        return architecture_of(getattr(self.model, "config", None), self.preset.architecture)


# the config fields in which transformers' MoE models count their routed experts
# (gpt-oss / Mixtral: num_local_experts; Qwen3-MoE: num_experts; DeepSeek: n_routed_experts)
EXPERT_COUNT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts")


def architecture_of(config, default: str) -> str:
    """moe when the config routes over more than one expert, dense when it names none; ``default``
    for a config that cannot be read."""
    if config is None:
        return default
    counts = [getattr(config, f, None) for f in EXPERT_COUNT_FIELDS]
    counts = [c for c in counts if isinstance(c, int) and not isinstance(c, bool)]
    return "moe" if any(c > 1 for c in counts) else "dense"


def _device_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return int(torch.cuda.memory_allocated())
    return 0


def load_model(name: str, *, device: str, dtype: str = "bf16", checkpoint: str | None = None,
               experts: str | None = None, seed: int = 0) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM

    from pytest_moeperf.model.tokenizer import get_tokenizer

    preset = get_preset(name)
    td = torch_dtype(dtype)
    kwargs = {"dtype": td}
    if experts is not None and preset.architecture == "moe":
        kwargs["experts_implementation"] = experts
    before = _device_bytes(device)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    try:
        if checkpoint:
            model = AutoModelForCausalLM.from_pretrained(checkpoint, device_map=device, **kwargs)
        else:
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(preset.make_config(), **kwargs)
    except (OSError, ValueError) as exc:
        raise LoadError(f"cannot load {name} ({checkpoint or 'random weights'}): {str(exc).splitlines()[0]}") from None
    model.eval()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    if device.startswith("cuda"):
        weights_bytes = _device_bytes(device) - before
    else:
        weights_bytes = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    tokenizer = get_tokenizer(preset.family, preset.vocab_size, checkpoint)
    return LoadedModel(preset=preset, model=model, tokenizer=tokenizer, device=device, dtype=dtype,
                       weights="checkpoint" if checkpoint else "random", checkpoint=checkpoint,
                       params=count_model_params(model), weights_bytes=weights_bytes, load_s=load_s,
                       experts=experts)


def unload(loaded: LoadedModel | None) -> None:
    """Drop a model and give its memory back before the next one loads."""
    import gc

    import torch

    if loaded is not None:
        loaded.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
