"""Parse and validate the suite's options into one frozen RunOptions. Pure: no torch.

Every bad value becomes a ``ValueError`` with one line that names the option and the fix;
the plugin turns it into ``pytest.UsageError`` (no traceback).
"""

from __future__ import annotations

import math

from pytest_moeperf.model.cases import DECODING_PRESETS
from pytest_moeperf.model.context import ContextError, check_context_fits
from pytest_moeperf.measure.token_clock import token_clock_kind
from pytest_moeperf.measure.host_gc import DEFAULT_POLICY as DEFAULT_GC_POLICY, POLICIES as GC_POLICIES
from pytest_moeperf.model.presets import CPU_DEFAULT_MODELS, GPU_DEFAULT_MODELS, get_preset
from pytest_moeperf.measure.run_options import (  # noqa: F401  the plugin's names, kept here too
    BACKENDS, CONTEXT_MODES, CPU_DEFAULTS, DEFAULT_RESULTS_PATH, DEFAULT_VERDICT_JSON, DTYPES, EXPERTS, GPU_DEFAULTS,
    GPU_KINDS, RunOptions, check_case, check_unique_cases)


# --- one parser per kind of value, shared by every option (new options reuse them) ---------------
# Every rule holds for every option: None means "not given" (the default applies); an empty or
# blank value, an empty item, a value given twice, or several values where one is expected is
# an error, never a silent default.

def parse_list(name: str, raw) -> list[str] | None:
    """A comma-separated list; None when the option was not given."""
    if raw is None:
        return None
    text = str(raw)
    if not text.strip():
        raise ValueError(f"{name}: empty value; give a value or leave {name} out for its default")
    items = [x.strip() for x in text.split(",")]
    if not all(items):
        raise ValueError(f"{name}: empty item in {text!r}; give a comma-separated list like 'a,b'")
    seen = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{name}: {item!r} is given twice in {text!r}; give each value once "
                             f"(a repeated value would measure the same case twice)")
        seen.add(item)
    return items


def parse_one(name: str, raw) -> str | None:
    """Exactly one value (no comma list); None when not given."""
    items = parse_list(name, raw)
    if items is not None and len(items) != 1:
        raise ValueError(f"{name}: takes one value, got {len(items)} ({str(raw)!r}); give one, e.g. {name} {items[0]}")
    return None if items is None else items[0]


def _int(name: str, item: str, minimum: int) -> int:
    try:
        v = int(item)
    except ValueError:
        raise ValueError(f"{name}: {item!r} is not a whole number; e.g. {name}=128,512") from None
    if v < minimum:
        raise ValueError(f"{name}: {v} is below the minimum of {minimum}")
    return v


def parse_ints(name: str, raw, minimum: int = 1) -> list[int] | None:
    """Comma-separated whole numbers >= minimum, each once; None when not given."""
    items = parse_list(name, raw)
    return None if items is None else [_int(name, item, minimum) for item in items]


def parse_positive_ints(name: str, raw) -> list[int] | None:
    return parse_ints(name, raw, minimum=1)


def parse_int(name: str, raw, minimum: int = 1) -> int | None:
    """One whole number >= minimum; None when not given."""
    item = parse_one(name, raw)
    return None if item is None else _int(name, item, minimum)


def parse_choices(name: str, raw, allowed) -> list[str] | None:
    items = parse_list(name, raw)
    for item in items or ():
        if item not in allowed:
            raise ValueError(f"{name}: unknown value {item!r}; choose from {', '.join(allowed)}")
    return items


def parse_choice(name: str, raw, allowed) -> str | None:
    item = parse_one(name, raw)
    if item is not None and item not in allowed:
        raise ValueError(f"{name}: unknown value {item!r}; choose one of {', '.join(allowed)}")
    return item


def positive_number(name: str, item: str, whole: bool = False) -> float | int:
    """One item as a finite number > 0 (a whole one when ``whole``); the one check every option's numbers take."""
    try:
        v = float(item)
    except ValueError:
        raise ValueError(f"{name}: {item!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name}: {item} must be > 0 (a finite number)")
    if whole and v != int(v):
        raise ValueError(f"{name}: {item} is not a whole number")
    return int(v) if whole else v


def parse_positive_float(name: str, raw) -> float | None:
    """One finite number > 0; None when not given."""
    item = parse_one(name, raw)
    return None if item is None else positive_number(name, item)


def parse_path(name: str, raw) -> str | None:
    """A file or folder path (one value, commas allowed); None when not given, '' is an error."""
    if raw is None:
        return None
    if not str(raw).strip():
        raise ValueError(f"{name}: empty path; give a path or leave {name} out for its default")
    return str(raw)


def parse_weights(specs) -> list[tuple[str, str]]:
    """--moeperf-weights MODEL=PATH (repeatable): each model once, each path checked."""
    out: dict[str, str] = {}
    for spec in specs or []:
        name, sep, path = str(spec).partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ValueError(f"--moeperf-weights: {spec!r} must be MODEL=PATH_OR_HUB_ID, "
                             "e.g. gpt-oss-20b=/ckpt/gpt-oss-20b")
        get_preset(name)
        if name in out:
            raise ValueError(f"--moeperf-weights: {name} is given twice ({out[name]!r} and {path!r}); "
                             "give one checkpoint per model")
        problem = checkpoint_problem(path)
        if problem:
            raise ValueError(f"--moeperf-weights: {name}={path}: {problem}")
        out[name] = path
    return list(out.items())


