"""Parse and validate the suite's options into one frozen RunOptions. Pure: no torch.

Every bad value becomes a ``ValueError`` with one line that names the option and the fix;
the plugin turns it into ``pytest.UsageError`` (no traceback).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .cases import DECODING_PRESETS, Case
from .context import ContextError, check_context_fits
from .measure import token_clock_kind
from .presets import CPU_DEFAULT_MODELS, GPU_DEFAULT_MODELS, get_preset

GPU_KINDS = {  # --gpu value -> substring NVML's device name must contain
    "h100": "H100", "h200": "H200", "a100": "A100", "l40s": "L40S", "l4": "L4", "a10": "A10",
    "b200": "B200", "gh200": "GH200",
}
BACKENDS = ("eager", "static")
EXPERTS = ("eager", "grouped_mm", "batched_mm")
DTYPES = ("bf16", "fp16", "fp32")
CONTEXT_MODES = ("exact", "paper-truncate")

# Where a run writes, when not told otherwise (the plugin's option help, the xdist controller
# and the gate read these).
DEFAULT_RESULTS_PATH = ".moeperf/results.jsonl"
DEFAULT_VERDICT_JSON = ".moeperf/verdict.json"

CPU_DEFAULTS = {"contexts": (64, 128), "new_tokens": (16,), "rounds": 10}
GPU_DEFAULTS = {"contexts": (128, 512, 1024, 2048), "new_tokens": (64,), "rounds": 10}


def _list(raw: str | None, option: str) -> list[str]:
    if raw is None:
        return []
    items = [x.strip() for x in str(raw).split(",")]
    if not all(items):
        raise ValueError(f"{option}: empty item in {raw!r}; give a comma-separated list like 'a,b'")
    return items


def _ints(raw, option: str, minimum: int = 1) -> list[int]:
    out = []
    for item in _list(raw, option):
        try:
            v = int(item)
        except ValueError:
            raise ValueError(f"{option}: {item!r} is not a whole number; e.g. {option}=128,512") from None
        if v < minimum:
            raise ValueError(f"{option}: {v} is below the minimum of {minimum}")
        out.append(v)
    return out


def _choices(raw, option: str, allowed) -> list[str]:
    items = _list(raw, option)
    for item in items:
        if item not in allowed:
            raise ValueError(f"{option}: unknown value {item!r}; choose from {', '.join(allowed)}")
    return items


def _positive_float(raw, option: str) -> float:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{option}: {raw!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{option}: must be a finite number > 0, got {raw}")
    return v


@dataclass(frozen=True)
class RunOptions:
    gpu: str  # cpu | auto | a kind from GPU_KINDS
    device: str  # cpu | cuda
    models: tuple[str, ...]
    contexts: tuple[int, ...]
    new_tokens: tuple[int, ...]
    rounds: int
    warmup_rounds: int
    dtypes: tuple[str, ...]
    backends: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    decodings: tuple[str, ...]
    experts: tuple[str | None, ...]
    context_modes: tuple[str, ...]
    weights: tuple[tuple[str, str], ...]  # (model, checkpoint path or hub id)
    energy_window_s: float
    energy_windows: int
    results_path: str
    seed: int
    routing: bool = False
    compile_cache: str | None = None
    token_clock: str = "auto"
    energy_split: bool = False  # also measure prefill J/request and decode J/token (energy_split.py)

    def checkpoint_for(self, model: str) -> str | None:
        return dict(self.weights).get(model)

    def cases(self) -> list[Case]:
        """The matrix, model-major so each model loads once and is dropped before the next."""
        out = []
        for model in self.models:
            moe = get_preset(model).architecture == "moe"
            for dtype in self.dtypes:
                for experts in (self.experts if moe else (None,)):
                    for backend in self.backends:
                        for ctx in self.contexts:
                            for new in self.new_tokens:
                                for batch in self.batch_sizes:
                                    for dec in self.decodings:
                                        for mode in self.context_modes:
                                            out.append(Case(model, ctx, new, dtype, backend, batch, dec,
                                                            experts, mode))
        return out


def parse_options(get, cuda_available: bool) -> RunOptions:
    """``get(name)`` returns the raw option value (pytest's config.getoption)."""
    gpu = (get("moeperf_gpu") or "auto").lower()
    if gpu not in ("cpu", "auto") and gpu not in GPU_KINDS:
        raise ValueError(f"--gpu: unknown kind {gpu!r}; choose cpu, auto or one of {', '.join(GPU_KINDS)}")
    if gpu not in ("cpu", "auto") and not cuda_available:
        raise ValueError(f"--gpu {gpu}: no CUDA GPU is visible on this machine; run with --gpu cpu")
    device = "cuda" if (gpu != "cpu" and cuda_available) else "cpu"
    defaults = GPU_DEFAULTS if device == "cuda" else CPU_DEFAULTS
    models = _list(get("moeperf_models"), "--moeperf-models") or list(
        GPU_DEFAULT_MODELS if device == "cuda" else CPU_DEFAULT_MODELS)
    for m in models:
        get_preset(m)  # unknown names: one line listing the presets
    contexts = _ints(get("moeperf_contexts"), "--moeperf-contexts") or list(defaults["contexts"])
    new_tokens = _ints(get("moeperf_new_tokens"), "--moeperf-new-tokens", minimum=2) or list(defaults["new_tokens"])
    rounds_raw = get("moeperf_rounds")
    rounds = _ints(rounds_raw, "--moeperf-rounds")[0] if rounds_raw is not None else defaults["rounds"]
    warm_raw = get("moeperf_warmup_rounds")
    warmup = _ints(warm_raw, "--moeperf-warmup-rounds", minimum=0)[0] if warm_raw is not None else 0
    dtypes = _choices(get("moeperf_dtype") or "bf16", "--moeperf-dtype", DTYPES)
    backends = _choices(get("moeperf_backend") or "eager", "--moeperf-backend", BACKENDS)
    batches = _ints(get("moeperf_batch") or "1", "--moeperf-batch")
    decodings = _choices(get("moeperf_decoding") or "greedy", "--moeperf-decoding", tuple(DECODING_PRESETS))
    experts_raw = get("moeperf_experts")
    experts = tuple(_choices(experts_raw, "--moeperf-experts", EXPERTS)) if experts_raw else (None,)
    modes = _choices(get("moeperf_context_mode") or "exact", "--moeperf-context-mode", CONTEXT_MODES)
    weights = []
    for spec in get("moeperf_weights") or []:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ValueError(f"--moeperf-weights: {spec!r} must be MODEL=PATH_OR_HUB_ID, e.g. gpt-oss-20b=/ckpt/gpt-oss-20b")
        get_preset(name)
        weights.append((name, path))
    for m in models:
        limit = get_preset(m).max_positions
        for c in contexts:
            for n in new_tokens:
                try:
                    check_context_fits(c, n, limit, m)
                except ContextError as exc:
                    raise ValueError(f"--moeperf-contexts: {exc}") from None
    window_s = _positive_float(get("moeperf_energy_window_s") or 5.0, "--moeperf-energy-window-s")
    if window_s < 1.0:
        raise ValueError("--moeperf-energy-window-s: windows under 1 s scatter 16-23% on NVML's 100 ms counter; use >= 1 (5 recommended)")
    windows = _ints(str(get("moeperf_energy_windows") or 5), "--moeperf-energy-windows")[0]
    seed = _ints(str(get("moeperf_seed") or 0), "--moeperf-seed", minimum=0)[0]
    token_clock = get("moeperf_token_clock") or "auto"
    try:
        token_clock_kind(token_clock, device)
    except ValueError as exc:
        raise ValueError(f"--moeperf-token-clock: {exc}") from None
    return RunOptions(gpu=gpu, device=device, models=tuple(models), contexts=tuple(contexts),
                      new_tokens=tuple(new_tokens), rounds=rounds, warmup_rounds=warmup, dtypes=tuple(dtypes),
                      backends=tuple(backends), batch_sizes=tuple(batches), decodings=tuple(decodings),
                      experts=experts, context_modes=tuple(modes), weights=tuple(weights),
                      energy_window_s=window_s, energy_windows=windows,
                      results_path=get("moeperf_results") or DEFAULT_RESULTS_PATH, seed=seed,
                      routing=bool(get("moeperf_routing")), compile_cache=get("moeperf_compile_cache"),
                      token_clock=token_clock, energy_split=bool(get("moeperf_energy_split")))
