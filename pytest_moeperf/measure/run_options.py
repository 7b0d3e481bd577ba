"""One run's settings, the matrix of cases they make, and the checks any case takes. No pytest here.

The run's ``--moeperf-`` options are declared here (:func:`add_options`, called by the plugin's
pytest_addoption) and parsed here into a :class:`RunOptions` (:func:`parse_options`); the
measurement (measure/session.py) and code outside pytest take it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_moeperf.measure.host_gc import DEFAULT_POLICY, POLICIES as GC_POLICIES
from pytest_moeperf.measure.token_clock import token_clock_kind
from pytest_moeperf.measure.outputs_check import DEFAULT_STATIC_CACHE, STATIC_CACHE_MODES
from pytest_moeperf.model.cases import DECODING_PRESETS, Case
from pytest_moeperf.results.outputs import DEFAULT_RESULTS_PATH
from pytest_moeperf.model.context import MODES as CONTEXT_MODES, ContextError, check_context_fits
from pytest_moeperf.model.presets import CPU_DEFAULT_MODELS, GPU_DEFAULT_MODELS, get_preset
from pytest_moeperf.settings.parsers import (parse_choice, parse_choices, parse_int, parse_ints, parse_list, parse_one,
                                            parse_path, parse_positive_float, parse_positive_ints)

GPU_KINDS = {  # --gpu value -> substring NVML's device name must contain
    "h100": "H100", "h200": "H200", "a100": "A100", "l40s": "L40S", "l4": "L4", "a10": "A10",
    "b200": "B200", "gh200": "GH200",
}
BACKENDS = ("eager", "static")
EXPERTS = ("eager", "grouped_mm", "batched_mm")
DTYPES = ("bf16", "fp16", "fp32")


CPU_DEFAULTS = {"contexts": (64, 128), "new_tokens": (16,), "rounds": 10}
GPU_DEFAULTS = {"contexts": (128, 512, 1024, 2048), "new_tokens": (64,), "rounds": 10}


def check_case(case: Case, options: RunOptions | None = None) -> None:
    """What the plugin checks of a case, for any case (the Python API, pytest_moeperf_modify_cases).

    Raises ValueError with one line."""
    p = get_preset(case.model)
    if not isinstance(case.context_tokens, int) or case.context_tokens < 1:
        raise ValueError(f"case {case.case_id}: context_tokens must be a whole number >= 1")
    if not isinstance(case.new_tokens, int) or case.new_tokens < 2:
        raise ValueError(f"case {case.case_id}: new_tokens must be a whole number >= 2 (TPOT needs two tokens)")
    if not isinstance(case.batch_size, int) or case.batch_size < 1:
        raise ValueError(f"case {case.case_id}: batch_size must be a whole number >= 1")
    for what, value, allowed in (("dtype", case.dtype, DTYPES), ("backend", case.backend, BACKENDS),
                                 ("decoding", case.decoding, tuple(DECODING_PRESETS)),
                                 ("context_mode", case.context_mode, CONTEXT_MODES)):
        if value not in allowed:
            raise ValueError(f"case {case.case_id}: unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    if case.experts is not None and case.experts not in EXPERTS:
        raise ValueError(f"case {case.case_id}: unknown experts {case.experts!r}; choose one of {', '.join(EXPERTS)}")
    try:
        check_context_fits(case.context_tokens, case.new_tokens, p.max_positions, case.model)
    except ContextError as exc:
        raise ValueError(f"case {case.case_id}: {exc}") from None


def check_unique_cases(cases) -> None:
    seen = set()
    for c in cases:
        if c.case_id in seen:
            raise ValueError(f"case {c.case_id} appears twice in the matrix; give each value once "
                             "(or return each case once from pytest_moeperf_modify_cases)")
        seen.add(c.case_id)


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
    warmup_s: float = 0.0  # discarded calls for this long after the priming calls
    gc: str = DEFAULT_POLICY  # the garbage collector during the rounds (measure/host_gc.py)
    static_cache: str = DEFAULT_STATIC_CACHE  # the static backend's KV cache (measure/outputs_check.py)

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


# -- the run's options: declared and parsed here --------------------------------------------------

def add_options(add) -> None:
    """Declare the run's options with ``add`` (pytest's ``group.addoption``)."""
    add("--gpu", dest="moeperf_gpu", metavar="KIND", default=None,
        help=f"cpu, auto (default) or a GPU kind that must be present ({', '.join(GPU_KINDS)}); "
             "a kind selects baselines/KIND/ as pytest-benchmark storage")
    add("--moeperf-models", metavar="NAMES", default=None,
        help="comma-separated presets (default: tiny-moe,tiny-dense on CPU; gpt-oss-20b,qwen3-32b,yi-34b on GPU)")
    add("--moeperf-contexts", metavar="TOKENS", default=None,
        help="comma-separated exact post-template context lengths (default: 64,128 CPU; 128,512,1024,2048 GPU)")
    add("--moeperf-new-tokens", metavar="N", default=None, help="comma-separated new tokens per round (default 16 CPU, 64 GPU)")
    add("--moeperf-rounds", metavar="N", default=None, help="minimum measured rounds per case (default 10)")
    add("--moeperf-warmup-rounds", metavar="N", default=None, help="discarded warm-up rounds after the two priming calls (default 0)")
    add("--moeperf-warmup-s", metavar="S", default=None,
        help="also discard calls for this many seconds after the priming calls, for clocks and temperature to "
             "settle (default: none)")
    add("--moeperf-gc", metavar="POLICY", default=None,
        help="Python's garbage collector during the rounds: on (default), freeze (gc.freeze() after priming) "
             "or between-rounds (no collection inside a round); each round's collections are recorded either way")
    add("--moeperf-static-cache", metavar="MODE", default=None,
        help="static backend's KV cache: fresh (default: a new cache every generate call, transformers' own) or "
             "reuse (one cache per case, reset in place: the compiled step sees the same addresses every round)")
    add("--moeperf-dtype", metavar="DTYPES", default=None, help=f"comma-separated, from {', '.join(DTYPES)} (default bf16)")
    add("--moeperf-backend", metavar="NAMES", default=None,
        help=f"comma-separated, from {', '.join(BACKENDS)} (static = static cache + torch.compile; default eager)")
    add("--moeperf-batch", metavar="SIZES", default=None, help="comma-separated batch sizes (default 1)")
    add("--moeperf-decoding", metavar="NAMES", default=None,
        help="comma-separated: greedy, top_p0.9, top_k50, temp1.5, temp0.3 (default greedy)")
    add("--moeperf-experts", metavar="NAMES", default=None,
        help=f"MoE experts_implementation, comma-separated from {', '.join(EXPERTS)} (default: transformers' own)")
    add("--moeperf-context-mode", metavar="MODE", default=None,
        help=f"{' or '.join(CONTEXT_MODES)} (paper-truncate reproduces the paper's trim; default exact)")
    add("--moeperf-weights", metavar="MODEL=PATH", action="append", default=[],
        help="load MODEL from a checkpoint path or hub id instead of random weights (repeatable)")
    add("--moeperf-energy-window-s", metavar="S", default=None, help="energy window length in seconds (default 5, min 1)")
    add("--moeperf-energy-windows", metavar="N", default=None, help="energy windows per case (default 5)")
    add("--moeperf-energy-split", action="store_true", default=False,
        help="also measure prefill J per request and decode J per token from extra windows of 1-token rounds "
             "(GPU, eager backend; adds energy-windows x window-s per case)")
    add("--moeperf-results", metavar="PATH", default=None,
        help=f"append each finished case to this JSON-lines log (default {DEFAULT_RESULTS_PATH})")
    add("--moeperf-routing", action="store_true", default=False,
        help="also record MoE routing statistics (tokens per expert per layer, load, entropy) in an untimed pass")
    add("--moeperf-compile-cache", metavar="DIR", default=None,
        help="torch.compile/inductor cache folder for the static backend (keep it between CI runs for warm compiles)")
    add("--moeperf-resume", action="store_true", default=False,
        help="skip the cases already finished in the results log (after a crash or a job time-out); "
             "python -m pytest_moeperf results LOG --json run.json then gives the whole run")
    add("--moeperf-seed", metavar="N", default=None, help="seed for random weights and sampling (default 0)")
    add("--moeperf-token-clock", metavar="KIND", default=None,
        help="per-token stamps: auto (CUDA events on a GPU, a device sync elsewhere), event or sync "
             "(a sync per token: the clock of runs stored before it changed; default auto)")


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
    gc_policy = parse_choice("--moeperf-gc", get("moeperf_gc"), GC_POLICIES) or DEFAULT_POLICY
    static_cache = parse_choice("--moeperf-static-cache", get("moeperf_static_cache"),
                                STATIC_CACHE_MODES) or DEFAULT_STATIC_CACHE
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
                      gc=gc_policy, static_cache=static_cache)


def _or(value, default):
    return default if value is None else value