_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` cannot be a checkpoint, or None. A hub id (``org/name``) is left to the loader."""
    import os
    import re

    full = os.path.expanduser(path)
    if os.path.isfile(full):
        return ("is a file; give the checkpoint folder that holds config.json and the weights "
                "(*.safetensors)")
    if os.path.isdir(full):
        names = os.listdir(full)
        if "config.json" not in names:
            return "this folder has no config.json; give the checkpoint folder (save_pretrained's output)"
        if not any(n.endswith(_WEIGHT_FILES) or n.endswith(".index.json") for n in names):
            return ("this folder holds no weights (no *.safetensors or pytorch_model*.bin); "
                    "finish the download or give the folder that has them")
        return None
    if full.startswith(("/", ".", "~")) or os.sep in full.rstrip(os.sep) and not re.fullmatch(
            r"[\w.-]+/[\w.-]+", full):
        return "no such folder; check the path (a hub id looks like org/name)"
    return None


def parse_options(get, cuda_available: bool) -> RunOptions:
    """``get(name)`` returns the raw option value (pytest's config.getoption)."""
    gpu = (parse_one("--gpu", get("moeperf_gpu")) or "auto").lower()
    if gpu not in ("cpu", "auto") and gpu not in GPU_KINDS:
        raise ValueError(f"--gpu: unknown kind {gpu!r}; choose cpu, auto or one of {', '.join(GPU_KINDS)}")
    if gpu not in ("cpu", "auto") and not cuda_available:
        raise ValueError(f"--gpu {gpu}: no CUDA GPU is visible on this machine; run with --gpu cpu")
    device = "cuda" if (gpu != "cpu" and cuda_available) else "cpu"
    defaults = GPU_DEFAULTS if device == "cuda" else CPU_DEFAULTS
    models = parse_list("--moeperf-models", get("moeperf_models")) or list(
        GPU_DEFAULT_MODELS if device == "cuda" else CPU_DEFAULT_MODELS)
    for m in models:
        get_preset(m)  # unknown names: one line listing the presets
    contexts = parse_positive_ints("--moeperf-contexts", get("moeperf_contexts")) or list(defaults["contexts"])
    new_tokens = parse_ints("--moeperf-new-tokens", get("moeperf_new_tokens"), minimum=2) or list(
        defaults["new_tokens"])
    rounds = _or(parse_int("--moeperf-rounds", get("moeperf_rounds")), defaults["rounds"])
    warmup = _or(parse_int("--moeperf-warmup-rounds", get("moeperf_warmup_rounds"), minimum=0), 0)
    warmup_s = _or(parse_positive_float("--moeperf-warmup-s", get("moeperf_warmup_s")), 0.0)
    gc_policy = parse_choice("--moeperf-gc", get("moeperf_gc"), GC_POLICIES) or DEFAULT_GC_POLICY
    dtypes = parse_choices("--moeperf-dtype", get("moeperf_dtype"), DTYPES) or ["bf16"]
    backends = parse_choices("--moeperf-backend", get("moeperf_backend"), BACKENDS) or ["eager"]
    batches = parse_positive_ints("--moeperf-batch", get("moeperf_batch")) or [1]
    decodings = parse_choices("--moeperf-decoding", get("moeperf_decoding"), tuple(DECODING_PRESETS)) or ["greedy"]
    experts = tuple(parse_choices("--moeperf-experts", get("moeperf_experts"), EXPERTS) or (None,))
    modes = parse_choices("--moeperf-context-mode", get("moeperf_context_mode"), CONTEXT_MODES) or ["exact"]
    weights = parse_weights(get("moeperf_weights"))
    for m in models:
        limit = get_preset(m).max_positions
        for c in contexts:
            for n in new_tokens:
                try:
                    check_context_fits(c, n, limit, m)
                except ContextError as exc:
                    raise ValueError(f"--moeperf-contexts: {exc}") from None
    window_s = _or(parse_positive_float("--moeperf-energy-window-s", get("moeperf_energy_window_s")), 5.0)
    if window_s < 1.0:
        raise ValueError("--moeperf-energy-window-s: windows under 1 s scatter 16-23% on NVML's 100 ms counter; use >= 1 (5 recommended)")
    windows = _or(parse_int("--moeperf-energy-windows", get("moeperf_energy_windows")), 5)
    seed = _or(parse_int("--moeperf-seed", get("moeperf_seed"), minimum=0), 0)
    token_clock = parse_one("--moeperf-token-clock", get("moeperf_token_clock")) or "auto"
    try:
        token_clock_kind(token_clock, device)
    except ValueError as exc:
        raise ValueError(f"--moeperf-token-clock: {exc}") from None
    results_path = parse_path("--moeperf-results", get("moeperf_results")) or DEFAULT_RESULTS_PATH
    return RunOptions(gpu=gpu, device=device, models=tuple(models), contexts=tuple(contexts),
                      new_tokens=tuple(new_tokens), rounds=rounds, warmup_rounds=warmup, dtypes=tuple(dtypes),
                      backends=tuple(backends), batch_sizes=tuple(batches), decodings=tuple(decodings),
                      experts=experts, context_modes=tuple(modes), weights=tuple(weights),
                      energy_window_s=window_s, energy_windows=windows, results_path=results_path, seed=seed,
                      routing=bool(get("moeperf_routing")),
                      compile_cache=parse_path("--moeperf-compile-cache", get("moeperf_compile_cache")),
                      token_clock=token_clock, energy_split=bool(get("moeperf_energy_split")), warmup_s=warmup_s,
                      gc=gc_policy)


def _or(value, default):
    return default if value is None else value
