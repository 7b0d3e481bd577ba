"""Serving options: load points, lengths, engine settings, SLOs. Pure: no torch.

Every bad value is a ValueError with one line naming the option and the fix (the plugin turns it
into a pytest usage error, exit 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pytest_moeperf.plugin.options import parse_int, parse_list, parse_positive_float, positive_number

from .engine import CUDA_GRAPHS, EngineOptions
from .loadgen import LoadPoint
from .slo import DEFAULT_SLO, MLPERF_SLOS, Slo, parse_slo
from .workload import LengthSpec, parse_length

ARRIVALS = ("poisson", "constant")
SWEEP_MODES = ("stop", "full")
CPU = {"concurrency": (1, 4), "input": 128, "output": 16, "block_size": 32, "num_blocks": 512,
       "max_batch_tokens": 512, "timeout_s": 120.0}
GPU = {"concurrency": (1, 2, 4, 8, 16, 32, 64), "input": 2048, "output": 64, "block_size": None, "num_blocks": None,
       "max_batch_tokens": None, "timeout_s": 600.0}
TEST_NODE = "benchmarks/test_serving.py::test_serving"


def _items(raw, option: str) -> list[str]:
    """The suite's one rule for list options (plugin/options.parse_list): no empty value or item, no
    value twice (it would measure the same load point twice)."""
    return parse_list(option, raw) or []


def _distinct(values: list, option: str) -> list:
    """Numbers that read the same after parsing (4 and 4.0) are one load point given twice."""
    if len(set(values)) != len(values):
        raise ValueError(f"{option}: a load is given twice in {values}; give each value once")
    return values


def _number(item: str, option: str, whole: bool) -> float:
    return positive_number(option, item, whole)


def _int_opt(raw, option: str, default, minimum: int = 1):
    """A whole-number option by the suite's one rule (plugin/options.parse_int), or its default."""
    v = parse_int(option, raw, minimum)
    return default if v is None else v


@dataclass(frozen=True)
class ServingPoint:
    """One serving benchmark: a model at one load with one engine setting."""

    model: str
    input_len: LengthSpec
    output_len: LengthSpec
    load: LoadPoint
    cuda_graphs: str = "auto"
    dtype: str = "bf16"

    @property
    def point_id(self) -> str:
        parts = [self.model, f"c{self.input_len}".replace(":", "_"), f"n{self.output_len}".replace(":", "_"), self.load.label]
        if self.cuda_graphs != "auto":
            parts.append(f"cg_{self.cuda_graphs}")
        if self.dtype != "bf16":
            parts.append(self.dtype)
        return "-".join(parts)

    @property
    def fullname(self) -> str:
        return f"{TEST_NODE}[{self.point_id}]"

    @property
    def family(self) -> tuple:
        """Points of one sweep: same model, lengths and engine; closed and open loop apart."""
        return (self.model, str(self.input_len), str(self.output_len), self.cuda_graphs, self.dtype, self.load.closed_loop)


@dataclass(frozen=True)
class ServingOptions:
    points: tuple[ServingPoint, ...]
    requests: int | None  # per load point; None: the default rule (requests_for)
    warmup_requests: int
    engine: EngineOptions  # cuda_graphs is per point
    slos: tuple[Slo, ...]
    primary_slo: Slo
    sweep: str
    records_path: str
    timeout_s: float
    seed: int
    device: str

    def requests_for(self, load: LoadPoint) -> int:
        """Closed loop: 4 requests per user (>= 8): 4 waves, so the steady-state window (first end to
        last send) spans ~3 end-to-end times, >= 5 s at the GPU's 2048/64 E2E of ~3 s; open loop:
        ~20 s of arrivals on a GPU, ~6 s on the CPU (>= 8). --moeperf-requests overrides."""
        if self.requests is not None:
            return self.requests
        if load.closed_loop:
            return max(8, 4 * int(load.value))
        return max(8, math.ceil(load.value * (20.0 if self.device == "cuda" else 6.0)))

    def engine_for(self, point: ServingPoint) -> EngineOptions:
        from dataclasses import replace

        return replace(self.engine, cuda_graphs=point.cuda_graphs)


