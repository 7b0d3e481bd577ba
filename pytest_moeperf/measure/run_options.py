"""One run's settings, the matrix of cases they make, and the checks any case takes. No pytest here.

The plugin parses its ``--moeperf-`` options into a :class:`RunOptions` (plugin/options.py); the
measurement (measure/session.py) and code outside pytest take it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_moeperf.measure.host_gc import DEFAULT_POLICY
from pytest_moeperf.model.cases import DECODING_PRESETS, Case
from pytest_moeperf.model.context import ContextError, check_context_fits
from pytest_moeperf.model.presets import get_preset

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