def parse_serving_options(get, run_options, endpoint_model: str | None = None) -> ServingOptions:
    """``get(name)``: the raw option (pytest's config.getoption); ``run_options``: the suite's RunOptions;
    ``endpoint_model``: the model's label when an OpenAI-compatible server is measured (one model,
    the server's own dtype and engine settings)."""
    cuda = run_options.device == "cuda"
    d = GPU if cuda else CPU
    conc_raw, rate_raw = get("moeperf_concurrency"), get("moeperf_rate")
    conc = _distinct([_number(x, "--moeperf-concurrency", True) for x in _items(conc_raw, "--moeperf-concurrency")],
                     "--moeperf-concurrency")
    rates = _distinct([_number(x, "--moeperf-rate", False) for x in _items(rate_raw, "--moeperf-rate")], "--moeperf-rate")
    if conc_raw is None and rate_raw is None:
        conc = list(d["concurrency"])
    arrival = (get("moeperf_arrival") or "poisson").strip()
    if arrival not in ARRIVALS:
        raise ValueError(f"--moeperf-arrival: unknown {arrival!r}; use {' or '.join(ARRIVALS)}")
    loads = [LoadPoint("concurrency", c) for c in sorted(set(conc))] + [LoadPoint(arrival, r) for r in sorted(set(rates))]
    lengths = get("moeperf_serving_lengths")
    if lengths:
        a, sep, b = str(lengths).partition("/")
        if not sep:
            raise ValueError(f"--moeperf-serving-lengths: {lengths!r} must be INPUT/OUTPUT, e.g. uniform:1024-2048/64")
        pairs = [(parse_length(a, "--moeperf-serving-lengths"), parse_length(b, "--moeperf-serving-lengths"))]
    else:
        ins = list(run_options.contexts) if get("moeperf_contexts") else [d["input"]]
        outs = list(run_options.new_tokens) if get("moeperf_new_tokens") else [d["output"]]
        pairs = [(LengthSpec("fixed", i), LengthSpec("fixed", o)) for i in ins for o in outs]
    models = (endpoint_model,) if endpoint_model else tuple(run_options.models)
    dtypes = ("bf16",) if endpoint_model else tuple(run_options.dtypes)  # bf16: no suffix in the point id
    for model in () if endpoint_model else models:
        from pytest_moeperf.model.presets import get_preset

        limit = get_preset(model).max_positions
        for i, o in pairs:
            if i.max + o.max > limit:
                raise ValueError(f"--moeperf-serving-lengths: {i.max} + {o.max} tokens exceed {model}'s "
                                 f"{limit} positions; use shorter lengths")
    graphs = _items(get("moeperf_cuda_graphs") or "auto", "--moeperf-cuda-graphs")
    for g in graphs:
        if g not in CUDA_GRAPHS:
            raise ValueError(f"--moeperf-cuda-graphs: unknown {g!r}; use a list of {', '.join(CUDA_GRAPHS)}")
    if endpoint_model:
        graphs = ["auto"]  # the server's own setting
    points = tuple(ServingPoint(m, i, o, load, g, dt) for m in models for dt in dtypes
                   for g in graphs for i, o in pairs for load in loads)
    engine = EngineOptions(
        block_size=_int_opt(get("moeperf_kv_block_size"), "--moeperf-kv-block-size", d["block_size"], 4),
        num_blocks=_int_opt(get("moeperf_kv_blocks"), "--moeperf-kv-blocks", d["num_blocks"]),
        max_batch_tokens=_int_opt(get("moeperf_max_batch_tokens"), "--moeperf-max-batch-tokens", d["max_batch_tokens"]),
        compile_level=_int_opt(get("moeperf_cb_compile"), "--moeperf-cb-compile", 0, 0),
        prefix_sharing=bool(get("moeperf_prefix_sharing")))
    if engine.compile_level > 3:
        raise ValueError("--moeperf-cb-compile: use a level from 0 (off) to 3")
    slos = tuple(parse_slo(s) for s in (get("moeperf_slo") or []))
    primary = slos[0] if slos else MLPERF_SLOS[DEFAULT_SLO]
    sweep = get("moeperf_sweep") or "stop"
    if sweep not in SWEEP_MODES:
        raise ValueError(f"--moeperf-sweep: unknown {sweep!r}; use stop (end a sweep at saturation) or full")
    timeout_s = parse_positive_float("--moeperf-point-timeout-s", get("moeperf_point_timeout_s"))
    timeout_s = d["timeout_s"] if timeout_s is None else timeout_s
    return ServingOptions(points=points, requests=_int_opt(get("moeperf_requests"), "--moeperf-requests", None),
                          warmup_requests=_int_opt(get("moeperf_warmup_requests"), "--moeperf-warmup-requests", 4, 0),
                          engine=engine, slos=tuple(MLPERF_SLOS.values()) + tuple(s for s in slos if s.name not in MLPERF_SLOS),
                          primary_slo=primary, sweep=sweep,
                          records_path=get("moeperf_serving_records") or ".moeperf/serving-records.jsonl",
                          timeout_s=timeout_s, seed=run_options.seed, device=run_options.device)
